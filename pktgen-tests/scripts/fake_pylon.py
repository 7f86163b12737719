#!/usr/bin/env python3
"""A stand-in for `pylon` that keeps its process contract and nothing else,
so the harness can test how it drives the daemon (Python 3.11+ stdlib only).

    fake_pylon.py --config FILE

Reads eal.file_prefix and control.stats_file from the TOML config, creates
/var/run/dpdk/<prefix> as DPDK would, writes the stats file (tmp + rename) at
start and on every SIGUSR1, and on SIGINT/SIGTERM removes the runtime
directory and exits 0. Counts the SIGUSR1s it got in
workers[0].rx_packets so a reader can tell one rewrite from the next.
"""

import argparse
import json
import os
import pathlib
import shutil
import signal
import sys
import time
import tomllib


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    args = parser.parse_args()
    with open(args.config, "rb") as f:
        config = tomllib.load(f)
    runtime = pathlib.Path("/var/run/dpdk") / config["eal"]["file_prefix"]
    stats_file = pathlib.Path(config["control"]["stats_file"])
    runtime.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    state = {"usr1": 0, "stop": False}

    def write_stats():
        stats = {
            "uptime_ms": int((time.monotonic() - started) * 1000),
            "conns": {"live": 0, "capacity": 65536, "bytes_per_conn": 64.0},
            "workers": [
                {
                    "lcore": 1,
                    "rx_packets": state["usr1"],
                    "tx_packets": 0,
                    "to_control": 0,
                    "drops": {"not_ipv4": 1, "fragment": 0},
                }
            ],
            "servers": [],
        }
        tmp = stats_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(stats))
        os.rename(tmp, stats_file)

    def on_usr1(_signum, _frame):
        state["usr1"] += 1
        write_stats()

    def on_stop(_signum, _frame):
        state["stop"] = True

    signal.signal(signal.SIGUSR1, on_usr1)
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    print(f"fake pylon: config {args.config}, runtime {runtime}", file=sys.stderr, flush=True)
    write_stats()
    while not state["stop"]:
        time.sleep(0.05)
    shutil.rmtree(runtime, ignore_errors=True)
    print("fake pylon: stopped", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
