"""NICs end to end: stratovirt with virtio-net slots on TAPs in a network namespace each test
creates and removes, driven by the test kernel's `net` shell commands (docs/testkernel.md),
QMP, and AF_PACKET sockets on the TAPs' host side.

Test frames go both ways with their data checked; every configuration form (the seeds' old
and current command lines, JSON, Kata's inherited descriptor) gives the guest its NIC and MAC;
bad input at start is one line on stderr and exit status 1, with nothing left behind; the
seeds' hot-plug transcript replays exactly and traffic follows the link; QEMU's netdev_add with
a descriptor passed by getfd (SCM_RIGHTS) works; ten add/remove cycles leave no descriptor or
thread behind; every QMP misuse is refused and changes nothing; every malformed chain on
either queue is answered alone and the VMM keeps serving.
"""
import array
import json
import os
import re
import socket
import subprocess
import time

import pytest

from harness import Vm, parse_kv
from netns import (BROADCAST, IFF_NO_PI, IFF_TAP, IFF_VNET_HDR, NetNs, Sender,
                   pattern_frame)
from svm import BIN, KERNEL_BIN, READY, RawQmp, wait_path

APPEND = "console=ttyS0 reboot=k panic=1"
MAC = "0e:90:df:9f:a8:88"
BOOT_TIMEOUT = 60


def test_frames_match_the_guest_unit_tests():
    f = pattern_frame(250, 300, 1514)
    assert len(f) == 1514 and f[12:14] == b"\x88\xb5"
    assert f[14:18] == (300).to_bytes(4, "little")
    assert f[18] == (250 + 300) & 0xFF and f[19] == (250 + 300 + 1) & 0xFF


# -- helpers -----------------------------------------------------------------------------------

@pytest.fixture
def ns():
    n = NetNs()
    yield n
    n.close()


def svm_argv(extra=(), qmp=None, append=APPEND, mem=128):
    argv = [BIN, "-kernel", KERNEL_BIN, "-append", append, "-smp", "1", "-m", str(mem),
            "-serial", "stdio"]
    if qmp:
        argv += ["-qmp", f"unix:{qmp},server,nowait"]
    return argv + list(extra)


def boot_in(ns, argv, pass_fds=()):
    vm = Vm(ns.exec_argv(argv), pass_fds=pass_fds)
    try:
        vm.wait_for(READY, BOOT_TIMEOUT)
    except Exception:
        vm.kill()
        raise
    return vm


def nic_args(nid, tap, mac=None):
    dev = f"virtio-net-device,netdev={nid}" + (f",mac={mac}" if mac else "")
    return ["-netdev", f"tap,id={nid},ifname={tap}", "-device", dev]


def net_list(vm):
    out = {}
    for line in vm.cmd_ok("net list"):
        if line.startswith("eth"):
            out[line.split()[0]] = parse_kv(line.split()[1:])
    return out


def wait_nic(vm, dev, key, value, timeout=10):
    end = time.time() + timeout
    while True:
        d = net_list(vm)[dev]
        if d[key] == str(value):
            return d
        if time.time() > end:
            raise AssertionError(f"{dev} never showed {key}={value}: {d}")
        time.sleep(0.05)


def guest_sends(vm, peer, dev, count, length, seed):
    """The guest sends `count` frames; the host side gets all of them, data intact."""
    peer.drain()
    assert vm.cmd_ok(f"net send {dev} {count} {length} {seed}") == [f"sent={count}"]
    got = peer.recv_all(count, 10)
    assert len(got) == count, f"{len(got)} of {count} frames arrived"
    for seq, f in enumerate(got):
        assert f[12:] == pattern_frame(seed, seq, length)[12:], f"frame {seq}"
        assert f[:6] == BROADCAST
    return got


def guest_receives(vm, peer, dev, count, length, seed, gap=0.005):
    """The host sends `count` frames; the guest gets all of them, data checked."""
    start = vm.send_line(f"net recv {dev} {count} 1000 {seed}")
    time.sleep(0.3)
    peer.send_test_frames(seed, count, length, gap=gap)
    m = vm.wait_for(r"^frames=.*$", 30, start=start)
    vm.wait_for(r"^OK\r?$", 10)
    r = parse_kv([m.group(0)])
    assert r["frames"] == str(count) and r["bad"] == "0" and r["lost"] == "0", r
    return r


def open_fds(pid):
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[fd] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            pass
    return out


def threads(pid):
    names = []
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/comm") as f:
                names.append(f.read().strip())
        except FileNotFoundError:
            pass
    return sorted(names)


