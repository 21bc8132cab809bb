"""QMP against a real Linux guest: stop/cont really pause it, query-cpus names its vCPU threads,
and disk hot-plug follows the seeds' transcript, as the guest sees it."""

from __future__ import annotations

import time

import pytest

from nested import L1_WORK, NestedError, stratovirt_argv
from svm import RawQmp
from test_boot import ROOT_APPEND, copy_rootfs


def qmp_vm(vms, l1, name, **kw):
    sock = f"/run/vms/{name}/qmp.sock"
    vm = vms.boot(name, stratovirt_argv(qmp=sock, **kw), qmp=sock)
    q = RawQmp(vm.qmp_path, timeout=30)
    assert q.execute("qmp_capabilities")[1] == {"return": {}}
    return vm, q


def test_stop_and_cont_pause_a_real_guest(l1, vms):
    vm, q = qmp_vm(vms, l1, "pause", smp=2)
    assert vm.sh("true")[0] == 0
    events, r = q.execute("stop")
    assert r == {"return": {}} and [e["event"] for e in events] == ["STOP"]
    assert q.execute("query-status")[1]["return"] == {
        "running": False, "singlestep": False, "status": "paused"}
    # A paused guest runs nothing: the shell does not answer.
    start = vm.console.mark()
    vm.send("echo still-alive\n")
    with pytest.raises(NestedError):
        vm.console.wait_for(r"^still-alive$", 3, start=start)
    events, r = q.execute("cont")
    assert r == {"return": {}} and [e["event"] for e in events] == ["RESUME"]
    vm.console.wait_for(r"^still-alive$", 30, start=start)
    assert q.execute("query-status")[1]["return"]["status"] == "running"
    q.close()


def test_query_cpus_gives_the_vcpu_threads(l1, vms):
    vm, q = qmp_vm(vms, l1, "cpus", smp=2)
    cpus = q.execute("query-cpus")[1]["return"]
    assert [c["CPU"] for c in cpus] == [0, 1]
    for c in cpus:
        comm = l1.sh(f"cat /proc/{vm.pid}/task/{c['thread_id']}/comm").strip()
        assert comm == f"vcpu{c['CPU']}", (c, comm)
    q.close()


def blk_size(vm, dev):
    rc, out = vm.sh(f"cat /sys/block/{dev}/size", check=False)
    return int(out.strip()) if rc == 0 else None


def wait_size(vm, dev, want, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        got = blk_size(vm, dev)
        if got == want:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"/dev/{dev}: {got} sectors, want {want}")
        time.sleep(0.2)


def plug(q, image, node="drive-0", addr="0x1"):
    """The seeds' transcript: blockdev-add, then device_add."""
    r = q.execute("blockdev-add", {"node-name": node, "file": {"driver": "file", "filename": image},
                                   "cache": {"direct": True}, "read-only": False})[1]
    assert r == {"return": {}}, r
    r = q.execute("device_add", {"id": node, "driver": "virtio-blk-mmio", "addr": addr})[1]
    assert r == {"return": {}}, r


def unplug(q, node="drive-0"):
    events, r = q.execute("device_del", {"id": node})
    assert r == {"return": {}}, r
    assert [(e["event"], e["data"]) for e in events] == [
        ("DEVICE_DELETED", {"device": node, "path": node})], events


def vmm_fds_threads(l1, pid):
    out = l1.sh(f"ls /proc/{pid}/fd | wc -l; ls /proc/{pid}/task | wc -l").split()
    return int(out[0]), int(out[1])


def test_disk_hotplug_as_the_seeds_show_it(l1, vms):
    root = copy_rootfs(l1, f"{L1_WORK}/hp/root.ext4")
    image = f"{L1_WORK}/hp/data.img"
    l1.sh(f"dd if=/dev/zero of={image} bs=1M count=24 2>/dev/null")
    vm, q = qmp_vm(vms, l1, "hotplug", append=ROOT_APPEND, initrd=None,
                   extra=["-drive", f"id=rootfs,file={root}", "-device",
                          "virtio-blk-device,drive=rootfs"])
    # Kernel complaints before any hot-plug (nested TCG gives every L2, under QEMU too, an XSAVE
    # size warning at boot); the hot-plugs must add none.
    complaints = "dmesg | grep -cE 'BUG|Oops|WARNING|error' || true"
    at_boot = vm.out(complaints)
    # Slot 1 is empty: the guest sees a zero-sized vdb.
    assert blk_size(vm, "vdb") == 0
    plug(q, image)
    wait_size(vm, "vdb", 24 * 2048)
    vm.sh("dd if=/dev/urandom of=/tmp/blob bs=64k count=8 2>/dev/null && "
          "dd if=/tmp/blob of=/dev/vdb bs=64k oflag=direct 2>/dev/null && sync")
    want = vm.out("md5sum < /tmp/blob").split()[0]
    got = vm.out("dd if=/dev/vdb bs=64k count=8 iflag=direct 2>/dev/null | md5sum").split()[0]
    assert got == want
    # And the image on the host side holds what the guest wrote.
    assert l1.sh(f"head -c 524288 {image} | md5sum").split()[0] == want
    unplug(q)
    wait_size(vm, "vdb", 0)
    rc, out = vm.sh("dd if=/dev/vdb bs=4k count=1 iflag=direct 2>&1 >/dev/null", check=False)
    assert "0+0 records in" in out or rc != 0, out

    # Ten more cycles leave the guest and the VMM as they were.
    before = vmm_fds_threads(l1, vm.pid)
    for i in range(10):
        plug(q, image)
        wait_size(vm, "vdb", 24 * 2048)
        assert vm.out("dd if=/dev/vdb bs=64k count=8 iflag=direct 2>/dev/null | md5sum").split()[0] == want
        unplug(q)
        wait_size(vm, "vdb", 0)
    assert vmm_fds_threads(l1, vm.pid) == before
    assert vm.out("echo healthy") == "healthy"
    assert q.execute("query-status")[1]["return"]["status"] == "running"
    assert vm.out(complaints) == at_boot, vm.out("dmesg | tail -20")
    q.close()
