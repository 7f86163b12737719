#!/usr/bin/env python3
"""Userspace IP-in-IP (RFC 2003) decapsulator for the Pylon end-to-end tests
(Python 3 stdlib only). It stands in for the kernel's ipip device (`tunl0`),
which the test kernel lacks (CONFIG_NET_IPIP is not set).

Creates the TUN device --tun (IFF_TUN | IFF_NO_PI), gives it each --address
(the VIP, as a /32) and brings it up with `ip`, then receives every IPv4
packet of protocol 4 (IP-in-IP) addressed to this host on a raw socket,
strips the outer header and writes the inner packet into the TUN device, so
the kernel takes it as received on --tun: a client->VIP packet reaches the
local server bound to 0.0.0.0 and the reply is routed straight to the
client, not back through the tunnel. A raw socket of protocol 4 takes those
packets off the kernel's hands: the kernel has no handler for protocol 4
here, and it sends no "protocol unreachable" for packets a raw socket took.

The device lives as long as this process. Writes --ready-file once the
device is up. Packets whose outer or inner header is not a plain IPv4
header, or whose lengths do not add up, are counted and dropped. Stops on
SIGTERM or SIGINT and prints one JSON line to stdout:

    {"decapsulated": n, "dropped": n}

(The kernel counts the same packets as `rx_packets` of --tun.)
"""

import argparse
import fcntl
import json
import os
import pathlib
import signal
import socket
import struct
import subprocess

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IPPROTO_IPIP = 4


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tun", default="tun0", help="TUN device to create")
    parser.add_argument(
        "--address", action="append", default=[], help="address/prefix for --tun"
    )
    parser.add_argument("--ready-file", type=pathlib.Path)
    return parser.parse_args()


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    ifreq = struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI)
    fcntl.ioctl(fd, TUNSETIFF, ifreq)
    return fd


def inner_packet(packet):
    """The inner IPv4 packet of an IP-in-IP packet (as the raw socket hands
    it over: outer header included), or None when it is not one."""
    if len(packet) < 20 or packet[0] >> 4 != 4 or packet[9] != IPPROTO_IPIP:
        return None
    outer_len = (packet[0] & 0x0F) * 4
    total = struct.unpack_from("!H", packet, 2)[0]
    if outer_len < 20 or total != len(packet) or total < outer_len + 20:
        return None
    inner = packet[outer_len:]
    inner_len = struct.unpack_from("!H", inner, 2)[0]
    if inner[0] >> 4 != 4 or (inner[0] & 0x0F) < 5 or inner_len != len(inner):
        return None
    return inner


class Stop(Exception):
    pass


def stop(_signum, _frame):
    raise Stop()


def main():
    args = parse_args()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    tun = open_tun(args.tun)
    for address in args.address:
        subprocess.run(["ip", "addr", "add", address, "dev", args.tun], check=True)
    subprocess.run(["ip", "link", "set", args.tun, "up"], check=True)
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_IPIP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    if args.ready_file is not None:
        args.ready_file.write_text(f"{args.tun} {' '.join(args.address)}\n")
    decapsulated = 0
    dropped = 0
    try:
        while True:
            inner = inner_packet(sock.recv(65535))
            if inner is None:
                dropped += 1
                continue
            os.write(tun, inner)
            decapsulated += 1
    except Stop:
        pass
    finally:
        sock.close()
        os.close(tun)
    print(json.dumps({"decapsulated": decapsulated, "dropped": dropped}), flush=True)


if __name__ == "__main__":
    main()