def same_shape(actual, expected, ignore=("timestamp",)):
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and list(actual) == list(expected), (actual, expected)
        for k in expected:
            if k not in ignore:
                same_shape(actual[k], expected[k], ignore)
    else:
        assert actual == expected, (actual, expected)


# -- boot NICs ---------------------------------------------------------------------------------

def test_cmdline_nic_frames_both_ways_and_an_empty_second_slot(ns, tmp_path):
    ns.add_tap("svtap0")
    peer = ns.packet_socket("svtap0")
    log = tmp_path / "vm.log"
    vm = boot_in(ns, svm_argv(nic_args("net0", "svtap0", MAC) + ["-D", str(log)]))
    try:
        nics = net_list(vm)
        assert list(nics) == ["eth0", "eth1"]
        assert nics["eth0"]["mac"] == MAC and nics["eth0"]["link"] == "up"
        assert nics["eth0"]["state"] == "ready"
        f = int(nics["eth0"]["features"], 16)
        assert f & (1 << 32) and f & (1 << 5) and f & (1 << 16), hex(f)
        assert f & (1 << 15) and f & (1 << 29), "MRG_RXBUF and EVENT_IDX"
        # The second slot exists from boot, empty: link down, a generated local MAC (logged).
        assert nics["eth1"]["link"] == "down"
        mac1 = nics["eth1"]["mac"]
        assert int(mac1[:2], 16) & 3 == 2, mac1
        assert f"NIC slot 1 (eth1) empty, MAC {mac1} (generated)" in log.read_text()
        for count, length in [(1, 60), (20, 1000), (5, 1514)]:
            guest_sends(vm, peer, "eth0", count, length, seed=count)
        guest_receives(vm, peer, "eth0", 20, 800, seed=77)
        guest_receives(vm, peer, "eth0", 3, 1514, seed=5)
        # Frames to the guest's MAC reach it as broadcasts do.
        start = vm.send_line("net recv eth0 1 500 9")
        time.sleep(0.3)
        peer.send(pattern_frame(9, 0, 100, dst=bytes.fromhex(MAC.replace(":", ""))))
        vm.wait_for(r"^frames=1 ", 20, start=start)
        vm.wait_for(r"^OK\r?$", 10)
        # A frame from the empty slot goes nowhere.
        assert vm.cmd_ok("net send eth1 2 60 1") == ["sent=2"]
        assert peer.recv_all(1, 0.5) == []
    finally:
        vm.kill()


def test_without_mrg_rxbuf_or_event_idx(ns):
    ns.add_tap("svtap0")
    peer = ns.packet_socket("svtap0")
    vm = boot_in(ns, svm_argv(nic_args("net0", "svtap0"),
                              append=APPEND + " virtio_net.mrg_rxbuf=0 virtio_net.event_idx=0"))
    try:
        f = int(net_list(vm)["eth0"]["features"], 16)
        assert not f & (1 << 15) and not f & (1 << 29), hex(f)
        guest_sends(vm, peer, "eth0", 10, 1514, seed=3)
        guest_receives(vm, peer, "eth0", 10, 1514, seed=4)
    finally:
        vm.kill()


@pytest.mark.parametrize("form", ["old", "json", "kata-fds", "fd"])
def test_every_configuration_form_gives_the_guest_its_nic(ns, tmp_path, form):
    tap = ns.add_tap("svtap0")
    peer = ns.packet_socket(tap)
    pass_fds = ()
    if form == "old":
        argv = svm_argv(["-netdev", f"id=iface_id,netdev={tap},mac={MAC}"])
    elif form == "json":
        cfg = {
            "boot-source": {"kernel_image_path": KERNEL_BIN, "boot_args": APPEND},
            "machine-config": {"name": "net", "vcpu_count": 1, "mem_size": 134217728},
            "net": [{"iface_id": "net0", "host_dev_name": tap, "mac": MAC}],
            "serial": {"stdio": True},
        }
        p = tmp_path / "vm.json"
        p.write_text(json.dumps(cfg))
        argv = [BIN, "-config", str(p)]
    else:
        fd = ns.open_tap_fd(tap)
        pass_fds = (fd,)
        key = "fds" if form == "kata-fds" else "fd"
        argv = svm_argv(["-netdev", f"tap,id=ep0,{key}={fd}",
                         "-device", f"virtio-net-device,netdev=ep0,id=ep0,mac={MAC}"])
    vm = boot_in(ns, argv, pass_fds=pass_fds)
    for fd in pass_fds:
        os.close(fd)
    try:
        nics = net_list(vm)
        assert nics["eth0"]["mac"] == MAC and nics["eth0"]["link"] == "up", nics
        guest_sends(vm, peer, "eth0", 3, 200, seed=1)
        guest_receives(vm, peer, "eth0", 3, 200, seed=2)
    finally:
        vm.kill()


