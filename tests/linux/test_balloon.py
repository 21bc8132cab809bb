"""The memory balloon with a real Linux guest and Linux's own virtio-balloon driver: a 2 GiB L2
that touched most of its memory and freed it is ballooned to 1 GiB and back (its usable
memory, query-balloon, the VMM's RSS in L1 and BALLOON_CHANGED), deflate-on-oom gives a guest
under memory pressure its pages back instead of the OOM killer, and free page reporting
returns freed memory to the host without any QMP command.

The guests touch memory with tools/memhog.c; the VMM's memory is its RssAnon in L1 (guest RAM
is anonymous private memory)."""

from __future__ import annotations

import re
import time

from nested import stratovirt_argv
from svm import RawQmp

MIB = 1 << 20
GIB = 1 << 30


def start(vms, name, opts=""):
    """A 2 GiB L2 with a balloon (`opts` after virtio-balloon-device) and QMP; (vm, qmp)."""
    d = f"/run/vms/{name}"
    dev = "virtio-balloon-device" + ("," + opts if opts else "")
    vm = vms.boot(name, stratovirt_argv(mem="2G", qmp=f"{d}/qmp.sock",
                                        extra=["-device", dev, "-D", f"{d}/log"]),
                  qmp=f"{d}/qmp.sock", log=f"{d}/log")
    q = RawQmp(vm.qmp_path, timeout=120)
    assert q.execute("qmp_capabilities")[1] == {"return": {}}
    return vm, q


def rss_mib(l1, vm) -> int:
    """The VMM's anonymous resident memory in L1."""
    return int(l1.sh(f"grep RssAnon /proc/{vm.pid}/status").split()[1]) // 1024


def meminfo_mib(vm, key) -> int:
    return int(re.search(rf"^{key}:\s+(\d+) kB", vm.out("cat /proc/meminfo"), re.M).group(1)) // 1024


def wait_actual(q, want, timeout=180):
    """Polls query-balloon until it says `want`; returns the events seen meanwhile."""
    deadline = time.monotonic() + timeout
    events = []
    while True:
        ev, r = q.execute("query-balloon")
        events += ev
        if r == {"return": {"actual": want}}:
            return events
        assert time.monotonic() < deadline, f"query-balloon: {r}, want {want}"
        time.sleep(0.2)


def changes(events):
    return [e["data"]["actual"] for e in events if e["event"] == "BALLOON_CHANGED"]


def until_changed_to(q, events, want, timeout=30):
    """`events` plus those that arrive until a BALLOON_CHANGED carries `want`."""
    events = list(events)
    q.sock.settimeout(timeout)
    while not changes(events) or changes(events)[-1] != want:
        r = q.recv()
        if "event" in r:
            events.append(r)
    return events


def wait_rss_below(l1, vm, mib, timeout):
    deadline = time.monotonic() + timeout
    while True:
        rss = rss_mib(l1, vm)
        if rss < mib:
            return rss
        assert time.monotonic() < deadline, f"RSS {rss} MiB, expected below {mib} MiB"
        time.sleep(1)


