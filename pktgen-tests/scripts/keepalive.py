#!/usr/bin/env python3
"""Long-lived keep-alive HTTP clients for the Pylon sync tests (stdlib only).

Opens --connections TCP connections to --host:--port and, on each of them,
sends one HTTP/1.1 GET every --interval seconds, reading each answer
(Content-Length framed) before the next; a request has --timeout seconds.
The first error on a connection (reset, refused, EOF, timeout, a status
other than 200) ends that connection and is recorded. Once every connection
has had its first answer, --ready-file is written. Runs until --stop-file
exists (or --max-seconds pass), then prints one JSON object:

    {"connections": N, "opened": n, "requests": total,
     "conns": [{"ok": k, "first_ok": t, "last_ok": t, "error": null or
                "...", "error_at": t, "server": "rs1"}, ...]}

Times are CLOCK_MONOTONIC seconds (time.monotonic()), the clock the harness
stamps its events with.
"""

import argparse
import asyncio
import json
import os
import time


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--connections", type=int, default=120)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--stop-file", required=True)
    parser.add_argument("--ready-file")
    parser.add_argument("--max-seconds", type=float, default=300.0)
    return parser.parse_args()


async def read_answer(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split()
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    body = await reader.readexactly(length)
    return (len(status) >= 2 and status[1] == "200"), body.decode(errors="replace").strip(), status


async def run_connection(args, state, stop, started):
    request = (
        f"GET / HTTP/1.1\r\nHost: {args.host}\r\nUser-Agent: pylon-keepalive\r\n\r\n"
    ).encode()
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(args.host, args.port), args.timeout
        )
    except (OSError, asyncio.TimeoutError) as error:
        state["error"] = f"connect: {type(error).__name__}: {error}"
        state["error_at"] = time.monotonic()
        started.set_result_once()
        return
    state["opened"] = True
    try:
        while not stop.is_set():
            begin = time.monotonic()
            try:
                writer.write(request)
                await writer.drain()
                ok, body, status = await asyncio.wait_for(read_answer(reader), args.timeout)
            except asyncio.TimeoutError:
                state["error"] = "timeout"
                break
            except (OSError, asyncio.IncompleteReadError, ValueError) as error:
                state["error"] = f"{type(error).__name__}: {error}"
                break
            if not ok:
                state["error"] = f"status {status}"
                break
            now = time.monotonic()
            state["ok"] += 1
            state["server"] = body
            state["last_ok"] = now
            state["max_latency"] = max(state["max_latency"], now - begin)
            if state["first_ok"] is None:
                state["first_ok"] = now
                started.set_result_once()
            await asyncio.sleep(max(0.0, args.interval - (now - begin)))
        if state["error"] is not None:
            state["error_at"] = time.monotonic()
            started.set_result_once()
    finally:
        writer.close()


class Countdown:
    """Sets an event once `n` connections have reported."""

    def __init__(self, n, event):
        self.left = n
        self.event = event

    def set_result_once(self):
        self.left -= 1
        if self.left == 0:
            self.event.set()


async def main_async(args):
    stop = asyncio.Event()
    all_started = asyncio.Event()
    countdown = Countdown(args.connections, all_started)
    states = [
        {"ok": 0, "first_ok": None, "last_ok": None, "error": None, "error_at": None,
         "server": None, "opened": False, "max_latency": 0.0}
        for _ in range(args.connections)
    ]
    tasks = []
    for state in states:
        # A per-connection flag so one connection reports its start once.
        reporter = Once(countdown)
        tasks.append(asyncio.create_task(run_connection(args, state, stop, reporter)))
        await asyncio.sleep(0.002)
    await all_started.wait()
    if args.ready_file:
        with open(args.ready_file, "w") as f:
            f.write("ready\n")
    deadline = time.monotonic() + args.max_seconds
    while not os.path.exists(args.stop_file) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.gather(*tasks)
    return states


class Once:
    def __init__(self, countdown):
        self.countdown = countdown
        self.done = False

    def set_result_once(self):
        if not self.done:
            self.done = True
            self.countdown.set_result_once()


def main():
    args = parse_args()
    states = asyncio.run(main_async(args))
    print(json.dumps({
        "connections": args.connections,
        "opened": sum(1 for s in states if s["opened"]),
        "requests": sum(s["ok"] for s in states),
        "conns": states,
    }))


if __name__ == "__main__":
    main()
