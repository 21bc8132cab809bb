# Build, demo, test and benchmark entry points. See README.md.
SHELL := /bin/bash
CARGO ?= cargo
GUEST_DIR := guest
GUEST_OUT := target/guest
VENV := .venv
PY := $(VENV)/bin/python
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin

.PHONY: all build rust-deps vmm guest install demo test test-unit test-e2e test-linux linux-agent lint bench bench-linux deps clean

all: build

build: rust-deps vmm guest

# The guest target named in rust-toolchain.toml (rustup adds it only on a fresh toolchain install).
rust-deps:
	@rustup target list --installed | grep -qx x86_64-unknown-none || rustup target add x86_64-unknown-none

vmm:
	$(CARGO) build --release --bin stratovirt

guest:
	$(MAKE) -C $(GUEST_DIR) OUT=$(abspath $(GUEST_OUT))

# The binary alone is the VMM: `make install` copies the one `make build` made to $(BINDIR)
# (PREFIX=/usr/local by default; DESTDIR for staging). It builds nothing, so `sudo make install`
# needs no toolchain for root.
install:
	@test -x target/release/stratovirt || { echo "target/release/stratovirt is missing: run make build first" >&2; exit 1; }
	install -D -m 0755 target/release/stratovirt $(DESTDIR)$(BINDIR)/stratovirt

# Python environment for the end-to-end tests (pytest, qemu.qmp).
$(PY): tests/requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r tests/requirements.txt
	touch $(PY)

deps:
	bash tools/install-deps.sh

demo: build
	bash tools/demo.sh

test: deps build $(PY) lint test-unit test-e2e test-linux

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	bash tools/check-guest-isa.sh $(GUEST_OUT)
	python3 tools/check-paths.py

test-unit:
	$(CARGO) test --workspace
	$(MAKE) -C $(GUEST_DIR) test

test-e2e: $(PY)
	$(PY) -m pytest -q tests/e2e

# The L1 agent of the real-Linux suite (runs inside the nested guest).
linux-agent:
	$(CARGO) build --release -p sv-linux-agent

# Real Linux guests, nested under QEMU TCG (tests/linux/README.md). The first run builds the
# guest kernel and the L1 images into a cache outside the repository.
test-linux: vmm linux-agent $(PY)
	$(PY) -m pytest -q tests/linux

bench: build $(PY)
	$(PY) tests/bench/run.py
	$(PY) tests/bench/snapshot.py

# Real-Linux boot, stratovirt against QEMU microvm in the same nested L1.
bench-linux: vmm linux-agent $(PY)
	$(PY) tests/linux/bench.py

clean:
	$(CARGO) clean
	rm -rf $(GUEST_DIR)/target
