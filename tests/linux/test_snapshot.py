"""Snapshots of a real Linux guest: a counter running on its console continues after a restore,
its root disk stays writable, and several clones of one template run at once."""

from __future__ import annotations

import re
import time

from nested import L1_WORK, stratovirt_argv
from svm import RawQmp
from test_boot import ROOT_APPEND, copy_rootfs

COUNTER = "(i=0; while :; do i=$((i+1)); echo COUNT-$i; sleep 0.3; done) & CPID=$!"


def out(vm, cmd):
    """A command's output without the counter's lines, which share the console."""
    text = vm.sh(cmd)[1]
    return "\n".join(l for l in text.splitlines() if not l.startswith("COUNT-")).strip()


def stop_counter(vm):
    vm.sh("kill $CPID; wait $CPID 2>/dev/null; true")


def last_count(vm, after=0):
    counts = [int(c) for c in re.findall(r"^COUNT-(\d+)$", vm.console.text[after:], re.M)]
    return counts[-1] if counts else None


def wait_count(vm, above, after=0, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        c = last_count(vm, after)
        if c is not None and c > above:
            return c
        assert time.monotonic() < deadline, f"no COUNT above {above}\n{vm.console.text[-1500:]}"
        time.sleep(0.2)


def snapshot(vm, snap, timeout=120):
    q = RawQmp(vm.qmp_path, timeout=60)
    q.execute("qmp_capabilities")
    events, r = q.execute("migrate", {"uri": f"file:{snap}"})
    assert r == {"return": {}}, r
    deadline = time.monotonic() + timeout
    while True:
        info = q.execute("query-migrate")[1]["return"]
        if info["status"] in ("completed", "failed"):
            break
        assert time.monotonic() < deadline, info
        time.sleep(0.1)
    q.close()
    assert info == {"status": "completed"}, info
    return [e["event"] for e in events]


def test_a_restored_linux_carries_on(l1, vms):
    image = copy_rootfs(l1, f"{L1_WORK}/snap/root.ext4")
    snap = f"{L1_WORK}/snap/template"
    drive = ["-drive", f"id=rootfs,file={image},direct=off",
             "-device", "virtio-blk-device,drive=rootfs"]
    qmp = "/run/vms/snap-src/qmp.sock"
    src = vms.boot("snap-src", stratovirt_argv(append=ROOT_APPEND, initrd=None, qmp=qmp,
                                               smp=2, extra=drive), qmp=qmp)
    src.sh("echo before-snapshot > /before.txt && sync")
    src.send(COUNTER + "\n")
    before = wait_count(src, 3)
    assert snapshot(src, snap) == ["STOP"]
    stopped_at = last_count(src)
    src.kill()
    assert l1.sh(f"ls {snap}").split() == ["memory", "state"]

    qmp2 = "/run/vms/snap-dst/qmp.sock"
    dst = vms.start("snap-dst", stratovirt_argv(append=ROOT_APPEND, initrd=None, qmp=qmp2, smp=2,
                                                extra=drive + ["-incoming", f"file:{snap}"]),
                    qmp=qmp2)
    # The counter goes on from where the snapshot stopped it, it does not start again.
    resumed = wait_count(dst, stopped_at)
    first = int(re.search(r"^COUNT-(\d+)$", dst.console.text, re.M).group(1))
    assert stopped_at <= first <= stopped_at + 2 and resumed > before, (stopped_at, first, resumed)
    q = RawQmp(dst.qmp_path, timeout=60)
    q.execute("qmp_capabilities")
    assert q.execute("query-status")[1]["return"]["status"] == "running"
    assert q.execute("query-migrate")[1]["return"] == {"status": "completed"}
    q.close()
    # The disk is the same and stays writable; the shell answers.
    stop_counter(dst)
    assert out(dst, "cat /before.txt") == "before-snapshot"
    dst.sh("echo after-restore > /after.txt && sync")
    assert out(dst, "grep -c ^processor /proc/cpuinfo") == "2"
    dst.send("reboot -f\n")
    assert dst.wait_exit(60)["rc"] == 0
    assert l1.sh(f"debugfs -R 'cat /after.txt' {image} 2>/dev/null").strip() == "after-restore"


def test_clones_of_one_linux_template_run_at_once(l1, vms):
    snap = f"{L1_WORK}/clones/template"
    l1.sh(f"rm -rf {L1_WORK}/clones && mkdir -p {L1_WORK}/clones")
    qmp = "/run/vms/tpl/qmp.sock"
    tpl = vms.boot("tpl", stratovirt_argv(qmp=qmp), qmp=qmp)
    tpl.sh("echo template > /tmp/who")
    tpl.send(COUNTER + "\n")
    wait_count(tpl, 2)
    snapshot(tpl, snap)
    tpl.kill()
    clones = []
    for i in range(3):
        q = f"/run/vms/clone{i}/qmp.sock"
        clones.append(vms.start(f"clone{i}", stratovirt_argv(qmp=q, extra=["-incoming", f"file:{snap}"]),
                                qmp=q))
    for c in clones:
        wait_count(c, 2)
    # Each clone's memory is its own: a write in one is not seen by another.
    for i, c in enumerate(clones):
        stop_counter(c)
        assert out(c, "cat /tmp/who") == "template"
        c.sh(f"echo clone-{i} > /tmp/who")
    for i, c in enumerate(clones):
        assert out(c, "cat /tmp/who") == f"clone-{i}"
