"""The memory balloon with the test kernel: the seeds' balloon/query-balloon transcript, the
VMM's RSS as the guest inflates, deflates and reports free pages, BALLOON_CHANGED, statistics,
the value rules, every malformed request of `balloon evil`, the snapshot refusal, and the
configuration forms.

Memory is measured as the VMM's RssAnon (guest RAM is anonymous private memory): `mem fill`
touches one word per page, so every page it fills costs the host a page, and every page the
balloon takes back is freed with MADV_DONTNEED."""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from harness import parse_kv
from svm import BIN, KERNEL_BIN, READY, RawQmp, boot, stratovirt_cmd

MIB = 1 << 20
# The test area starts at 32 MiB: `mem fill N` fills [32 MiB, 32 + N MiB); the balloon takes
# the highest pages first (docs/testkernel.md).


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise AssertionError("no RssAnon")


def balloon_vm(tmp_path, mem=512, opts="", extra=(), name="vm", cmdline_extra=""):
    """A VM with a balloon (`opts` after virtio-balloon-device), QMP and a log."""
    sock = str(tmp_path / f"{name}.sock")
    log = tmp_path / f"{name}.log"
    dev = "virtio-balloon-device" + ("," + opts if opts else "")
    cmd = stratovirt_cmd(mem=str(mem), qmp=sock,
                         extra=["-device", dev, "-D", str(log)] + list(extra))
    if cmdline_extra:
        cmd[cmd.index("-append") + 1] += " " + cmdline_extra
    vm, _ = boot(cmd)
    q = RawQmp(sock, timeout=30)
    assert q.execute("qmp_capabilities")[1] == {"return": {}}
    return vm, q, log


def info(vm) -> dict:
    return parse_kv(vm.cmd_ok("balloon info"))


def wait_actual(q, want, timeout=60):
    """Polls query-balloon until it says `want`; returns the events seen meanwhile."""
    deadline = time.monotonic() + timeout
    events = []
    while True:
        ev, r = q.execute("query-balloon")
        events += ev
        if r == {"return": {"actual": want}}:
            return events
        assert time.monotonic() < deadline, f"query-balloon: {r}, want {want}"
        time.sleep(0.02)


def next_events(q, name, count=1, timeout=10):
    """Reads events until `count` named `name` arrived (others are dropped)."""
    q.sock.settimeout(timeout)
    got = []
    while len(got) < count:
        r = q.recv()
        if r.get("event") == name:
            got.append(r)
    return got


def changed_events(events):
    return [e["data"]["actual"] for e in events if e["event"] == "BALLOON_CHANGED"]


def until_changed_to(q, events, want, timeout=5):
    """`events` plus what arrives until a BALLOON_CHANGED carries `want` (the last one of a
    burst comes up to a second after the change)."""
    events = list(events)
    while not changed_events(events) or changed_events(events)[-1] != want:
        events += next_events(q, "BALLOON_CHANGED", timeout=timeout)
    return events


def test_the_seeds_transcript(tmp_path):
    """Seed 003: a 4 GiB VM with more than 2 GiB idle is set to 2 GiB."""
    vm, q, _ = balloon_vm(tmp_path, mem=4096)
    try:
        q.send('{"execute": "balloon", "arguments": {"value": 2147483648}}')
        line = q.file.readline()
        while b'"event"' in line:
            line = q.file.readline()
        assert line == b'{"return":{}}\r\n'
        wait_actual(q, 2147483648)
        q.send('{"execute": "query-balloon"}')
        line = q.file.readline()
        while b'"event"' in line:
            line = q.file.readline()
        assert line == b'{"return":{"actual":2147483648}}\r\n'
        b = info(vm)
        assert int(b["pages"]) == (2 << 30) // 4096
        assert b["actual"] == b["pages"] == b["target"]
    finally:
        vm.kill()