def test_the_seed_json_example_boots_with_its_net_entry(ns, tmp_path):
    """Seed 004's JSON example, paths made real: its drive and its net entry (tap0, the MAC)
    are the guest's. (Its console and vsock entries are other devices.)"""
    ns.add_tap("tap0")
    peer = ns.packet_socket("tap0")
    root = tmp_path / "rootfs.ext4"
    with open(root, "wb") as f:
        f.truncate(4 << 20)
    cfg = {
        "boot-source": {"kernel_image_path": KERNEL_BIN,
                        "boot_args": "console=ttyS0 reboot=k panic=1 pci=off tsc=reliable "
                                     "ipv6.disable=1 root=/dev/vda quiet"},
        "machine-config": {"name": "abc", "vcpu_count": 2, "mem_size": 268435456,
                           "omit_vm_memory": False},
        "drive": [{"drive_id": "rootfs", "path_on_host": str(root), "direct": True,
                   "read_only": False, "serial_num": "abcd"}],
        "net": [{"iface_id": "net0", "host_dev_name": "tap0", "mac": "0e:90:df:9f:a8:88"}],
        "serial": {"stdio": True},
    }
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    sock = tmp_path / "stratovirt.socket"
    vm = boot_in(ns, [BIN, "-config", str(p), "-api-channel", f"unix:{sock}"])
    try:
        assert net_list(vm)["eth0"]["mac"] == "0e:90:df:9f:a8:88"
        guest_sends(vm, peer, "eth0", 2, 100, seed=8)
    finally:
        vm.kill()


# -- bad input at start ------------------------------------------------------------------------

def start_fails(ns, extra, tmp_path, pass_fds=()):
    """Runs the VMM with `extra`; it must print one line and exit 1, leaving no socket."""
    sock = tmp_path / "qmp.sock"
    r = subprocess.run(ns.exec_argv(svm_argv(extra, qmp=str(sock))), capture_output=True,
                       text=True, timeout=30, pass_fds=pass_fds)
    assert r.returncode == 1, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert not sock.exists(), "nothing left behind"
    return lines[0]


def test_bad_nics_at_start_are_refused_with_the_reason(ns, tmp_path):
    ns.add_tap("svtap0")
    ns.add_tun("svtun0")
    err = lambda extra, **kw: start_fails(ns, extra, tmp_path, **kw)  # noqa: E731
    assert err(nic_args("n0", "nosuch0")) == (
        "stratovirt: NIC n0: TAP device `nosuch0` does not exist: No such device (os error 19) "
        "(create it first, e.g. `ip tuntap add nosuch0 mode tap`)")
    assert "nosuch0" not in ns.ip("link"), "no TAP was created on the way"
    assert err(nic_args("n0", "svtun0")).startswith(
        "stratovirt: NIC n0: `svtun0` is not a TAP device")
    assert err(nic_args("n0", "lo")).startswith("stratovirt: NIC n0: `lo` is not a TAP device")
    assert err(["-netdev", "tap,id=n0,ifname=svtap0,mac=01:02:03:04:05:06"]) == (
        "stratovirt: -netdev: MAC address 01:02:03:04:05:06 is multicast")
    assert err(["-netdev", "tap,id=n0,ifname=svtap0,mac=0e:90:df"]).startswith(
        "stratovirt: -netdev: bad MAC address `0e:90:df`")
    three = (nic_args("a", "svtap0") + ["-netdev", "tap,id=b,ifname=t1",
                                        "-netdev", "tap,id=c,ifname=t2"])
    assert err(three) == "stratovirt: -netdev: at most 2 NICs are supported, got 3"
    assert err(["-device", "virtio-net-device,netdev=nothing"]) == (
        "stratovirt: -device: netdev=nothing names no -netdev")
    assert err(["-netdev", "tap,id=n0,fd=77"]) == "stratovirt: NIC n0: descriptor 77 is not open"
    null = os.open("/dev/null", os.O_RDONLY)
    try:
        assert err(["-netdev", f"tap,id=n0,fd={null}"], pass_fds=(null,)) == (
            f"stratovirt: NIC n0: descriptor {null} is not a TAP device: Inappropriate ioctl "
            "for device (os error 25)")
    finally:
        os.close(null)
    # A TAP descriptor opened without IFF_VNET_HDR.
    fd = ns.open_tap_fd("svtap0", IFF_TAP | IFF_NO_PI)
    try:
        assert err(["-netdev", f"tap,id=n0,fd={fd}"], pass_fds=(fd,)) == (
            f"stratovirt: NIC n0: descriptor {fd} (TAP `svtap0`) was opened without "
            "IFF_VNET_HDR; open it with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR")
    finally:
        os.close(fd)
    if not os.path.exists("/dev/vhost-net"):
        assert err(["-netdev", "tap,id=n0,ifname=svtap0,vhost=on"]) == (
            "stratovirt: NIC n0: vhost=on: /dev/vhost-net is missing: No such file or "
            "directory (os error 2) (load the vhost_net module, or use vhost=off)")
    # A TAP another process holds (a single-queue TAP has one user).
    holder = ns.open_tap_fd("svtap0")
    try:
        assert err(nic_args("n0", "svtap0")) == (
            "stratovirt: NIC n0: TAP device `svtap0` is in use by another process (a TAP "
            "takes one user)")
    finally:
        os.close(holder)


