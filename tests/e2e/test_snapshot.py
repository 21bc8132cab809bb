"""Snapshots with the test kernel: QMP `migrate` to a file, `-incoming` restore, clones from one
template, every refusal and every corruption, and a `kill -9` in the middle of a save."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest

from harness import Vm, parse_kv
from svm import BIN, READY, RawQmp, boot, stratovirt_cmd

MEM = "256"


def qmp_vm(tmp_path, name, cpus=2, extra=(), mem=MEM):
    sock = str(tmp_path / f"{name}.sock")
    vm, _ = boot(stratovirt_cmd(cpus=cpus, mem=mem, qmp=sock, extra=list(extra)))
    q = RawQmp(sock)
    q.execute("qmp_capabilities")
    return vm, q


def restore(tmp_path, name, snap, cpus=2, extra=(), mem=MEM):
    """Starts a VM from `snap`; returns (vm, qmp). The QMP greeting comes once it is ready."""
    sock = str(tmp_path / f"{name}.sock")
    vm = Vm(stratovirt_cmd(cpus=cpus, mem=mem, qmp=sock,
                           extra=list(extra) + ["-incoming", f"file:{snap}"]))
    try:
        q = RawQmp(sock, timeout=30)
    except Exception:
        vm.kill()
        raise
    assert q.execute("qmp_capabilities")[1] == {"return": {}}
    return vm, q


def wait_migrated(q, timeout=60):
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        _, r = q.execute("query-migrate")
        info = r["return"]
        if not seen or seen[-1] != info["status"]:
            seen.append(info["status"])
        if info["status"] in ("completed", "failed"):
            return info, seen
        assert time.monotonic() < deadline, seen
        time.sleep(0.01)


def snapshot(q, snap):
    events, r = q.execute("migrate", {"uri": f"file:{snap}"})
    assert r == {"return": {}}, r
    info, _ = wait_migrated(q)
    assert info == {"status": "completed"}, info
    return events


def allocated(path):
    return os.stat(path).st_blocks * 512


def test_snapshot_and_restore_carry_on_where_the_vm_stopped(tmp_path):
    snap = tmp_path / "snap"
    vm, q = qmp_vm(tmp_path, "src")
    try:
        assert q.execute("query-migrate")[1] == {"return": {"status": "none"}}
        vm.cmd_ok("mem fill 16 41")
        ticks = int(parse_kv(vm.cmd_ok("ticks"))["ticks"])
        events = snapshot(q, snap)
        # A running VM is paused first (STOP), and stays paused.
        assert [e["event"] for e in events] == ["STOP"]
        assert q.execute("query-status")[1]["return"]["status"] == "paused"
        assert sorted(os.listdir(snap)) == ["memory", "state"]
        assert os.path.getsize(snap / "memory") == int(MEM) << 20
        # Sparse: about the 16 MiB written plus what the kernel touched, not 256 MiB.
        assert allocated(snap / "memory") < 32 << 20, allocated(snap / "memory")
        assert os.stat(snap / "state").st_mode & 0o777 == 0o600
        # The source can go on afterwards.
        q.execute("cont")
        vm.cmd_ok("mem check 16 41")
    finally:
        vm.kill()
    vm2, q2 = restore(tmp_path, "dst", snap)
    try:
        assert q2.execute("query-status")[1]["return"]["status"] == "running"
        assert q2.execute("query-migrate")[1] == {"return": {"status": "completed"}}
        after = int(parse_kv(vm2.cmd_ok("ticks"))["ticks"])
        assert after >= ticks, (ticks, after)
        vm2.cmd_ok("mem check 16 41", timeout=120)
        info = parse_kv(vm2.cmd_ok("info"))
        assert info["cpus"] == "2"
        cpus = q2.execute("query-cpus")[1]["return"]
        assert [c["CPU"] for c in cpus] == [0, 1]
        # The guest runs on: time advances, and it can stop and go again.
        time.sleep(0.3)
        assert int(parse_kv(vm2.cmd_ok("ticks"))["ticks"]) > after
        q2.execute("stop")
        q2.execute("cont")
        vm2.send_line("poweroff")
        assert vm2.wait_exit(30) == 0
    finally:
        vm2.kill()


def disk(tmp_path, name, mib=4):
    p = tmp_path / name
    with open(p, "wb") as f:
        f.truncate(mib << 20)
    return str(p)


def test_disks_boot_and_hot_plugged_work_after_restore(tmp_path):
    snap = tmp_path / "snap"
    root, extra_disk = disk(tmp_path, "root.img"), disk(tmp_path, "hp.img")
    drives = ["-drive", f"id=rootfs,file={root},direct=off"]
    vm, q = qmp_vm(tmp_path, "src", extra=drives)
    try:
        vm.cmd_ok("blk write vda 0 8 5")
        r = q.execute("blockdev-add", {"node-name": "drive-1", "file": {"driver": "file",
                      "filename": extra_disk}, "cache": {"direct": False}, "read-only": False})[1]
        assert r == {"return": {}}
        assert q.execute("device_add", {"id": "drive-1", "driver": "virtio-blk-mmio",
                                        "addr": "0x1"})[1] == {"return": {}}
        vm.cmd_ok("blk write vdb 0 8 6")
        crc0 = parse_kv(vm.cmd_ok("blk read vda 0 8"))["crc32"]
        crc1 = parse_kv(vm.cmd_ok("blk read vdb 0 8"))["crc32"]
        snapshot(q, snap)
    finally:
        vm.kill()
    # Without the hot-plugged disk on the command line the restore is refused, naming it.
    r = subprocess.run(stratovirt_cmd(cpus=2, mem=MEM, extra=drives + ["-incoming", f"file:{snap}"]),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "drive-1" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    vm2, q2 = restore(tmp_path, "dst", snap,
                      extra=drives + ["-drive", f"id=drive-1,file={extra_disk},direct=off"])
    try:
        assert parse_kv(vm2.cmd_ok("blk read vda 0 8"))["crc32"] == crc0
        assert parse_kv(vm2.cmd_ok("blk read vdb 0 8"))["crc32"] == crc1
        vm2.cmd_ok("blk write vdb 8 8 9")
        vm2.cmd_ok("blk flush vdb")
        # Hot-plug still works after a restore: the disk leaves, and comes back.
        assert q2.execute("device_del", {"id": "drive-1"})[1] == {"return": {}}
    finally:
        vm2.kill()


def test_twenty_clones_from_one_template_are_independent(tmp_path):
    template = tmp_path / "template"
    vm, q = qmp_vm(tmp_path, "tpl", cpus=1)
    try:
        vm.cmd_ok("mem fill 8 3")
        snapshot(q, template)
    finally:
        vm.kill()
    before = (template / "memory").read_bytes()
    clones = []
    try:
        for i in range(20):
            clones.append(restore(tmp_path, f"clone{i}", template, cpus=1))
        for i, (c, _) in enumerate(clones):
            c.cmd_ok("mem check 8 3", timeout=120)
        # One clone overwrites the pattern; the others and the template keep it.
        clones[0][0].cmd_ok("mem fill 8 99")
        for c, _ in clones[1:4]:
            c.cmd_ok("mem check 8 3", timeout=120)
        clones[0][0].cmd_ok("mem check 8 99")
    finally:
        for c, q in clones:
            c.kill()
    assert (template / "memory").read_bytes() == before


def one_line_failure(argv):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.fixture
def template(tmp_path):
    snap = tmp_path / "snap"
    vm, q = qmp_vm(tmp_path, "src")
    try:
        snapshot(q, snap)
    finally:
        vm.kill()
    return snap


def test_migrate_refusals_change_nothing(tmp_path, template):
    vm, q = qmp_vm(tmp_path, "src2")
    try:
        cases = [
            ({"uri": "file:relative/dir"}, "must be absolute"),
            ({"uri": "tcp:127.0.0.1:4444"}, "only file:"),
            ({"uri": f"file:{template}"}, "already holds a snapshot"),
            ({"uri": f"file:{template}", "speed": 1}, "speed"),
        ]
        for args, needle in cases:
            events, r = q.execute("migrate", args)
            assert "error" in r and needle in r["error"]["desc"], (args, r)
            assert events == []
            assert q.execute("query-status")[1]["return"]["status"] == "running"
        assert q.execute("query-migrate")[1] == {"return": {"status": "none"}}
        assert sorted(os.listdir(template)) == ["memory", "state"]
        assert not os.path.exists(tmp_path / "relative")
    finally:
        vm.kill()


def test_a_full_disk_fails_the_save_and_cleans_up(tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(full)])
    assert mounted.returncode == 0, "mounting a small tmpfs needs root"
    try:
        vm, q = qmp_vm(tmp_path, "src")
        try:
            vm.cmd_ok("mem fill 8 1")
            events, r = q.execute("migrate", {"uri": f"file:{full}/snap"})
            assert r == {"return": {}}
            info, seen = wait_migrated(q)
            assert info["status"] == "failed" and "No space left" in info["error-desc"], info
            assert os.listdir(full / "snap") == []
            # The VM is intact: it continues.
            assert q.execute("cont")[1] == {"return": {}}
            vm.cmd_ok("mem check 8 1")
        finally:
            vm.kill()
    finally:
        subprocess.run(["umount", str(full)])


def test_restore_refuses_a_different_machine(tmp_path, template):
    base = dict(cpus=2, mem=MEM)
    for kw, needle in [(dict(base, mem="512"), "512 MiB"), (dict(base, cpus=1), "vCPUs"),
                       (base, "no disk 'x'")]:
        extra = ["-incoming", f"file:{template}"]
        if needle.startswith("no disk"):
            extra = ["-drive", f"id=x,file={disk(tmp_path, 'x.img')}"] + extra
        line = one_line_failure(stratovirt_cmd(cpus=kw["cpus"], mem=kw["mem"], extra=extra))
        assert "cannot restore the snapshot" in line and needle in line, line
    line = one_line_failure(stratovirt_cmd(extra=["-incoming", f"file:{tmp_path}/nothing"]))
    assert "no snapshot there" in line, line


def corrupt(src, dst, how):
    dst.mkdir()
    for f in ("state", "memory"):
        subprocess.run(["cp", "--sparse=always", str(src / f), str(dst / f)], check=True)
    how(dst)


def flip_state_byte(d):
    data = bytearray((d / "state").read_bytes())
    data[len(data) // 2] ^= 0x01
    (d / "state").write_bytes(bytes(data))


def truncate_memory(d):
    os.truncate(d / "memory", os.path.getsize(d / "memory") - 4096)


def truncate_state(d):
    os.truncate(d / "state", 100)


def other_version(d):
    data = bytearray((d / "state").read_bytes())
    data[8] = 99  # the format version; the checksum no longer matches either
    (d / "state").write_bytes(bytes(data))


@pytest.mark.parametrize("how,needle", [
    (flip_state_byte, "checksum"),
    (truncate_memory, "truncated"),
    (truncate_state, "truncated"),
    (other_version, "checksum"),
])
def test_corrupt_snapshots_are_refused(tmp_path, template, how, needle):
    bad = tmp_path / "bad"
    corrupt(template, bad, how)
    line = one_line_failure(stratovirt_cmd(cpus=2, mem=MEM, extra=["-incoming", f"file:{bad}"]))
    assert needle in line, line


def test_kill_during_a_save_never_leaves_a_loadable_looking_snapshot(tmp_path):
    """The files appear under their names only once complete: whenever the VMM dies, the
    directory holds either a whole snapshot or none."""
    outcomes = set()
    # Early kills land mid-save; the last one after the save has finished.
    delays = [0, 0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.08, 0.12, 0.2, 10.0]
    for attempt, delay in enumerate(delays):
        if delay == delays[-1]:
            # The last one waits for the save to complete before the kill.
            delay = None
        snap = tmp_path / f"kill{attempt}"
        vm, q = qmp_vm(tmp_path, f"k{attempt}", mem="1024")
        try:
            vm.cmd_ok("mem fill 32 2")
            if delay is None:
                snapshot(q, snap)
            else:
                q.send({"execute": "migrate", "arguments": {"uri": f"file:{snap}"}})
                time.sleep(delay)
            vm.proc.send_signal(signal.SIGKILL)
            vm.wait_exit(10)
        finally:
            vm.kill()
        names = sorted(os.listdir(snap)) if snap.exists() else []
        if "state" in names:
            outcomes.add("complete")
            vm2, q2 = restore(tmp_path, f"r{attempt}", snap, mem="1024")
            try:
                vm2.cmd_ok("mem check 32 2", timeout=120)
            finally:
                vm2.kill()
        else:
            assert "memory" not in names, names
            outcomes.add("partial" if names else "none")
    assert "complete" in outcomes and "partial" in outcomes, outcomes


def test_qmp_answers_while_a_large_snapshot_is_written(tmp_path):
    sock = str(tmp_path / "big.sock")
    vm, _ = boot(stratovirt_cmd(cpus=1, mem="2048", qmp=sock))
    try:
        q = RawQmp(sock)
        q.execute("qmp_capabilities")
        vm.cmd_ok("mem fill 768 8", timeout=120)
        _, r = q.execute("migrate", {"uri": f"file:{tmp_path}/big"})
        assert r == {"return": {}}
        other = RawQmp(sock)
        other.execute("qmp_capabilities")
        seen, slowest = [], 0.0
        while True:
            t0 = time.monotonic()
            status = other.execute("query-status")[1]["return"]["status"]
            slowest = max(slowest, time.monotonic() - t0)
            assert status == "paused"
            info = q.execute("query-migrate")[1]["return"]
            if not seen or seen[-1] != info["status"]:
                seen.append(info["status"])
            if info["status"] in ("completed", "failed"):
                break
            r = q.execute("cont")[1]
            if "return" in r:
                # The save finished between query-migrate and cont: then cont may run the VM.
                assert q.execute("query-migrate")[1]["return"]["status"] == "completed"
                seen.append("completed")
                break
            assert r["error"]["desc"].startswith("cannot resume"), r
        assert seen == ["active", "completed"], seen
        # Answers came while the save ran, not after it.
        assert slowest < 0.5, slowest
        assert allocated(tmp_path / "big" / "memory") >= 768 << 20
    finally:
        vm.kill()