def test_rss_follows_the_balloon_and_deflated_pages_read_zero(tmp_path):
    vm, q, _ = balloon_vm(tmp_path, mem=512)
    try:
        vm.cmd_ok("mem fill 448 7", timeout=120)
        full = rss_kib(vm.proc.pid)
        assert full > 448 * 1024, full
        # 128 MiB: the top 384 MiB go into the balloon; 352 of them were filled.
        events = []
        ev, r = q.execute("balloon", {"value": 128 * MIB})
        assert r == {"return": {}}
        events += ev + wait_actual(q, 128 * MIB)
        shrunk = rss_kib(vm.proc.pid)
        assert full - shrunk > 340 * 1024, (full, shrunk)
        assert full - shrunk < 392 * 1024, (full, shrunk)
        b = info(vm)
        assert int(b["pages"]) == 384 * 256 and b["actual"] == b["pages"]
        # Memory below the balloon keeps its data; the event carries the final value.
        vm.cmd_ok("mem check 96 7", timeout=60)
        events = until_changed_to(q, events, 128 * MIB)
        assert all(v >= 128 * MIB for v in changed_events(events)), events

        # Back to 512 MiB: the guest has every page again, and the given-back ones read zero.
        ev, r = q.execute("balloon", {"value": 512 * MIB})
        assert r == {"return": {}}
        wait_actual(q, 512 * MIB)
        assert int(info(vm)["pages"]) == 0
        assert vm.cmd("mem check 448 7", timeout=60)[-1] == f"ERR mismatch at 0x{(128 << 20):x}"
        assert parse_kv(vm.cmd_ok("mem zero 128 352", timeout=60))["pages"] == str(352 * 256)
        assert rss_kib(vm.proc.pid) - shrunk < 16 * 1024, "nothing came back until touched"
        vm.cmd_ok("mem fill 448 8", timeout=120)
        vm.cmd_ok("mem check 448 8", timeout=120)
    finally:
        vm.kill()


def test_change_events_are_upstreams_and_at_most_one_a_second(tmp_path):
    """BALLOON_CHANGED {"actual": bytes}: the first change at once, then at most one a second,
    the last value always sent (the driver writes `actual` after every 16 MiB here)."""
    vm, q, _ = balloon_vm(tmp_path, mem=2048)
    try:
        q.execute("balloon", {"value": 1024 * MIB})
        events = until_changed_to(q, wait_actual(q, 1024 * MIB), 1024 * MIB)
        changes = [e for e in events if e["event"] == "BALLOON_CHANGED"]
        assert changes, events
        assert changes[-1]["data"] == {"actual": 1024 * MIB}
        assert set(changes[-1]) == {"event", "data", "timestamp"}
        stamps = [e["timestamp"]["seconds"] + e["timestamp"]["microseconds"] / 1e6 for e in changes]
        assert all(b - a >= 0.99 for a, b in zip(stamps, stamps[1:])), stamps
        # No change, no event.
        q.execute("balloon", {"value": 1024 * MIB})
        q.sock.settimeout(1.5)
        with pytest.raises(TimeoutError):
            q.recv()
    finally:
        vm.kill()


def test_values_are_checked_and_clamped(tmp_path):
    vm, q, log = balloon_vm(tmp_path, mem=256)
    try:
        for value, desc in [
            (0, "Parameter 'value' expects a size in bytes above zero"),
            (-4096, "Parameter 'value' expects a size in bytes above zero"),
            (MIB, "balloon: 1048576 bytes is below 134217728 bytes (128 MiB), the least memory a VM may have"),
            (128 * MIB - 1, "balloon: 134217727 bytes is below 134217728 bytes (128 MiB), the least memory a VM may have"),
        ]:
            _, r = q.execute("balloon", {"value": value})
            assert r == {"error": {"class": "GenericError", "desc": desc}}, value
        _, r = q.execute("balloon", {"value": "2G"})
        assert r["error"]["desc"] == "Invalid parameter type for 'value', expected: integer"
        _, r = q.execute("balloon", {})
        assert r["error"]["desc"] == "Parameter 'value' is missing"
        assert int(info(vm)["target"]) == 0, "refusals change nothing"
        # The floor itself is fine; above the boot memory means the boot memory.
        assert q.execute("balloon", {"value": 128 * MIB})[1] == {"return": {}}
        wait_actual(q, 128 * MIB)
        assert q.execute("balloon", {"value": 1 << 40})[1] == {"return": {}}
        wait_actual(q, 256 * MIB)
        assert int(info(vm)["target"]) == 0
        assert "balloon: target 256 MiB of 256 MiB (more was asked" in log.read_text()
    finally:
        vm.kill()