def test_a_tap_of_another_user_is_refused_with_the_errno(ns, tmp_path):
    """Without CAP_NET_ADMIN, the VMM may not take a TAP that belongs to another user."""
    ns.add_tap("svtap0", user="1234")
    sock = tmp_path / "qmp.sock"
    argv = ns.exec_argv(["setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin"]
                        + svm_argv(nic_args("n0", "svtap0"), qmp=str(sock)))
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, r
    assert r.stderr.strip() == (
        "stratovirt: NIC n0: no permission to use TAP device `svtap0`: Operation not permitted "
        "(os error 1) (it belongs to another user or group, or does not exist)"), r.stderr
    assert not sock.exists()


# -- hot-plug ----------------------------------------------------------------------------------

@pytest.fixture
def hp(ns, tmp_path):
    """A VM with no NIC configured and a QMP socket, in a namespace with TAPs svtap0..2;
    yields (vm, qmp, ns, peers)."""
    peers = {}
    for i in range(3):
        t = ns.add_tap(f"svtap{i}")
        peers[t] = ns.packet_socket(t)
    sock = str(tmp_path / "qmp.sock")
    vm = boot_in(ns, svm_argv(qmp=sock))
    q = RawQmp(sock)
    yield vm, q, ns, peers
    q.close()
    vm.kill()


def test_seed_nic_hotplug_transcript(hp):
    vm, q, _, peers = hp
    nics = net_list(vm)
    assert nics["eth0"]["link"] == "down" and nics["eth1"]["link"] == "down"
    mac0 = nics["eth0"]["mac"]
    # Seed 003, "Hot Plugged-in NICs", as a person would type it (no qmp_capabilities).
    q.send('{"execute":"netdev_add", "arguments":{"id":"net-0", "ifname":"svtap0"}}')
    assert q.recv() == {"return": {}}
    q.send('{"execute":"device_add", "arguments":{"id":"net-0", "driver":"virtio-net-mmio", '
           '"addr":"0x0"}}')
    assert q.recv() == {"return": {}}
    # addr 0x0 is eth0: its link comes up (a configuration interrupt), its MAC stays.
    d = wait_nic(vm, "eth0", "link", "up")
    assert d["mac"] == mac0 and d["cfg_irqs"] == "1" and d["state"] == "ready"
    assert net_list(vm)["eth1"]["link"] == "down"
    guest_sends(vm, peers["svtap0"], "eth0", 5, 300, seed=1)
    guest_receives(vm, peers["svtap0"], "eth0", 5, 300, seed=2)
    q.send('{"execute": "device_del", "arguments": {"id": "net-0"}}')
    ev = q.recv()
    same_shape(ev, {"event": "DEVICE_DELETED", "data": {"device": "net-0", "path": "net-0"},
                    "timestamp": {"seconds": 1598513339, "microseconds": 97310}})
    assert abs(ev["timestamp"]["seconds"] - time.time()) < 60
    assert q.recv() == {"return": {}}
    d = wait_nic(vm, "eth0", "link", "down")
    assert d["cfg_irqs"] == "2"
    # Traffic stops: what the guest sends goes nowhere, what the host sends does not arrive.
    peers["svtap0"].drain()
    assert vm.cmd_ok("net send eth0 3 100 1") == ["sent=3"]
    assert peers["svtap0"].recv_all(1, 0.5) == []
    # addr 0x1 is eth1; the same TAP can go back in, under the same id.
    q.send('{"execute":"netdev_add", "arguments":{"id":"net-0", "ifname":"svtap0"}}')
    assert q.recv() == {"return": {}}
    q.send('{"execute":"device_add", "arguments":{"id":"net-0", "driver":"virtio-net-mmio", '
           '"addr":"0x1"}}')
    assert q.recv() == {"return": {}}
    wait_nic(vm, "eth1", "link", "up")
    guest_sends(vm, peers["svtap0"], "eth1", 2, 100, seed=3)


