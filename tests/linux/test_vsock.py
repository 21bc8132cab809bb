"""virtio-vsock with real Linux: an L2 guest's AF_VSOCK sockets and programs in L1, through
vhost-vsock (L1's /dev/vhost-vsock, the seeds' device) and through the userspace backend
(`uds-path=`: a Unix socket in L1 with Firecracker's `CONNECT <port>` handshake, guest
connections to `<path>_<port>`). `tools/vsockxfer.c` is both ends.

Each backend: a host (L1) program reaches a listener in the guest, and a guest program one in
L1 (CID 2); 10 MiB echo intact both ways (STRATOVIRT_VSOCK_BYTES changes it); 100 sequential
connections leave the VMM's descriptors as they were. vhost-vsock: a second VM with the same
CID is refused with the reason; the seeds' JSON example (004) boots with its `vsock` entry; a
snapshot is refused with the reason and the VM runs on. Userspace: after a snapshot restore
the guest's listener (whose connections the transport reset ended) accepts new connections."""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from nested import L1_L2DIR, L1_WORK, L2_APPEND, stratovirt_argv
from svm import RawQmp
from test_net import vmm_fds_threads

BYTES = int(os.environ.get("STRATOVIRT_VSOCK_BYTES", str(10 << 20)))
CID = 3
UDS = "/run/vsock/v.sock"
SENT = re.compile(r"sent (\d+) sum=(\w+) echoed=(\d+) esum=(\w+) ms=(\d+)")


def device(mode: str, cid: int = CID, uds: str = UDS) -> list[str]:
    dev = f"vhost-vsock-device,id=vsock0,guest-cid={cid}"
    return ["-device", dev + (f",uds-path={uds}" if mode == "user" else "")]


@pytest.fixture
def uds_dir(l1):
    l1.sh("rm -rf /run/vsock && mkdir -p /run/vsock")
    yield "/run/vsock"
    l1.exec("rm -rf /run/vsock", check=False)


def boot(vms, name, mode, qmp=None, cid=CID, uds=UDS):
    return vms.boot(name, stratovirt_argv(mem="256M", qmp=qmp, extra=device(mode, cid, uds)), qmp=qmp)


def echoed(line: str, size: int) -> dict:
    m = SENT.search(line)
    assert m, line
    sent, s, back, es, ms = m.groups()
    assert int(sent) == int(back) == size and s == es, line
    return {"bytes": size, "ms": int(ms)}


