#!/usr/bin/env python3
"""Crafted bad frames for the Pylon end-to-end tests (Python 3 stdlib only).

Sends raw Ethernet frames on --iface (an AF_PACKET socket, so it needs root in
the sending network namespace) to --dst-mac, each aimed at --dst-ip:--dst-port.
Every frame has exactly one defect, and all other fields (checksums included)
are correct, so the load balancer's drop counter for that defect is the one
that must move:

    truncated       Ethernet + the first 10 bytes of an IPv4 header  (bad_header)
    ip_options      IHL 6 (4 bytes of options), TCP SYN              (ip_options)
    fragment_first  MF set, offset 0, TCP SYN                        (fragment)
    fragment_later  offset 24 bytes, MF clear                        (fragment)
    bad_ip_checksum TCP SYN with a wrong IPv4 header checksum        (bad_ip_checksum)
    ttl_1           TCP SYN with TTL 1                               (ttl_expired)
    syn_fin         TCP SYN+FIN                                      (bad_tcp_flags)
    short_tcp       TCP data offset 4 (a 16-byte header)             (bad_header)
    ipv6            an IPv6 TCP SYN                                  (not_ipv4)

--count frames of each kind are sent; the kinds can be limited with --kinds.
Prints {"sent": {"kind": n, ...}, "frames": total} as JSON.
"""

import argparse
import json
import socket
import struct
import time

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
IPPROTO_TCP = 6
TCP_FIN = 0x01
TCP_SYN = 0x02
MF = 0x2000


def checksum(data):
    """RFC 1071 Internet checksum."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def mac_bytes(text):
    parts = text.split(":")
    if len(parts) != 6:
        raise SystemExit(f"inject.py: not a MAC address: {text}")
    return bytes(int(part, 16) for part in parts)


def ethernet(dst_mac, src_mac, ethertype, payload):
    return dst_mac + src_mac + struct.pack("!H", ethertype) + payload


def tcp(src_ip, dst_ip, sport, dport, flags, seq, data_offset=5, pseudo_proto=IPPROTO_TCP):
    """A 20-byte TCP header (+ MSS option when data_offset is 6), checksummed
    over the IPv4 pseudo-header. data_offset is written as given, even when it
    does not match the header's real length."""
    options = b"\x02\x04\x05\xb4" if data_offset == 6 else b""
    header = struct.pack(
        "!HHIIBBHHH", sport, dport, seq, 0, data_offset << 4, flags, 64240, 0, 0
    )
    segment = header + options
    pseudo = src_ip + dst_ip + struct.pack("!BBH", 0, pseudo_proto, len(segment))
    csum = checksum(pseudo + segment)
    return segment[:16] + struct.pack("!H", csum) + segment[18:]


def ipv4(src_ip, dst_ip, payload, ttl=64, options=b"", frag=0, ident=1, bad_checksum=False):
    if len(options) % 4:
        raise ValueError("IPv4 options must be a multiple of 4 bytes")
    ihl = 5 + len(options) // 4
    header = struct.pack(
        "!BBHHHBBH4s4s",
        (4 << 4) | ihl,
        0,
        ihl * 4 + len(payload),
        ident,
        frag,
        ttl,
        IPPROTO_TCP,
        0,
        src_ip,
        dst_ip,
    ) + options
    csum = checksum(header)
    if bad_checksum:
        csum ^= 0x5A5A
    return header[:10] + struct.pack("!H", csum) + header[12:] + payload


def ipv6_syn(sport, dport, seq):
    src = socket.inet_pton(socket.AF_INET6, "fd00:1::2")
    dst = socket.inet_pton(socket.AF_INET6, "fd00:1::100")
    header = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, TCP_SYN, 64240, 0, 0)
    pseudo = src + dst + struct.pack("!I3xB", len(header), IPPROTO_TCP)
    csum = checksum(pseudo + header)
    segment = header[:16] + struct.pack("!H", csum) + header[18:]
    fixed = struct.pack("!IHBB", 6 << 28, len(segment), IPPROTO_TCP, 64)
    return fixed + src + dst + segment


def build(kind, args, n):
    """The IP-layer payload (and ethertype) of frame n of a kind."""
    src = socket.inet_aton(args.src_ip)
    dst = socket.inet_aton(args.dst_ip)
    sport = args.base_port + n
    seq = 0x10000000 + n
    syn = tcp(src, dst, sport, args.dst_port, TCP_SYN, seq)
    ident = 0x4000 + n
    if kind == "truncated":
        return ETH_P_IP, ipv4(src, dst, syn, ident=ident)[:10]
    if kind == "ip_options":
        # NOP, NOP, NOP, end of options list.
        return ETH_P_IP, ipv4(src, dst, syn, options=b"\x01\x01\x01\x00", ident=ident)
    if kind == "fragment_first":
        # 24 bytes (SYN + MSS option), a multiple of 8 as a non-last fragment needs.
        first = tcp(src, dst, sport, args.dst_port, TCP_SYN, seq, data_offset=6)
        return ETH_P_IP, ipv4(src, dst, first, frag=MF, ident=ident)
    if kind == "fragment_later":
        return ETH_P_IP, ipv4(src, dst, b"\0" * 8, frag=24 // 8, ident=ident)
    if kind == "bad_ip_checksum":
        return ETH_P_IP, ipv4(src, dst, syn, ident=ident, bad_checksum=True)
    if kind == "ttl_1":
        return ETH_P_IP, ipv4(src, dst, syn, ttl=1, ident=ident)
    if kind == "syn_fin":
        syn_fin = tcp(src, dst, sport, args.dst_port, TCP_SYN | TCP_FIN, seq)
        return ETH_P_IP, ipv4(src, dst, syn_fin, ident=ident)
    if kind == "short_tcp":
        short = tcp(src, dst, sport, args.dst_port, TCP_SYN, seq, data_offset=4)
        return ETH_P_IP, ipv4(src, dst, short, ident=ident)
    if kind == "ipv6":
        return ETH_P_IPV6, ipv6_syn(sport, args.dst_port, seq)
    raise SystemExit(f"inject.py: unknown kind {kind}")


KINDS = [
    "truncated",
    "ip_options",
    "fragment_first",
    "fragment_later",
    "bad_ip_checksum",
    "ttl_1",
    "syn_fin",
    "short_tcp",
    "ipv6",
]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iface", required=True)
    parser.add_argument("--dst-mac", required=True)
    parser.add_argument("--src-ip", required=True)
    parser.add_argument("--dst-ip", required=True)
    parser.add_argument("--dst-port", type=int, default=80)
    parser.add_argument("--base-port", type=int, default=40000)
    parser.add_argument("--count", type=int, default=5)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--gap-ms", type=float, default=2.0, help="pause between frames")
    return parser.parse_args()


def main():
    args = parse_args()
    kinds = [kind for kind in args.kinds.split(",") if kind]
    with open(f"/sys/class/net/{args.iface}/address") as f:
        src_mac = mac_bytes(f.read().strip())
    dst_mac = mac_bytes(args.dst_mac)
    sent = {}
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((args.iface, 0))
        for index, kind in enumerate(kinds):
            for i in range(args.count):
                ethertype, payload = build(kind, args, index * 100 + i)
                sock.send(ethernet(dst_mac, src_mac, ethertype, payload))
                sent[kind] = sent.get(kind, 0) + 1
                time.sleep(args.gap_ms / 1000)
    print(json.dumps({"sent": sent, "frames": sum(sent.values())}, sort_keys=True))


if __name__ == "__main__":
    main()
