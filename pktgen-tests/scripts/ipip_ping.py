#!/usr/bin/env python3
"""Encapsulated ping for the Pylon end-to-end harness (Python 3 stdlib only):
checks a tunnel real server without Pylon.

Sends --count ICMP echo requests from --src to --vip, each wrapped in an
outer IPv4 header (protocol 4, RFC 2003) from --src to --server, exactly as
Pylon's tunnel mode would, and waits up to --timeout seconds for each echo
reply. The reply must come from the VIP, straight back (it is not
encapsulated). Prints one JSON object:

    {"sent": n, "replies": n, "errors": ["..."]}
"""

import argparse
import json
import os
import socket
import struct
import time

IPPROTO_ICMP = 1
IPPROTO_IPIP = 4
ICMP_ECHO_REPLY = 0
ICMP_DEST_UNREACH = 3
ICMP_ECHO_REQUEST = 8


def checksum(data):
    """RFC 1071 Internet checksum."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4(src, dst, protocol, payload, ident):
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0x4000, 64, protocol, 0, src, dst
    )
    return header[:10] + struct.pack("!H", checksum(header)) + header[12:] + payload


def echo_request(ident, seq):
    payload = b"pylon-ipip-ping!" * 2
    header = struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, 0, ident, seq)
    csum = checksum(header + payload)
    return struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, csum, ident, seq) + payload


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--src", required=True, help="this host's address")
    parser.add_argument("--vip", required=True, help="inner destination")
    parser.add_argument("--server", required=True, help="outer destination")
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=2.0)
    return parser.parse_args()


def main():
    args = parse_args()
    src = socket.inet_aton(args.src)
    vip = socket.inet_aton(args.vip)
    server = socket.inet_aton(args.server)
    ident = os.getpid() & 0xFFFF
    sender = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    receiver = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_ICMP)
    replies = 0
    errors = []
    for seq in range(1, args.count + 1):
        inner = ipv4(src, vip, IPPROTO_ICMP, echo_request(ident, seq), seq)
        outer = ipv4(src, server, IPPROTO_IPIP, inner, seq)
        sender.sendto(outer, (args.server, 0))
        deadline = time.monotonic() + args.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                errors.append(f"seq {seq}: no echo reply from {args.vip} in {args.timeout}s")
                break
            receiver.settimeout(left)
            try:
                packet = receiver.recv(65535)
            except socket.timeout:
                continue
            ihl = (packet[0] & 0x0F) * 4
            kind, code, _csum, r_ident, r_seq = struct.unpack_from("!BBHHH", packet, ihl)
            if kind == ICMP_DEST_UNREACH:
                sender_ip = socket.inet_ntoa(packet[12:16])
                errors.append(f"seq {seq}: destination unreachable code {code} from {sender_ip}")
                break
            if kind == ICMP_ECHO_REPLY and r_ident == ident and r_seq == seq:
                if packet[12:16] != vip:
                    errors.append(f"seq {seq}: reply from {socket.inet_ntoa(packet[12:16])}")
                else:
                    replies += 1
                break
    print(json.dumps({"sent": args.count, "replies": replies, "errors": errors}))


if __name__ == "__main__":
    main()
