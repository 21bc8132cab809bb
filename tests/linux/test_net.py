"""NICs on real Linux: an L2 guest's eth0 on a TAP in L1 (the host end, 169.254.100.1/24;
the guest 169.254.100.2/24; link-local, and nothing leaves L1), with the user-space data path
and with vhost-net (`vhost=on`, through L1's /dev/vhost-net).

Each mode: ping both ways; the command line's MAC is the guest's; the guest's offloads
(checksum, TSO) are on, and so are the TAP's that follow them; a TCP transfer each way arrives
with a matching checksum (100 MiB each way by default; STRATOVIRT_NET_BYTES sets the size, see
tests/linux/README.md); the seeds' hot-plug transcript with traffic before, during and after;
ten more add/del cycles leave the VMM's descriptors and threads as they were. A snapshot of a
guest with a NIC restores with its eth0 working; one on vhost-net is refused and runs on."""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from nested import L1_WORK, L2, stratovirt_argv
from svm import RawQmp

MAC = "0e:90:df:9f:a8:88"
HOST_IP = "169.254.100.1"
GUEST_IP = "169.254.100.2"
# 100 MiB each way unless the environment says otherwise (README: CI's size and timing).
BYTES = int(os.environ.get("STRATOVIRT_NET_BYTES", str(100 << 20)))
MODES = ["user", "vhost"]


@pytest.fixture
def tap(l1):
    """TAP tap0 in L1 with the host end's address; removed at the end."""
    l1.sh("tunctl -d tap0 >/dev/null 2>&1; tunctl -t tap0 >/dev/null && "
          f"ip link set tap0 up && ip addr add {HOST_IP}/24 dev tap0")
    yield "tap0"
    l1.exec("tunctl -d tap0 >/dev/null 2>&1", check=False)


def netdev(mode: str, tap: str = "tap0", nid: str = "net0") -> str:
    return f"tap,id={nid},ifname={tap}" + (",vhost=on" if mode == "vhost" else "")


def guest_up(vm, dev="eth0", ip=GUEST_IP):
    vm.sh(f"ip link set {dev} up && ip addr add {ip}/24 dev {dev}")


def carrier(vm, dev="eth0") -> str:
    return vm.out(f"cat /sys/class/net/{dev}/carrier 2>&1 || true")


