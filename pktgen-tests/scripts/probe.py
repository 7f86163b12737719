#!/usr/bin/env python3
"""Continuous HTTP prober for the Pylon failover tests (Python 3 stdlib only).

Starts one HTTP/1.1 GET of --url every --interval seconds, each on a new TCP
connection ("Connection: close") with --timeout seconds for the whole
request, without waiting for the earlier ones: a request that hangs while
the VIP moves does not hold the next ones back, so the time without answers
is measured to about one interval. Runs until --stop-file exists (or
--max-seconds pass), waits for the requests in flight, then prints one JSON
object:

    {"attempts": [[start, end, ok, "rs1" or error], ...]}

start and end are CLOCK_MONOTONIC seconds (time.monotonic()), the clock the
harness reads for its events; ok is true when the answer had status 200, and
then the last item is the body (the real server's name).
"""

import argparse
import asyncio
import json
import os
import time
import urllib.parse


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--timeout", type=float, default=0.3)
    parser.add_argument("--stop-file", required=True)
    parser.add_argument("--ready-file")
    parser.add_argument("--max-seconds", type=float, default=120.0)
    return parser.parse_args()


async def fetch(host, port, request):
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        return await reader.read()
    finally:
        writer.close()


async def attempt(host, port, request, timeout, attempts):
    start = time.monotonic()
    try:
        data = await asyncio.wait_for(fetch(host, port, request), timeout)
        head, _, body = data.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0].split()
        ok = len(status) >= 2 and status[1] == b"200"
        what = body.decode(errors="replace").strip() if ok else f"status {status}"
    except asyncio.TimeoutError:
        ok, what = False, "timeout"
    except OSError as error:
        ok, what = False, f"{type(error).__name__}: {error}"
    attempts.append([start, time.monotonic(), ok, what])


async def run(args):
    url = urllib.parse.urlsplit(args.url)
    if url.scheme != "http" or url.hostname is None:
        raise SystemExit(f"probe.py: not an http URL: {args.url}")
    host, port = url.hostname, url.port or 80
    path = url.path or "/"
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    ).encode()
    attempts = []
    tasks = set()
    begin = time.monotonic()
    next_at = begin
    if args.ready_file:
        with open(args.ready_file, "w") as ready:
            ready.write("probing\n")
    while not os.path.exists(args.stop_file) and time.monotonic() - begin < args.max_seconds:
        task = asyncio.create_task(attempt(host, port, request, args.timeout, attempts))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        next_at += args.interval
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    if tasks:
        await asyncio.gather(*tasks)
    attempts.sort(key=lambda a: a[0])
    print(json.dumps({"attempts": attempts}))


def main():
    asyncio.run(run(parse_args()))


if __name__ == "__main__":
    main()