def send_fd(q, fd, command):
    """Sends `command` with descriptor `fd` attached (SCM_RIGHTS), as QEMU clients do for getfd."""
    data = json.dumps(command).encode() + b"\n"
    q.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
    return q.recv()


def test_qemu_netdev_add_with_a_descriptor_passed_by_getfd(hp):
    vm, q, ns, peers = hp
    q.execute("qmp_capabilities")
    fd = ns.open_tap_fd("svtap1")
    try:
        assert send_fd(q, fd, {"execute": "getfd", "arguments": {"fdname": "tapfd"}}) == {
            "return": {}}
    finally:
        os.close(fd)
    _, r = q.execute("netdev_add", {"type": "tap", "id": "n1", "fd": "tapfd", "vhost": False})
    assert r == {"return": {}}, r
    mac0 = net_list(vm)["eth0"]["mac"]
    # The guest's driver has read eth0's MAC: another one is refused, the same one is fine.
    _, r = q.execute("device_add", {"id": "n1", "driver": "virtio-net-device", "netdev": "n1",
                                    "addr": "0x0", "mac": "0e:00:00:00:00:01"})
    assert r["error"]["desc"] == (
        f"eth0 has MAC {mac0} since the guest's driver started it and a running Linux guest "
        f"does not read it again; plug in without mac, or with mac {mac0}"), r
    _, r = q.execute("device_add", {"id": "n1", "driver": "virtio-net-device", "netdev": "n1",
                                    "addr": "0x0", "mac": mac0})
    assert r == {"return": {}}, r
    wait_nic(vm, "eth0", "link", "up")
    guest_sends(vm, peers["svtap1"], "eth0", 3, 500, seed=6)
    guest_receives(vm, peers["svtap1"], "eth0", 3, 500, seed=7)
    # QEMU's clean-up: device_del, then netdev_del.
    events, r = q.execute("device_del", {"id": "n1"})
    assert r == {"return": {}} and [e["event"] for e in events] == ["DEVICE_DELETED"]
    assert q.execute("netdev_del", {"id": "n1"})[1] == {"return": {}}
    assert q.execute("netdev_del", {"id": "n1"})[1]["error"]["class"] == "DeviceNotFound"
    # closefd of a name never given.
    assert q.execute("closefd", {"fdname": "tapfd"})[1]["error"]["desc"] == (
        "File descriptor named 'tapfd' not found")


def test_ten_cycles_on_both_slots_leak_nothing(hp):
    vm, q, _, peers = hp
    q.execute("qmp_capabilities")
    pid = vm.proc.pid
    fds_before = open_fds(pid)
    threads_before = threads(pid)
    for cycle in range(10):
        for i, tap in enumerate(["svtap0", "svtap1"]):
            assert q.execute("netdev_add", {"id": f"nic{i}", "ifname": tap})[1] == {"return": {}}
            _, r = q.execute("device_add", {"id": f"nic{i}", "driver": "virtio-net-mmio",
                                            "addr": f"0x{i}"})
            assert r == {"return": {}}, (cycle, r)
        for i, tap in enumerate(["svtap0", "svtap1"]):
            wait_nic(vm, f"eth{i}", "gen", 2 * cycle + 1)
            guest_sends(vm, peers[tap], f"eth{i}", 1, 100, seed=cycle)
        for i in range(2):
            ev, r = q.execute("device_del", {"id": f"nic{i}"})
            assert r == {"return": {}} and ev[0]["data"] == {"device": f"nic{i}",
                                                             "path": f"nic{i}"}
        for i in range(2):
            d = wait_nic(vm, f"eth{i}", "gen", 2 * cycle + 2)
            assert d["link"] == "down"
    assert open_fds(pid) == fds_before
    assert threads(pid) == threads_before
    for i in range(2):
        assert net_list(vm)[f"eth{i}"]["cfg_irqs"] == "20"


