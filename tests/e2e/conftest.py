"""Shared fixtures for the end-to-end tests.

Requirements are checked loudly: a missing /dev/kvm, QEMU or test kernel
fails the test that needs it with a message saying what to do; nothing is
skipped silently.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import harness  # noqa: E402

REPO_ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
GUEST_DIR = os.path.join(REPO_ROOT, "guest")
GUEST_OUT = os.path.join(REPO_ROOT, "target", "guest")
TESTKERNEL_ELF = os.path.join(GUEST_OUT, "testkernel.elf")
TESTKERNEL_BIN = os.path.join(GUEST_OUT, "testkernel.bin")


def _newest_source_mtime() -> float:
    newest = 0.0
    for base, dirs, files in os.walk(GUEST_DIR):
        dirs[:] = [d for d in dirs if d != "target"]
        for f in files:
            if f.endswith((".rs", ".ld", ".toml", "Makefile")):
                newest = max(newest, os.path.getmtime(os.path.join(base, f)))
    return newest


def _ensure_testkernel() -> None:
    """Builds the test kernel (make -C guest) when it is missing or older
    than its sources."""
    have = all(os.path.exists(p) for p in (TESTKERNEL_ELF, TESTKERNEL_BIN))
    if have and min(os.path.getmtime(TESTKERNEL_ELF), os.path.getmtime(TESTKERNEL_BIN)) >= _newest_source_mtime():
        return
    r = subprocess.run(["make", "-C", GUEST_DIR, f"OUT={GUEST_OUT}"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"building the test kernel failed (make -C guest):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}",
                    pytrace=False)


@pytest.fixture(scope="session")
def repo_root() -> str:
    """Absolute path of the repository."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def testkernel() -> dict:
    """Paths of the test kernel images, built if needed:
    {"elf": ..., "bin": ...}."""
    _ensure_testkernel()
    return {"elf": TESTKERNEL_ELF, "bin": TESTKERNEL_BIN}


@pytest.fixture(scope="session")
def testkernel_elf(testkernel) -> str:
    """target/guest/testkernel.elf (PVH-bootable ELF)."""
    return testkernel["elf"]


@pytest.fixture(scope="session")
def testkernel_bin(testkernel) -> str:
    """target/guest/testkernel.bin (raw image for the Linux 64-bit boot protocol)."""
    return testkernel["bin"]


@pytest.fixture(scope="session")
def kvm() -> None:
    """Fails (does not skip) when /dev/kvm is unusable."""
    try:
        harness.require_kvm()
    except harness.MissingRequirement as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def qemu(kvm) -> str:
    """Path of qemu-system-x86_64; fails (does not skip) when it is missing."""
    try:
        return harness.require_binary("qemu-system-x86_64", "apt-get install qemu-system-x86")
    except harness.MissingRequirement as e:
        pytest.fail(str(e), pytrace=False)
