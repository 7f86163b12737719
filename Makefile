# Pylon: the two commands are `make demo` and `make test` (see README.md).
# Both install what is missing first; everything here runs as root.

SHELL := /bin/bash
CARGO ?= cargo
# Debian packages the build and the tests need (keepalived and tcpdump: the
# VRRP tests' peer and advertisement capture).
DEBS := libdpdk-dev dpdk pkg-config clang libclang-dev iproute2 ethtool \
        python3 curl iputils-ping procps keepalived tcpdump
# Seconds the demo runs before exiting by itself (unset: until Ctrl-C).
DEMO_SECONDS ?=
# Forwarding mode the demo shows: nat, dsr or tunnel.
MODE ?= nat

.PHONY: all deps build test unit e2e demo bench fuzz clippy fmt clean

all: build

deps:
	@missing=""; for p in $(DEBS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

build: deps
	$(CARGO) build --release --workspace --all-targets

# Unit and in-process tests run in parallel; the namespace tests share
# the machine's two cores and run one at a time.
test: build unit e2e

unit: build
	$(CARGO) test --release --workspace --exclude pktgen-tests

e2e: build
	$(CARGO) test --release -p pktgen-tests -- --test-threads=1

demo: build
	DEMO_SECONDS=$(DEMO_SECONDS) MODE=$(MODE) ./target/release/pylon-demo

# Benchmarks (README.md, "Benchmarks"): packet rates of Pylon's worker on
# DPDK ring ports against bare forwarding, then real TCP traffic through
# Pylon and through HAProxy (wrk against nginx real servers). Writes
# target/bench/results.json and target/bench/mpps.svg and prints a table;
# about 5 minutes. At nice -20 so that other work on the machine disturbs
# the measurements as little as it can; BENCH_ARGS passes options
# (`--quick`, `--rounds N`, `--skip-real`, ...; see pylon-bench --help).
BENCH_DEBS := haproxy wrk nginx
BENCH_ARGS ?=
bench: DEBS += $(BENCH_DEBS)
bench: deps
	$(CARGO) build --release -p pylon-control -p pktgen-tests
	nice -n -20 ./target/release/pylon-bench --out target/bench $(BENCH_ARGS)

# Fuzz the frame parser and the NAT rewrite, and the sync datagram decoder
# and protocol endpoint (cargo-fuzz on stable via
# RUSTC_BOOTSTRAP); FUZZ_SECONDS bounds the run.
FUZZ_SECONDS ?= 60
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run parse_frame corpus/parse_frame -- -max_total_time=$(FUZZ_SECONDS)
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run sync_datagram corpus/sync_datagram -- -max_total_time=$(FUZZ_SECONDS)

clippy: deps
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