def test_qmp_misuse_is_refused_and_changes_nothing(hp, tmp_path):
    vm, q, ns, peers = hp
    q.execute("qmp_capabilities")
    pid = vm.proc.pid

    def err(r, cls="GenericError"):
        assert "error" in r, r
        assert r["error"]["class"] == cls, r
        return r["error"]["desc"]

    def dev_add(did, addr, **extra):
        args = {"id": did, "driver": "virtio-net-mmio", "addr": addr}
        args.update(extra)
        return q.execute("device_add", args)[1]

    before = {d: {k: v for k, v in n.items() if k in ("link", "gen", "mac", "state")}
              for d, n in net_list(vm).items()}
    fds_before = open_fds(pid)
    # A missing netdev.
    assert err(dev_add("net-0", "0x0")) == (
        "no netdev 'net-0': run netdev_add with id 'net-0' first")
    # An unknown TAP, a TUN, a TAP another process holds, a descriptor that is not a TAP.
    assert err(q.execute("netdev_add", {"id": "x", "ifname": "nosuch9"})[1]).startswith(
        "TAP device `nosuch9` does not exist")
    ns.add_tun("svtun0")
    assert err(q.execute("netdev_add", {"id": "x", "ifname": "svtun0"})[1]).startswith(
        "`svtun0` is not a TAP device")
    holder = ns.open_tap_fd("svtap2")
    try:
        assert err(q.execute("netdev_add", {"id": "x", "ifname": "svtap2"})[1]) == (
            "TAP device `svtap2` is in use by another process (a TAP takes one user)")
    finally:
        os.close(holder)
    null = os.open("/dev/null", os.O_RDONLY)
    try:
        assert send_fd(q, null, {"execute": "getfd", "arguments": {"fdname": "notap"}}) == {
            "return": {}}
    finally:
        os.close(null)
    assert re.fullmatch(r"descriptor \d+ is not a TAP device: Inappropriate ioctl for device "
                        r"\(os error 25\)",
                        err(q.execute("netdev_add", {"id": "x", "fd": "notap"})[1]))
    assert err(q.execute("getfd", {"fdname": "none"})[1]) == (
        "No file descriptor supplied via SCM_RIGHTS")
    if not os.path.exists("/dev/vhost-net"):
        assert err(q.execute("netdev_add", {"id": "x", "ifname": "svtap0", "vhost": True})[1]) \
            .startswith("vhost=on: /dev/vhost-net is missing")
    # An id mismatch (device_add's netdev must be its id).
    assert q.execute("netdev_add", {"id": "net-0", "ifname": "svtap0"})[1] == {"return": {}}
    assert err(dev_add("net-1", "0x0", netdev="net-0")) == (
        "the id of netdev_add ('net-0') must equal the id of device_add ('net-1')")
    assert err(dev_add("net-1", "0x0")) == (
        "no netdev 'net-1': run netdev_add with id 'net-1' first")
    # The same id, the same TAP twice.
    assert err(q.execute("netdev_add", {"id": "net-0", "ifname": "svtap1"})[1]) == (
        "id 'net-0' is already in use")
    assert err(q.execute("netdev_add", {"id": "other", "ifname": "svtap0"})[1]) == (
        "TAP svtap0 is already in use by this VM")
    # A third NIC: there are two slots.
    assert err(dev_add("net-0", "0x2")) == (
        "addr 0x2 is out of range: a VM has at most 2 NICs (0x0-0x1)")
    # device_del of an unknown id.
    assert err(q.execute("device_del", {"id": "nosuch"})[1], "DeviceNotFound") == (
        "Device 'nosuch' not found")
    # A disk driver with a netdev, a NIC with a lun.
    assert err(dev_add("net-0", "0x0", drive="net-0")).startswith("virtio-net-mmio takes")
    assert vm.proc.poll() is None
    assert {d: {k: v for k, v in n.items() if k in ("link", "gen", "mac", "state")}
            for d, n in net_list(vm).items()} == before
    # Nothing open but the pending netdev's TAP.
    new = set(open_fds(pid).values()) - set(fds_before.values())
    assert new == {"/dev/net/tun"}, new
    # A taken slot, and a netdev_del of an attached netdev.
    assert dev_add("net-0", "0x0") == {"return": {}}
    assert q.execute("netdev_add", {"id": "net-1", "ifname": "svtap1"})[1] == {"return": {}}
    assert err(dev_add("net-1", "0x0")) == "addr 0x0 (eth0) already holds NIC 'net-0'"
    assert err(q.execute("netdev_del", {"id": "net-0"})[1]) == (
        "netdev 'net-0' is attached to a device; device_del it first")
    assert err(dev_add("net-0", "0x1")) == "Duplicate ID 'net-0' for device"
    assert dev_add("net-1", "0x1") == {"return": {}}
    wait_nic(vm, "eth0", "link", "up")
    wait_nic(vm, "eth1", "link", "up")
    guest_sends(vm, peers["svtap1"], "eth1", 1, 60, seed=1)


