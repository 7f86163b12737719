#!/usr/bin/env python3
"""Sequential HTTP client for the Pylon end-to-end tests (Python 3 stdlib only).

Sends --count HTTP/1.1 GET requests one after another, each on a new TCP
connection ("Connection: close"), each with a --timeout (seconds) for connect
and for every read. The run stops early after --deadline seconds, or after
--give-up-after failures in a row (a service that is down should not cost
minutes); requests not sent then count as failed. Prints one JSON object:

    {"ok": n, "failed": n, "by_server": {"rs1": n, ...},
     "errors": [first few error strings], "elapsed_s": f}

A request is ok when it got status 200; by_server counts the bodies of those
answers (the real server's name).
"""

import argparse
import http.client
import json
import time
import urllib.parse


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--deadline", type=float, default=60.0)
    parser.add_argument("--give-up-after", type=int, default=5)
    parser.add_argument("--max-errors", type=int, default=5)
    return parser.parse_args()


def main():
    args = parse_args()
    url = urllib.parse.urlsplit(args.url)
    if url.scheme != "http" or url.hostname is None:
        raise SystemExit(f"client.py: not an http URL: {args.url}")
    port = url.port or 80
    path = url.path or "/"
    if url.query:
        path = f"{path}?{url.query}"

    ok = 0
    failed = 0
    by_server = {}
    errors = []

    def note(message, always=False):
        if always or len(errors) < args.max_errors:
            errors.append(message)

    in_a_row = 0
    start = time.monotonic()
    for i in range(args.count):
        if time.monotonic() - start > args.deadline:
            failed += args.count - i
            note(f"deadline of {args.deadline}s exceeded after {i} requests", True)
            break
        if args.give_up_after and in_a_row >= args.give_up_after:
            failed += args.count - i
            note(f"gave up after {in_a_row} failures in a row, {i} requests sent", True)
            break
        in_a_row += 1
        conn = http.client.HTTPConnection(url.hostname, port, timeout=args.timeout)
        try:
            conn.request("GET", path, headers={"Connection": "close"})
            response = conn.getresponse()
            body = response.read().decode(errors="replace").strip()
            if response.status == 200:
                in_a_row = 0
                ok += 1
                by_server[body] = by_server.get(body, 0) + 1
            else:
                failed += 1
                note(f"request {i}: HTTP {response.status} from {body!r}")
        except (OSError, http.client.HTTPException) as error:
            failed += 1
            note(f"request {i}: {type(error).__name__}: {error}")
        finally:
            conn.close()

    result = {
        "ok": ok,
        "failed": failed,
        "by_server": by_server,
        "errors": errors,
        "elapsed_s": round(time.monotonic() - start, 3),
    }
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