def test_a_paused_guest_follows_the_target_when_it_runs_again(tmp_path):
    vm, q, _ = balloon_vm(tmp_path, mem=256)
    try:
        q.execute("stop")
        assert q.execute("balloon", {"value": 200 * MIB})[1] == {"return": {}}
        time.sleep(0.5)
        assert q.execute("query-balloon")[1] == {"return": {"actual": 256 * MIB}}
        q.execute("cont")
        wait_actual(q, 200 * MIB)
    finally:
        vm.kill()


def test_free_page_reporting_releases_memory_without_qmp(tmp_path):
    vm, q, _ = balloon_vm(tmp_path, mem=512, opts="free-page-reporting=on")
    try:
        assert info(vm)["report"] == "1"
        vm.cmd_ok("mem fill 256 3", timeout=120)
        full = rss_kib(vm.proc.pid)
        assert parse_kv(vm.cmd_ok("balloon report 256"))["chains"] == "4"
        freed = full - rss_kib(vm.proc.pid)
        assert 250 * 1024 < freed < 262 * 1024, freed
        # The pages stay the guest's: not in the balloon, and they read zero.
        assert q.execute("query-balloon")[1] == {"return": {"actual": 512 * MIB}}
        assert info(vm)["pages"] == "0"
        vm.cmd_ok("mem zero 32 256", timeout=60)
        # Without the option the queue does not exist.
        vm2, _, _ = balloon_vm(tmp_path, mem=256, name="plain")
        try:
            assert info(vm2)["report"] == "0"
            assert vm2.cmd("balloon report 16")[-1] == "ERR feature not negotiated"
        finally:
            vm2.kill()
    finally:
        vm.kill()


def test_deflate_on_oom_is_offered_when_configured(tmp_path):
    vm, _, _ = balloon_vm(tmp_path, mem=256, opts="deflate-on-oom=on,free-page-reporting=off")
    try:
        b = info(vm)
        assert (b["deflate_on_oom"], b["report"], b["stats"]) == ("1", "0", "1")
        assert int(b["features"], 16) & (1 << 2)
    finally:
        vm.kill()
    vm, _, _ = balloon_vm(tmp_path, mem=256, name="off")
    try:
        assert info(vm)["deflate_on_oom"] == "0"
    finally:
        vm.kill()


def test_statistics_reach_operators(tmp_path):
    vm, q, _ = balloon_vm(tmp_path, mem=512)
    try:
        q.execute("balloon", {"value": 384 * MIB})
        wait_actual(q, 384 * MIB)
        before = time.time()
        _, r = q.execute("query-balloon-stats")
        s = r["return"]
        assert set(s) == {"stats", "last-update"}
        assert abs(s["last-update"] - before) < 5
        usable = int(READY.search(vm.output).group(2))
        st = s["stats"]
        assert set(st) == {"stat-total-memory", "stat-free-memory", "stat-available-memory"}
        # Fresh: the guest answered after the balloon took 128 MiB of its 480 MiB pool.
        assert st["stat-free-memory"] == (480 - 128) * MIB, st
        assert st["stat-total-memory"] == usable
        # query-balloon keeps the seeds' shape.
        assert q.execute("query-balloon")[1] == {"return": {"actual": 384 * MIB}}
    finally:
        vm.kill()
    # A driver without the statistics queue: the reason.
    vm, q, _ = balloon_vm(tmp_path, mem=256, name="nostats", cmdline_extra="virtio_balloon.stats=0")
    try:
        assert info(vm)["stats"] == "0"
        _, r = q.execute("query-balloon-stats")
        assert r == {"error": {"class": "GenericError",
                               "desc": "the guest's balloon driver has not started a statistics queue"}}
    finally:
        vm.kill()


