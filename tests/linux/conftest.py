"""Fixtures of the real-Linux suite: one nested L1 for the whole session (booting it costs about
5 s; every scenario then boots its own L2), and L2 VMs that are killed when their test ends.

Nothing is skipped: a missing tool or a failed build fails the suite with its reason."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from _pytest.runner import runtestprotocol

HERE = os.path.dirname(os.path.abspath(__file__))
for p in (HERE, os.path.join(HERE, "..", "e2e")):
    if p not in sys.path:
        sys.path.insert(0, p)

import build  # noqa: E402
import nested  # noqa: E402

# A test that failed while an L2 was in the nested emulator's known fault (nested.L1.l0_fault),
# or while L1 itself had stopped answering (then L1 boots afresh), runs once more; the first
# failure is listed at the end of the session.
L0_FAULT = pytest.StashKey[str]()
L1_OF = pytest.StashKey[nested.L1]()
RERUNS: list[tuple[str, str, str]] = []


@pytest.fixture(scope="session")
def arts() -> dict:
    """The cached kernels, initramfs and busybox (built on first use; see build.py)."""
    try:
        return build.build_all()
    except SystemExit as e:
        pytest.fail(f"building the real-Linux artefacts failed: {e}", pytrace=False)


@pytest.fixture(scope="session")
def l1(arts, tmp_path_factory):
    """The booted L1, its agent answering."""
    if not os.path.exists(nested.AGENT):
        r = subprocess.run(["cargo", "build", "--release", "-p", "sv-linux-agent"],
                           cwd=nested.ROOT, capture_output=True, text=True)
        if r.returncode != 0:
            pytest.fail(f"building the L1 agent failed:\n{r.stderr[-3000:]}", pytrace=False)
    workdir = str(tmp_path_factory.mktemp("nested"))
    payload = nested.Payload(arts, workdir).build()
    machine = nested.L1(arts, payload, workdir)
    try:
        machine.start()
    except nested.NestedError as e:
        machine.close()
        pytest.fail(f"L1 did not boot: {e}", pytrace=False)
    yield machine
    machine.close()


@pytest.fixture
def vms(l1):
    """Starts L2 VMs for one test and kills whatever is left of them at its end:
    `vm = vms.start(name, argv, qmp=...)`."""

    class Vms:
        def __init__(self):
            self.started = []

        def start(self, name, argv, **kw) -> nested.L2:
            vm = nested.L2(l1, name, argv, **kw)
            self.started.append(vm)
            return vm

        def boot(self, name, argv, timeout=180, **kw) -> nested.L2:
            vm = self.start(name, argv, **kw)
            vm.wait_userspace(timeout)
            return vm

    v = Vms()
    yield v
    for vm in v.started:
        vm.kill()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test shows the tails of L1's console, its L2s' consoles and the VMM logs, and
    whether an L2 is in the nested emulator's known fault."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        machine = item.funcargs.get("l1")
        if machine is not None:
            try:
                rep.sections.append(("nested consoles and logs", machine.tails()))
                if machine.agent_unresponsive:
                    # L1 itself stopped answering: the emulator again (it runs nothing else).
                    fault = "the L1 agent stopped answering; L1 is booted afresh"
                else:
                    fault = machine.l0_fault()
                if fault is not None:
                    rep.sections.append(("nested emulator fault (L0, not the VMM)", fault))
                    item.stash[L0_FAULT] = fault
                    item.stash[L1_OF] = machine
            except Exception as e:  # the report must not hide the failure itself
                rep.sections.append(("nested consoles and logs", f"unavailable: {e}"))


def pytest_runtest_protocol(item, nextitem):
    """Runs a test; once more if it failed in the nested emulator's known fault."""
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    reports = runtestprotocol(item, nextitem=nextitem, log=False)
    fault = item.stash.get(L0_FAULT, None)
    if fault is not None:
        first = next((r for r in reports if r.failed), None)
        RERUNS.append((item.nodeid, fault, first.longreprtext[-1500:] if first else ""))
        del item.stash[L0_FAULT]
        machine = item.stash[L1_OF]
        if machine.agent_unresponsive:
            machine.restart()
        item._initrequest()
        reports = runtestprotocol(item, nextitem=nextitem, log=False)
    for r in reports:
        item.ihook.pytest_runtest_logreport(report=r)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


def pytest_terminal_summary(terminalreporter):
    for nodeid, fault, first in RERUNS:
        terminalreporter.write_sep("-", f"rerun after the nested emulator's fault: {nodeid}")
        terminalreporter.write_line(fault)
        terminalreporter.write_line(first)
