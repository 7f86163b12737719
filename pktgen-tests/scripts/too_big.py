#!/usr/bin/env python3
"""Path-MTU probe for the Pylon end-to-end tests (Python 3 stdlib only).

Sends one TCP SYN with the Don't Fragment bit set and enough payload to make
an IPv4 packet of --total-length bytes, from --src-ip to --dst-ip:--dst-port,
as a raw Ethernet frame on --iface to --dst-mac (pylon's MAC). Then captures
on --iface, for up to --timeout seconds, the first frame that answers it:

- an ICMP destination unreachable quoting the probe (a packet too big for
  the tunnel: type 3, code 4, next-hop MTU in bytes 6-7 of the ICMP header),
- or the SYN-ACK of the real server (the probe fitted and was forwarded).

Prints one JSON object; byte strings are hex:

    {"sent": {"ip_header": "...", "l4_head": "...", "total_length": n,
              "sport": n},
     "icmp": null | {"eth_src": "aa:bb:..", "src": "a.b.c.d", "dst": "...",
                     "ip_checksum_ok": bool, "ip_total_length": n,
                     "type": n, "code": n, "unused": n, "next_hop_mtu": n,
                     "checksum_ok": bool, "quoted": "..."},
     "syn_ack": null | {"eth_src": "...", "src": "...", "ack": n,
                        "expected_ack": n}}

Needs root (AF_PACKET) in the client's network namespace.
"""

import argparse
import json
import random
import socket
import struct
import time

ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
ICMP_DEST_UNREACH = 3
TCP_SYN = 0x02
TCP_ACK = 0x10
DF = 0x4000


def checksum(data):
    """RFC 1071 Internet checksum."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def mac_text(raw):
    return ":".join(f"{b:02x}" for b in raw)


def mac_bytes(text):
    parts = text.split(":")
    if len(parts) != 6:
        raise SystemExit(f"too_big.py: not a MAC address: {text}")
    return bytes(int(part, 16) for part in parts)


def probe(src, dst, sport, dport, seq, ident, total_length):
    """The IPv4 packet: a TCP SYN (20-byte header) with DF and payload."""
    payload_len = total_length - 40
    if payload_len < 0:
        raise SystemExit(f"too_big.py: --total-length {total_length} < 40")
    payload = bytes((i * 7) & 0xFF for i in range(payload_len))
    header = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, TCP_SYN, 64240, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, IPPROTO_TCP, 20 + payload_len)
    csum = checksum(pseudo + header + payload)
    segment = header[:16] + struct.pack("!H", csum) + header[18:] + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, total_length, ident, DF, 64, IPPROTO_TCP, 0, src, dst
    )
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return ip + segment


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iface", required=True)
    parser.add_argument("--dst-mac", required=True)
    parser.add_argument("--src-ip", required=True)
    parser.add_argument("--dst-ip", required=True)
    parser.add_argument("--dst-port", type=int, default=80)
    parser.add_argument("--total-length", type=int, default=1500)
    parser.add_argument("--timeout", type=float, default=3.0)
    return parser.parse_args()


def main():
    args = parse_args()
    src = socket.inet_aton(args.src_ip)
    dst = socket.inet_aton(args.dst_ip)
    sport = random.randint(40000, 60000)
    seq = random.randint(0, 0xFFFFFFFF)
    ident = random.randint(1, 0xFFFF)
    packet = probe(src, dst, sport, args.dst_port, seq, ident, args.total_length)
    with open(f"/sys/class/net/{args.iface}/address") as f:
        src_mac = mac_bytes(f.read().strip())
    frame = mac_bytes(args.dst_mac) + src_mac + struct.pack("!H", ETH_P_IP) + packet

    capture = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    capture.bind((args.iface, ETH_P_IP))
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sender:
        sender.bind((args.iface, 0))
        sender.send(frame)

    icmp = None
    syn_ack = None
    deadline = time.monotonic() + args.timeout
    while icmp is None and syn_ack is None:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        capture.settimeout(left)
        try:
            data, addr = capture.recvfrom(65535)
        except socket.timeout:
            break
        if addr[2] == PACKET_OUTGOING or len(data) < 34:
            continue
        eth_src = mac_text(data[6:12])
        ip = data[14:]
        ihl = (ip[0] & 0x0F) * 4
        if ip[0] >> 4 != 4 or len(ip) < ihl + 8:
            continue
        proto = ip[9]
        body = ip[ihl : struct.unpack_from("!H", ip, 2)[0]]
        if proto == IPPROTO_ICMP and body[0] == ICMP_DEST_UNREACH:
            quoted = body[8:]
            # Ours: the quoted header has our addresses and identification.
            if len(quoted) < 20 or quoted[12:20] != src + dst or quoted[4:6] != packet[4:6]:
                continue
            icmp = {
                "eth_src": eth_src,
                "src": socket.inet_ntoa(ip[12:16]),
                "dst": socket.inet_ntoa(ip[16:20]),
                "ip_checksum_ok": checksum(ip[:ihl]) == 0,
                "ip_total_length": struct.unpack_from("!H", ip, 2)[0],
                "type": body[0],
                "code": body[1],
                "unused": struct.unpack_from("!H", body, 4)[0],
                "next_hop_mtu": struct.unpack_from("!H", body, 6)[0],
                "checksum_ok": checksum(body) == 0,
                "quoted": quoted.hex(),
            }
        elif proto == IPPROTO_TCP and ip[12:16] == dst and ip[16:20] == src:
            r_sport, r_dport, _r_seq, r_ack, _off, flags = struct.unpack_from("!HHIIBB", body)
            if (r_sport, r_dport) == (args.dst_port, sport) and flags & (TCP_SYN | TCP_ACK) == (
                TCP_SYN | TCP_ACK
            ):
                syn_ack = {
                    "eth_src": eth_src,
                    "src": socket.inet_ntoa(ip[12:16]),
                    "ack": r_ack,
                    "expected_ack": (seq + 1) & 0xFFFFFFFF,
                }
    capture.close()
    sent = {
        "ip_header": packet[:20].hex(),
        "l4_head": packet[20:28].hex(),
        "total_length": len(packet),
        "sport": sport,
    }
    print(json.dumps({"sent": sent, "icmp": icmp, "syn_ack": syn_ack}, sort_keys=True))


if __name__ == "__main__":
    main()