def host_to_guest(l1, vm, mode, port, size=BYTES, uds=UDS):
    """A program in L1 sends `size` bytes to a guest listener and checks the echo."""
    vm.sh(f"(vsockxfer listen {port} 1 > /tmp/l{port}.out 2>&1 &)")
    timeout = max(300, size // (32 << 10))
    if mode == "vhost":
        line = l1.sh(f"vsockxfer send {CID} {port} {size} 7", timeout=timeout)
    else:
        line = l1.sh(f"vsockxfer usend {uds} {port} {size} 7", timeout=timeout)
    return echoed(line, size)


def guest_to_host(l1, vm, mode, port, size=BYTES, uds=UDS):
    """A program in the guest sends `size` bytes to a listener in L1 (CID 2) and checks the
    echo."""
    where = f"listen {port}" if mode == "vhost" else f"ulisten {uds}_{port}"
    l1.sh(f"rm -f /tmp/h{port}.out; (vsockxfer {where} 1 > /tmp/h{port}.out 2>&1 &)")
    time.sleep(0.5)
    timeout = max(300, size // (32 << 10))
    line = vm.out(f"vsockxfer send 2 {port} {size} 9", timeout=timeout)
    return echoed(line, size)


@pytest.mark.parametrize("mode", ["vhost", "user"])
def test_transfers_both_ways_and_connections_leave_nothing(l1, vms, uds_dir, mode):
    vm = boot(vms, f"vsock-{mode}", mode)
    assert vm.out("ls /dev/vsock") == "/dev/vsock"
    if mode == "vhost":
        assert l1.sh(f"ls -l /proc/{vm.pid}/fd | grep -c /dev/vhost-vsock").strip() == "1"
    else:
        assert l1.sh(f"stat -c %a {UDS}").strip() == "600"
    host_to_guest(l1, vm, mode, 5000)
    guest_to_host(l1, vm, mode, 5001)
    # 100 sequential connections, host to guest: the VMM's descriptors are as before.
    vm.sh("(vsockxfer listen 5002 101 > /tmp/l5002.out 2>&1 &)")
    opener = f"conns {CID} 5002" if mode == "vhost" else f"uconns {UDS} 5002"
    assert l1.sh(f"vsockxfer {opener} 1", timeout=120).startswith("conns 1 ")
    time.sleep(0.5)
    before = vmm_fds_threads(l1, vm.pid)
    out = l1.sh(f"vsockxfer {opener} 100", timeout=600)
    assert out.startswith("conns 100 "), out
    time.sleep(1)
    assert vmm_fds_threads(l1, vm.pid) == before
    assert "accepted 101" in vm.out("cat /tmp/l5002.out")


def test_a_cid_in_use_is_refused(l1, vms, uds_dir):
    boot(vms, "vsock-first", "vhost")
    r = l1.exec(" ".join(stratovirt_argv(extra=device("vhost"))) + " </dev/null", timeout=60, check=False)
    assert r["rc"] == 1, r
    assert r["err"].strip() == ("stratovirt: vsock vsock0: vhost-vsock: guest-cid 3 is already used "
                                "by another VM on this host"), r["err"]
    # Another CID is fine: both guests reach L1.
    vm2 = boot(vms, "vsock-second", "vhost", cid=4)
    guest_to_host(l1, vm2, "vhost", 5100, size=1 << 20)


def test_the_seeds_json_example_boots_with_its_vsock(l1, vms, uds_dir):
    cfg = {
        "boot-source": {"kernel_image_path": f"{L1_L2DIR}/vmlinux", "boot_args": L2_APPEND,
                        "initrd_fs_path": f"{L1_L2DIR}/initramfs.cpio.gz"},
        "machine-config": {"name": "abc", "vcpu_count": 1, "mem_size": 268435456},
        "serial": {"stdio": True},
        "vsock": {"vsock_id": "vsock-123321132", "guest_cid": 4},
    }
    l1.exec(f"cat > {L1_WORK}/vsock.json", stdin=json.dumps(cfg))
    vm = vms.boot("vsock-json", ["/usr/bin/stratovirt", "-config", f"{L1_WORK}/vsock.json"])
    l1.sh("(vsockxfer listen 5200 1 > /tmp/h5200.out 2>&1 &)")
    time.sleep(0.5)
    echoed(vm.out("vsockxfer send 2 5200 65536 3", timeout=300), 65536)
    # L1 reaches the guest at CID 4.
    vm.sh("(vsockxfer listen 5201 1 > /tmp/l5201.out 2>&1 &)")
    echoed(l1.sh("vsockxfer send 4 5201 65536 4", timeout=300), 65536)


def snapshot(vm, snap, timeout=120):
    q = RawQmp(vm.qmp_path, timeout=60)
    q.execute("qmp_capabilities")
    events, r = q.execute("migrate", {"uri": f"file:{snap}"})
    if "error" in r:
        q.close()
        return r
    deadline = time.monotonic() + timeout
    while True:
        info = q.execute("query-migrate")[1]["return"]
        if info["status"] in ("completed", "failed"):
            break
        assert time.monotonic() < deadline, info
        time.sleep(0.1)
    q.close()
    return info


def test_vhost_vsock_refuses_a_snapshot_and_runs_on(l1, vms, uds_dir):
    qmp = "/run/vms/vsock-snapv/qmp.sock"
    vm = boot(vms, "vsock-snapv", "vhost", qmp=qmp)
    r = snapshot(vm, f"{L1_WORK}/vsock-snapv")
    assert "error" in r and "vhost-vsock" in r["error"]["desc"], r
    guest_to_host(l1, vm, "vhost", 5300, size=1 << 20)


def test_a_restored_guest_listener_accepts_new_connections(l1, vms, uds_dir):
    snap = f"{L1_WORK}/vsock-snap"
    l1.sh(f"rm -rf {snap}")
    qmp = "/run/vms/vsock-src/qmp.sock"
    src = boot(vms, "vsock-src", "user", qmp=qmp)
    # One listener for two connections: one before the snapshot, one after the restore.
    src.sh("(vsockxfer listen 5400 2 > /tmp/l5400.out 2>&1 &)")
    echoed(l1.sh(f"vsockxfer usend {UDS} 5400 100000 5", timeout=300), 100000)
    assert snapshot(src, snap) == {"status": "completed"}
    src.kill()
    uds2 = "/run/vsock/restored.sock"
    qmp2 = "/run/vms/vsock-dst/qmp.sock"
    dst = vms.start("vsock-dst", stratovirt_argv(mem="256M", qmp=qmp2, extra=device("user", uds=uds2)
                                                 + ["-incoming", f"file:{snap}"]), qmp=qmp2)
    # The restored VM's socket exists once its devices are attached.
    l1.sh(f"i=0; while [ ! -S {uds2} ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; test -S {uds2}",
          timeout=60)
    echoed(l1.sh(f"vsockxfer usend {uds2} 5400 1000000 6", timeout=300), 1000000)
    assert "accepted 2" in dst.out("cat /tmp/l5400.out")
    # The guest reaches L1 from the restored VM too.
    guest_to_host(l1, dst, "user", 5401, size=1 << 20, uds=uds2)