EVIL = ["hole", "pastend", "repeat", "notin", "huge", "partial", "wrongdir", "oob", "mmio",
        "loop", "report", "statsbig", "actual", "availjump"]
WARNINGS = [
    "page frames outside guest RAM",
    "page frames repeated or already in the balloon",
    "page frames to deflate that are not in the balloon",
    "a request with more page frames than a driver sends",
    "buffers that end in the middle of an entry",
    "buffers of the wrong direction",
    "buffers outside guest memory",
    "free page ranges not on 4 KiB boundaries",
    "a statistics buffer longer than a driver sends",
    "a second statistics buffer",
]


def test_every_malformed_request_fails_alone(tmp_path):
    """Each case of `balloon evil`: the VMM lives and answers, memory the guest did not give up
    keeps its data (nothing it named wrongly reached madvise), each kind of mistake is logged
    once, and a broken queue only needs a reset."""
    vm, q, log = balloon_vm(tmp_path, mem=256, opts="free-page-reporting=on")
    try:
        listed = [l.split(":")[0] for l in vm.cmd_ok("balloon evil list")]
        assert listed == EVIL
        vm.cmd_ok("mem fill 64 5", timeout=60)
        rss = rss_kib(vm.proc.pid)
        for case in EVIL:
            reply = vm.cmd_ok(f"balloon evil {case}", timeout=60)
            kv = parse_kv(reply)
            if case == "availjump":
                assert reply[0].startswith("needs-reset"), reply
                assert int(kv["device_status"], 16) & 0x40
            else:
                assert reply[0].startswith("completed"), (case, reply)
                assert kv["state"] == "ready", (case, reply)
            assert q.execute("query-status")[1]["return"]["status"] == "running", case
        # Every page the cases named wrongly (32 MiB on) keeps its data: only `repeat` gave a
        # real page, the pool's highest (never filled), and took it back.
        vm.cmd_ok("mem check 64 5", timeout=60)
        assert abs(rss - rss_kib(vm.proc.pid)) < 1024
        # `actual` claimed more than RAM: the guest's memory reads 0 until a reset.
        assert q.execute("query-balloon")[1] == {"return": {"actual": 0}}
        text = log.read_text()
        for w in WARNINGS:
            assert len(re.findall(f"WARN .*the driver sent {re.escape(w)} ", text)) == 1, w
        assert "the driver broke a queue" in text and "device needs reset" in text
        # A reset brings the device back with an empty balloon.
        vm.cmd_ok("balloon reset")
        assert q.execute("query-balloon")[1] == {"return": {"actual": 256 * MIB}}
        q.execute("balloon", {"value": 192 * MIB})
        wait_actual(q, 192 * MIB)
        assert info(vm)["state"] == "ready"
        # The balloon thread runs filtered and was never stopped by seccomp.
        assert thread_seccomp(vm.proc.pid, "balloon") == 2
        assert vm.proc.poll() is None
    finally:
        vm.kill()


def thread_seccomp(pid, name):
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            if f.read().strip() != name:
                continue
        with open(f"/proc/{pid}/task/{tid}/status") as f:
            for line in f:
                if line.startswith("Seccomp:"):
                    return int(line.split()[1])
    raise AssertionError(f"no thread {name}")