# -- malformed chains --------------------------------------------------------------------------

# What stratovirt does with each: the chain returned unused (length 0) and, on the receive
# queue, the frame put into the next buffer; or the device marked needing a reset.
def expected(case):
    queue, _, what = case.partition("-")
    if what in ("badidx", "availjump"):
        return "chain=needs-reset"
    if queue == "tx":
        return "chain=used len=0"
    if queue == "rx":
        return "chain=used len=0 frame=ok"
    return {"reset-tx": "sent=ok", "reset-rx": "frame=ok"}[case]


def test_every_malformed_chain_fails_alone_and_the_vmm_keeps_serving(ns, tmp_path):
    ns.add_tap("svtap0")
    peer = ns.packet_socket("svtap0")
    sock = str(tmp_path / "qmp.sock")
    vm = boot_in(ns, svm_argv(nic_args("net0", "svtap0"), qmp=sock))
    q = RawQmp(sock)
    try:
        q.execute("qmp_capabilities")
        cases = [l.split(" - ")[0] for l in vm.cmd_ok("net evil list")]
        assert len(cases) == 23, cases
        for case in cases:
            sender = Sender(peer, seed=0x55) if case.startswith(("rx-", "reset-rx")) else None
            try:
                out = vm.cmd_ok(f"net evil {case}", timeout=30)[-1]
            finally:
                if sender:
                    sender.stop()
            want = expected(case)
            assert out.startswith(want + " "), (case, out)
            if "needs-reset" in want:
                assert "state=needs-reset" in out and "device_status=0x4f" in out, out
                assert vm.cmd("net send eth0 1 60 1")[-1].startswith("ERR needs-reset"), case
                assert vm.cmd_ok("net reset eth0") == ["link=up"], case
            else:
                assert "state=ready" in out and "device_status=0xf" in out, (case, out)
            if sender:
                # Frames the sender queued on the TAP while the guest had no buffers wait
                # there (none is dropped): take them before checking fresh ones.
                vm.cmd_ok("net recv eth0 100000 20")
            # Good frames still flow both ways, and the VMM answers QMP.
            guest_sends(vm, peer, "eth0", 2, 100, seed=9)
            guest_receives(vm, peer, "eth0", 2, 100, seed=10)
            assert q.execute("query-status")[1]["return"]["status"] == "running", case
        # Nothing of the malformed transmit chains reached the host side.
        assert peer.recv_all(1, 0.3) == []
        assert vm.proc.poll() is None
    finally:
        q.close()
        vm.kill()


def test_net_threads_run_under_their_seccomp_filter(ns):
    ns.add_tap("svtap0")
    vm = boot_in(ns, svm_argv(nic_args("net0", "svtap0")))
    try:
        pid = vm.proc.pid
        end = time.time() + 10
        while "net0" not in threads(pid) or "net1" not in threads(pid):
            assert time.time() < end, threads(pid)
            time.sleep(0.05)
        for t in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{t}/comm") as f:
                name = f.read().strip()
            if not name.startswith("net"):
                continue
            with open(f"/proc/{pid}/task/{t}/status") as f:
                assert re.search(r"^Seccomp:\s+2$", f.read(), re.M), name
    finally:
        vm.kill()


# -- snapshots ---------------------------------------------------------------------------------

def wait_migrated(q, timeout=60):
    end = time.time() + timeout
    while True:
        info = q.execute("query-migrate")[1]["return"]
        if info["status"] in ("completed", "failed"):
            return info
        assert time.time() < end, info
        time.sleep(0.01)


def restore_in(ns, argv, sock):
    """Starts a VM from a snapshot (`argv` has -incoming); its QMP greeting says it is ready."""
    vm = Vm(ns.exec_argv(argv))
    try:
        q = RawQmp(sock, timeout=30)
    except Exception:
        vm.kill()
        raise
    assert q.execute("qmp_capabilities")[1] == {"return": {}}
    return vm, q


