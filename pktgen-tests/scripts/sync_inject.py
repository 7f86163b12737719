#!/usr/bin/env python3
"""Attacks on the Pylon sync protocol, for the sync e2e test (stdlib only).

Captures (AF_PACKET on --iface) one genuine sync datagram that --peer-ip
sends to UDP port --port (a configuration digest, type 6, which a peer
sends every 2 s), then puts on the same wire, from the same addresses:

- the captured frame again, unchanged, --replays times (a replay: valid
  HMAC, old sequence number);
- the captured datagram cut short by 10 bytes, --truncated times;
- --forged "Updates" datagrams in the captured session with a sequence
  number far ahead, each carrying one bogus connection
  (--client-ip:40000+i -> --vip:--vport -> --rip:--vport, ESTABLISHED,
  DSR), authenticated with a wrong key.

Prints {"captured": {"type": t, "seq": s}, "replays": n, "truncated": n,
"forged": n}. The layout is control/sync/PROTOCOL.md's.
"""

import argparse
import hashlib
import hmac
import json
import socket
import struct
import time

ETH_P_ALL = 0x0003


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iface", required=True)
    parser.add_argument("--peer-ip", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--replays", type=int, default=5)
    parser.add_argument("--truncated", type=int, default=3)
    parser.add_argument("--forged", type=int, default=5)
    parser.add_argument("--client-ip", required=True)
    parser.add_argument("--vip", required=True)
    parser.add_argument("--vport", type=int, default=80)
    parser.add_argument("--rip", required=True)
    parser.add_argument("--timeout", type=float, default=10.0)
    return parser.parse_args()


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def capture(sock, args):
    """The first frame from peer-ip to the sync port carrying type 6."""
    peer = socket.inet_aton(args.peer_ip)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            frame = sock.recv(65535)
        except socket.timeout:
            break
        if len(frame) < 14 + 20 + 8 or frame[12:14] != b"\x08\x00":
            continue
        ihl = (frame[14] & 0x0F) * 4
        if frame[23] != 17 or frame[26:30] != peer:
            continue
        udp = 14 + ihl
        dport = struct.unpack("!H", frame[udp + 2:udp + 4])[0]
        payload = frame[udp + 8:]
        if dport == args.port and payload[:4] == b"PYSY" and payload[5] == 6:
            return frame, udp
    raise SystemExit("no sync datagram captured")


def with_payload(frame, udp, payload):
    """The frame with another UDP payload: lengths and IP checksum fixed,
    UDP checksum 0 (none, allowed over IPv4)."""
    ip = bytearray(frame[14:udp])
    total = len(ip) + 8 + len(payload)
    ip[2:4] = struct.pack("!H", total)
    ip[10:12] = b"\0\0"
    ip[10:12] = struct.pack("!H", checksum(bytes(ip)))
    head = bytearray(frame[udp:udp + 8])
    head[4:6] = struct.pack("!H", 8 + len(payload))
    head[6:8] = b"\0\0"
    return frame[:14] + bytes(ip) + bytes(head) + payload


def entry(args, port):
    return (
        socket.inet_aton(args.client_ip) + struct.pack("!H", port)
        + socket.inet_aton(args.vip) + struct.pack("!H", args.vport)
        + socket.inet_aton(args.rip) + struct.pack("!H", args.vport)
        + bytes([6, 1, 1, 1]) + struct.pack("!I", 0)
    )


def main():
    args = parse_args()
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((args.iface, 0))
    frame, udp = capture(sock, args)
    payload = frame[udp + 8:]
    session, seq = struct.unpack("!QQ", payload[8:24])
    for _ in range(args.replays):
        sock.send(frame)
        time.sleep(0.01)
    for _ in range(args.truncated):
        sock.send(with_payload(frame, udp, payload[:-10]))
        time.sleep(0.01)
    wrong_key = bytes(32)
    for i in range(args.forged):
        body = struct.pack("!HH", 1, 0) + entry(args, 40000 + i)
        head = b"PYSY" + bytes([1, 1]) + struct.pack("!HQQ", len(body), session, seq + 1000 + i)
        tag = hmac.new(wrong_key, head + body, hashlib.sha256).digest()
        sock.send(with_payload(frame, udp, head + body + tag))
        time.sleep(0.01)
    print(json.dumps({
        "captured": {"type": payload[5], "seq": seq},
        "replays": args.replays,
        "truncated": args.truncated,
        "forged": args.forged,
    }))


if __name__ == "__main__":
    main()