def test_without_a_balloon_device_the_commands_say_none_is_active(tmp_path):
    sock = str(tmp_path / "vm.sock")
    vm, _ = boot(stratovirt_cmd(qmp=sock))
    try:
        q = RawQmp(sock)
        q.execute("qmp_capabilities")
        for name, args in [("balloon", {"value": 2147483648}), ("query-balloon", None),
                           ("query-balloon-stats", None)]:
            assert q.execute(name, args)[1] == {"error": {
                "class": "DeviceNotActive", "desc": "No balloon device has been activated"}}, name
        names = {c["name"] for c in q.execute("query-commands")[1]["return"]}
        assert {"balloon", "query-balloon", "query-balloon-stats"} <= names
        assert vm.cmd_ok("balloon info") == ["balloon state=absent"]
    finally:
        vm.kill()


def test_migrate_is_refused_with_a_balloon_and_writes_nothing(tmp_path):
    vm, q, _ = balloon_vm(tmp_path, mem=256)
    try:
        snap = tmp_path / "snap"
        events, r = q.execute("migrate", {"uri": f"file:{snap}"})
        assert r["error"]["class"] == "GenericError"
        assert "balloon" in r["error"]["desc"], r
        assert events == [], "not paused"
        assert not snap.exists()
        assert q.execute("query-status")[1]["return"]["status"] == "running"
        assert q.execute("query-migrate")[1] == {"return": {"status": "none"}}
        vm.cmd_ok("ticks")
    finally:
        vm.kill()


def test_json_configuration_and_command_line_errors(tmp_path):
    import subprocess
    cfg = {
        "boot-source": {"kernel_image_path": KERNEL_BIN, "boot_args": "console=ttyS0"},
        "machine-config": {"name": "b", "vcpu_count": 1, "mem_size": 256 * MIB},
        "balloon": {"deflate_on_oom": True, "free_page_reporting": True},
        "serial": {"stdio": True},
    }
    path = tmp_path / "vm.json"
    path.write_text(json.dumps(cfg))
    sock = str(tmp_path / "vm.sock")
    vm, _ = boot([BIN, "-config", str(path), "-qmp", f"unix:{sock},server,nowait"])
    try:
        b = info(vm)
        assert (b["state"], b["deflate_on_oom"], b["report"]) == ("ready", "1", "1")
    finally:
        vm.kill()
    for extra, err in [
        (["-device", "virtio-balloon-device", "-device", "virtio-balloon-device"],
         "-device: only one balloon device is supported"),
        (["-device", "virtio-balloon-device,deflate-on-oom=maybe"],
         "-device: deflate-on-oom=maybe is not a boolean (use on/off, true/false or yes/no)"),
        (["-device", "virtio-balloon-device", "-incoming", f"file:{tmp_path}/s"],
         "-incoming: a VM with a balloon device cannot start from a snapshot (snapshots exclude the balloon)"),
    ]:
        p = subprocess.run(stratovirt_cmd(extra=extra), capture_output=True, text=True, timeout=10)
        assert p.returncode == 1
        assert p.stderr.strip() == f"stratovirt: {err}", p.stderr


def test_a_console_and_a_balloon_are_the_two_other_devices(tmp_path):
    """Both fit beside the disks (the console's slot first, then the balloon's) and both work."""
    con = tmp_path / "con.sock"
    vm, q, log = balloon_vm(tmp_path, mem=256, extra=[
        "-chardev", f"socket,id=con0,path={con},server,nowait", "-device", "virtconsole,chardev=con0"])
    try:
        assert "state=ready" in vm.cmd_ok("con info")[0]
        assert info(vm)["state"] == "ready"
        q.execute("balloon", {"value": 192 * MIB})
        wait_actual(q, 192 * MIB)
        text = log.read_text()
        con_slot = int(re.search(r"console con0 on socket .* in slot (\d+)", text).group(1))
        balloon_slot = int(re.search(r"balloon in slot (\d+)", text).group(1))
        assert balloon_slot == con_slot + 1, text
    finally:
        vm.kill()