def test_balloon_reclaims_a_linux_guests_idle_memory_and_gives_it_back(l1, vms):
    vm, q = start(vms, "balloon")
    total = meminfo_mib(vm, "MemTotal")
    # Most of the guest's memory used, then freed: the host still holds all of it.
    assert vm.out("memhog touch 1700", timeout=300).startswith("touched 1700 MiB")
    full = rss_mib(l1, vm)
    assert full > 1700, full
    # The seeds' command: the guest gives 1 GiB to the balloon.
    events, r = q.execute("balloon", {"value": GIB})
    assert r == {"return": {}}
    events = until_changed_to(q, events + wait_actual(q, GIB), GIB)
    assert all(GIB <= v < 2 * GIB for v in changes(events)), changes(events)
    assert q.execute("query-balloon")[1] == {"return": {"actual": GIB}}
    # Without deflate-on-oom Linux takes ballooned pages off its total.
    now = meminfo_mib(vm, "MemTotal")
    assert 1000 <= total - now <= 1030, (total, now)
    assert meminfo_mib(vm, "MemAvailable") < now
    shrunk = rss_mib(l1, vm)
    assert 950 < full - shrunk < 1100, (full, shrunk)
    # Back to 2 GiB: the guest has its memory again, more than the balloon left it.
    events, r = q.execute("balloon", {"value": 2 * GIB})
    assert r == {"return": {}}
    until_changed_to(q, wait_actual(q, 2 * GIB), 2 * GIB)
    assert meminfo_mib(vm, "MemTotal") == total
    assert meminfo_mib(vm, "MemAvailable") > total - 128
    # The driver's statistics reach the operator.
    stats = q.execute("query-balloon-stats")[1]["return"]["stats"]
    assert abs(stats["stat-total-memory"] - total * MIB) < 32 * MIB, stats
    assert stats["stat-free-memory"] > GIB, stats


def test_deflate_on_oom_gives_a_guest_under_pressure_its_pages_back(l1, vms):
    vm, q = start(vms, "oom", "deflate-on-oom=on")
    q.execute("balloon", {"value": GIB})
    events = wait_actual(q, GIB)
    avail = meminfo_mib(vm, "MemAvailable")
    assert avail < 1100, avail
    # More than is available: the kernel's OOM path deflates the balloon (1 MiB at a time)
    # and the allocation goes on.
    hog = 1300
    vm.send(f"memhog hold {hog} > /tmp/hog.out 2>&1 & HOG=$!\n")
    deadline = time.monotonic() + 240
    while "holding" not in vm.out("cat /tmp/hog.out; true"):
        alive = vm.sh("kill -0 $HOG", check=False)[0] == 0
        assert alive, f"memhog died: {vm.out('cat /tmp/hog.out; dmesg | tail -5; true')}"
        assert time.monotonic() < deadline, vm.out("cat /tmp/hog.out; true")
        time.sleep(2)
    # The OOM path may still be giving pages back: wait until the guest's memory holds still,
    # then the last event carries it.
    seen, r = q.execute("query-balloon")
    events += seen
    while True:
        time.sleep(3)
        seen, again = q.execute("query-balloon")
        events += seen
        if again == r:
            break
        r = again
    actual = r["return"]["actual"]
    # MemAvailable only estimates what the guest could free: allow it 64 MiB either way.
    assert actual >= GIB + (hog - avail - 64) * MIB, (actual, avail)
    events = until_changed_to(q, events, actual)
    dmesg = vm.out("dmesg")
    assert "invoked oom-killer" not in dmesg and "Out of memory" not in dmesg, dmesg[-2000:]
    vm.kill()
    # The same pressure without deflate-on-oom: the OOM killer ends it.
    vm, q = start(vms, "no-oom")
    q.execute("balloon", {"value": GIB})
    wait_actual(q, GIB)
    # Linux took the ballooned pages off its total here, so its overcommit check would refuse
    # the mapping outright; with overcommit allowed the pages run out as they are touched.
    vm.sh("echo 1 > /proc/sys/vm/overcommit_memory")
    rc, out = vm.sh(f"memhog hold {hog}", timeout=240, check=False)
    assert rc == 137, (rc, out)
    assert "Out of memory: Killed process" in vm.out("dmesg")
    assert q.execute("query-balloon")[1] == {"return": {"actual": GIB}}


def test_free_page_reporting_returns_freed_memory_without_qmp(l1, vms):
    vm, q = start(vms, "report", "free-page-reporting=on")
    q.close()
    assert vm.out("memhog touch 1500", timeout=300).startswith("touched 1500 MiB")
    # memhog has exited: Linux reports the freed 2 MiB blocks a couple of seconds later, and the
    # host lets them go. No QMP command was sent.
    peak = rss_mib(l1, vm)
    low = wait_rss_below(l1, vm, peak - 1200, 120)
    assert low < 600, (peak, low)