def wait_carrier(vm, want: str, dev="eth0", timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        got = carrier(vm, dev)
        if got == want:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{dev} carrier {got!r}, want {want!r}")
        time.sleep(0.2)


def ping(where, target: str, count: int = 3) -> bool:
    cmd = f"ping -c {count} -W 10 {target} >/dev/null 2>&1"
    if isinstance(where, L2):
        return where.sh(cmd, timeout=120, check=False)[0] == 0
    return where.exec(cmd, timeout=120, check=False)["rc"] == 0


def features(out: str) -> dict:
    return dict(line.rsplit(" ", 1) for line in out.strip().splitlines() if " " in line)


def transfer(l1, vm, size: int, port: int, guest_sends: bool) -> dict:
    """A TCP transfer of `size` bytes; returns both ends' lines as dicts."""
    timeout = max(300, size // (64 << 10))
    if guest_sends:
        l1.sh(f"rm -f /tmp/xfer.out; (netxfer recv {port} > /tmp/xfer.out 2>&1 &)")
        sent = vm.out(f"netxfer send {HOST_IP} {port} {size} 1", timeout=timeout)
        deadline = time.monotonic() + 60
        got = ""
        while "recv" not in got and time.monotonic() < deadline:
            got = l1.sh("cat /tmp/xfer.out")
            time.sleep(0.2)
    else:
        vm.sh(f"rm -f /tmp/xfer.out; (netxfer recv {port} > /tmp/xfer.out 2>&1 &)")
        sent = l1.sh(f"netxfer send {GUEST_IP} {port} {size} 2", timeout=timeout).strip()
        deadline = time.monotonic() + 60
        got = ""
        while "recv" not in got and time.monotonic() < deadline:
            got = vm.out("cat /tmp/xfer.out")
            time.sleep(0.2)
    parse = lambda line: dict(re.findall(r"(\w+)=(\S+)", line)) | {  # noqa: E731
        "bytes": line.split()[1] if len(line.split()) > 1 else ""}
    return {"sent": parse(sent), "recv": parse(got.strip())}


def thread_cpu_ticks(l1, pid, name: str) -> int:
    """utime + stime (clock ticks) of the VMM's thread called `name`."""
    out = l1.sh(f"for t in /proc/{pid}/task/*; do if [ \"$(cat $t/comm)\" = {name} ]; then "
                f"cat $t/stat; fi; done")
    fields = out.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def vmm_fds_threads(l1, pid):
    out = l1.sh(f"ls /proc/{pid}/fd | wc -l; ls /proc/{pid}/task | wc -l").split()
    return int(out[0]), int(out[1])


@pytest.mark.parametrize("mode", MODES)
def test_ping_mac_offloads_and_tcp_both_ways(l1, vms, tap, mode):
    vm = vms.boot(f"net-{mode}", stratovirt_argv(
        mem="512M", extra=["-netdev", netdev(mode),
                           "-device", f"virtio-net-device,netdev=net0,mac={MAC}"]))
    assert vm.out("cat /sys/class/net/eth0/address") == MAC
    guest_up(vm)
    wait_carrier(vm, "1")
    assert ping(vm, HOST_IP), "guest -> host"
    assert ping(l1, GUEST_IP), "host -> guest"
    # The guest's offloads: checksums and TSO handed to the device; and the TAP's, which follow
    # what the guest takes (checksums and large segments towards it).
    g = features(vm.out("netfeatures eth0"))
    for f in ("tx-checksum-ip-generic", "tx-scatter-gather", "tx-tcp-segmentation",
              "tx-tcp6-segmentation", "tx-tcp-ecn-segmentation", "rx-checksum"):
        assert g.get(f) == "on", (f, g)
    t = features(l1.sh("netfeatures tap0"))
    for f in ("tx-checksum-ip-generic", "tx-tcp-segmentation", "tx-tcp6-segmentation"):
        assert t.get(f) == "on", (f, t)
    vhost_fds = l1.sh(f"ls -l /proc/{vm.pid}/fd | grep -c /dev/vhost-net || true").strip()
    assert vhost_fds == ("1" if mode == "vhost" else "0"), vhost_fds
    results = {}
    cpu_before = thread_cpu_ticks(l1, vm.pid, "net0")
    for guest_sends, port in ((True, 5001), (False, 5002)):
        r = transfer(l1, vm, BYTES, port, guest_sends)
        assert r["sent"]["bytes"] == r["recv"]["bytes"] == str(BYTES), r
        assert r["sent"]["sum"] == r["recv"]["sum"], r
        results["guest->host" if guest_sends else "host->guest"] = r
    net_cpu = thread_cpu_ticks(l1, vm.pid, "net0") - cpu_before
    wall_ticks = sum(int(r["recv"]["ms"]) for r in results.values()) // 10
    if mode == "vhost":
        # The frames went through the host kernel: the NIC's own thread did (next to) nothing.
        assert net_cpu * 20 < wall_ticks, (net_cpu, wall_ticks)
    for way, r in results.items():
        ms = int(r["recv"]["ms"]) or 1
        print(f"{mode} {way}: {BYTES} bytes in {ms} ms = {BYTES * 8 / ms / 1000:.1f} Mbit/s"
              f" (net0 thread: {net_cpu} ticks over both)")
    assert ping(vm, HOST_IP), "still up after the transfers"


@pytest.mark.parametrize("mode", MODES)
def test_hotplug_as_the_seeds_show_it_with_traffic(l1, vms, tap, mode):
    sock = f"/run/vms/hp-net-{mode}/qmp.sock"
    vm = vms.boot(f"hp-net-{mode}", stratovirt_argv(qmp=sock), qmp=sock)
    q = RawQmp(vm.qmp_path, timeout=60)
    # Both NIC slots from boot, empty: eth0 and eth1 exist, without a carrier.
    assert vm.out("ls /sys/class/net | grep eth | tr '\\n' ' '").split() == ["eth0", "eth1"]
    guest_up(vm)
    assert carrier(vm) == "0"
    mac = vm.out("cat /sys/class/net/eth0/address")
    complaints = "dmesg | grep -cE 'BUG|Oops|WARNING|error' || true"
    at_boot = vm.out(complaints)
    add = {"id": "net-0", "ifname": "tap0"}
    if mode == "vhost":
        add["vhost"] = True

    def plug():
        q.send('{"execute":"netdev_add", "arguments":' + json.dumps(add) + "}")
        assert q.recv() == {"return": {}}
        q.send('{"execute":"device_add", "arguments":{"id":"net-0", "driver":"virtio-net-mmio", '
               '"addr":"0x0"}}')
        assert q.recv() == {"return": {}}
        wait_carrier(vm, "1")

    def unplug():
        q.send('{"execute": "device_del", "arguments": {"id": "net-0"}}')
        ev = q.recv()
        assert (ev["event"], ev["data"]) == ("DEVICE_DELETED",
                                             {"device": "net-0", "path": "net-0"}), ev
        assert q.recv() == {"return": {}}
        wait_carrier(vm, "0")

    plug()
    assert vm.out("cat /sys/class/net/eth0/address") == mac, "the MAC read at boot stays"
    assert ping(vm, HOST_IP) and ping(l1, GUEST_IP)
    r = transfer(l1, vm, 4 << 20, 5003, guest_sends=True)
    assert r["sent"]["sum"] == r["recv"]["sum"], r
    unplug()
    assert not ping(vm, HOST_IP, count=1), "no link, no traffic"
    before = vmm_fds_threads(l1, vm.pid)
    for i in range(10):
        plug()
        assert ping(vm, HOST_IP, count=1), f"cycle {i}"
        unplug()
    assert vmm_fds_threads(l1, vm.pid) == before
    assert vm.out("echo healthy") == "healthy"
    assert vm.out(complaints) == at_boot, vm.out("dmesg | tail -20")
    q.close()


def migrate(vm, snap):
    """QMP migrate to `snap`; returns the reply, and the final query-migrate when it started."""
    q = RawQmp(vm.qmp_path, timeout=60)
    q.execute("qmp_capabilities")
    _, r = q.execute("migrate", {"uri": f"file:{snap}"})
    info = None
    if r == {"return": {}}:
        deadline = time.monotonic() + 300
        while True:
            info = q.execute("query-migrate")[1]["return"]
            if info["status"] in ("completed", "failed"):
                break
            assert time.monotonic() < deadline, info
            time.sleep(0.1)
    status = q.execute("query-status")[1]["return"]["status"]
    q.close()
    return r, info, status


def test_a_restored_linux_keeps_its_nic(l1, vms, tap):
    extra = ["-netdev", netdev("user"), "-device", f"virtio-net-device,netdev=net0,mac={MAC}"]
    qmp = "/run/vms/net-snap-src/qmp.sock"
    src = vms.boot("net-snap-src", stratovirt_argv(mem="512M", qmp=qmp, extra=extra), qmp=qmp)
    guest_up(src)
    wait_carrier(src, "1")
    assert ping(src, HOST_IP)
    r = transfer(l1, src, 8 << 20, 5011, guest_sends=True)
    assert r["sent"]["sum"] == r["recv"]["sum"], r
    complaints = "dmesg | grep -E 'BUG|Oops|WARNING|error' || true"
    at_snapshot = src.out(complaints)
    snap = f"{L1_WORK}/net-snap/template"
    l1.sh(f"rm -rf {L1_WORK}/net-snap && mkdir -p {L1_WORK}/net-snap")
    assert migrate(src, snap) == ({"return": {}}, {"status": "completed"}, "paused")
    src.kill()
    qmp2 = "/run/vms/net-snap-dst/qmp.sock"
    dst = vms.start("net-snap-dst", stratovirt_argv(
        mem="512M", qmp=qmp2, extra=extra + ["-incoming", f"file:{snap}"]), qmp=qmp2)
    # The guest's eth0 goes on as it was: address, MAC, carrier, and traffic both ways.
    assert dst.out("cat /sys/class/net/eth0/address") == MAC
    assert carrier(dst) == "1"
    assert ping(dst, HOST_IP) and ping(l1, GUEST_IP)
    for guest_sends, port in ((True, 5012), (False, 5013)):
        r = transfer(l1, dst, 8 << 20, port, guest_sends)
        assert r["sent"]["bytes"] == r["recv"]["bytes"] == str(8 << 20), r
        assert r["sent"]["sum"] == r["recv"]["sum"], r
    # Nothing new in the kernel log since before the snapshot (L1's CPU gives a boot warning).
    assert dst.out(complaints) == at_snapshot, dst.out("dmesg | tail -20")


def test_a_linux_on_vhost_net_refuses_a_snapshot_and_runs_on(l1, vms, tap):
    qmp = "/run/vms/net-snap-vhost/qmp.sock"
    vm = vms.boot("net-snap-vhost", stratovirt_argv(
        mem="512M", qmp=qmp, extra=["-netdev", netdev("vhost"),
                                    "-device", "virtio-net-device,netdev=net0"]), qmp=qmp)
    guest_up(vm)
    wait_carrier(vm, "1")
    l1.sh(f"rm -rf {L1_WORK}/net-snap-vhost && mkdir -p {L1_WORK}/net-snap-vhost")
    r, info, status = migrate(vm, f"{L1_WORK}/net-snap-vhost/template")
    assert r == {"error": {"class": "GenericError",
                           "desc": "a VM with vhost-net (eth0) cannot be snapshotted"}}, r
    # Refused before anything paused or was written.
    assert (info, status) == (None, "running")
    assert l1.sh(f"ls -A {L1_WORK}/net-snap-vhost").strip() == ""
    assert ping(vm, HOST_IP) and ping(l1, GUEST_IP)