def test_a_snapshot_brings_back_boot_and_hot_plugged_nics_on_their_taps(ns, tmp_path):
    peers = {t: ns.packet_socket(ns.add_tap(t)) for t in ("svtap0", "svtap1", "svtap2")}
    snap = tmp_path / "snap"
    sock = str(tmp_path / "src.sock")
    vm = boot_in(ns, svm_argv(nic_args("net0", "svtap0", MAC), qmp=sock))
    try:
        q = RawQmp(sock)
        q.execute("qmp_capabilities")
        assert q.execute("netdev_add", {"id": "hp1", "ifname": "svtap1"})[1] == {"return": {}}
        _, r = q.execute("device_add", {"id": "hp1", "driver": "virtio-net-mmio", "addr": "0x1"})
        assert r == {"return": {}}, r
        before = wait_nic(vm, "eth1", "link", "up")
        guest_sends(vm, peers["svtap0"], "eth0", 5, 1000, seed=1)
        guest_receives(vm, peers["svtap1"], "eth1", 5, 1000, seed=2)
        _, r = q.execute("migrate", {"uri": f"file:{snap}"})
        assert r == {"return": {}}, r
        assert wait_migrated(q) == {"status": "completed"}
        # The source stays paused after the snapshot, and goes on with its NICs after cont.
        q.execute("cont")
        guest_sends(vm, peers["svtap1"], "eth1", 2, 200, seed=3)
        q.close()
    finally:
        vm.kill()

    def restore_argv(nics, name):
        return svm_argv(nics + ["-incoming", f"file:{snap}"], qmp=str(tmp_path / name))

    hp1 = ["-netdev", "tap,id=hp1,ifname=svtap1", "-device",
           "virtio-net-device,netdev=hp1,id=hp1"]
    # The hot-plugged NIC is given first: it still goes back into eth1, where the guest has it.
    sock = str(tmp_path / "dst.sock")
    vm, q = restore_in(ns, restore_argv(hp1 + nic_args("net0", "svtap0"), "dst.sock"), sock)
    try:
        nics = net_list(vm)
        assert nics["eth0"]["mac"] == MAC and nics["eth0"]["link"] == "up"
        assert nics["eth1"]["mac"] == before["mac"] and nics["eth1"]["link"] == "up"
        # Traffic goes on from where the rings were, both ways on both NICs.
        for dev, tap, seed in [("eth0", "svtap0", 10), ("eth1", "svtap1", 20)]:
            guest_sends(vm, peers[tap], dev, 20, 1514, seed=seed)
            guest_receives(vm, peers[tap], dev, 20, 1514, seed=seed + 1)
        # And hot-plug works on the restored VM: eth1 out, another TAP in.
        events, r = q.execute("device_del", {"id": "hp1"})
        assert r == {"return": {}} and [e["event"] for e in events] == ["DEVICE_DELETED"]
        assert q.execute("netdev_add", {"id": "hp2", "ifname": "svtap2"})[1] == {"return": {}}
        _, r = q.execute("device_add", {"id": "hp2", "driver": "virtio-net-mmio", "addr": "0x1"})
        assert r == {"return": {}}, r
        wait_nic(vm, "eth1", "link", "up")
        guest_sends(vm, peers["svtap2"], "eth1", 3, 300, seed=5)
        q.close()
    finally:
        vm.kill()

    # A restore must give the snapshot's NICs again, on the same TAPs, with the same MACs.
    fails = lambda nics: start_fails(  # noqa: E731
        ns, nics + ["-incoming", f"file:{snap}"], tmp_path)
    assert fails(nic_args("net0", "svtap0")).endswith(
        "the snapshot's NIC 'hp1' (TAP svtap1) in eth1 is not in the configuration: give it "
        "again with -netdev tap,id=...,ifname=svtap1 -device "
        "virtio-net-device,netdev=...,id=hp1")
    other_tap = ["-netdev", "tap,id=hp1,ifname=svtap2", "-device",
                 "virtio-net-device,netdev=hp1,id=hp1"]
    assert fails(nic_args("net0", "svtap0") + other_tap).endswith(
        "eth1: the snapshot has TAP 'svtap1', the configuration 'svtap2'")
    assert fails(nic_args("net0", "svtap0", "0e:00:00:00:00:02") + hp1).endswith(
        f"NIC 'net0': the snapshot has MAC {MAC}, the configuration 0e:00:00:00:00:02")
    assert fails(nic_args("nx", "svtap0") + hp1).endswith("the snapshot has no NIC 'nx'")
