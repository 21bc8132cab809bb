"""virtio-vsock end to end with the userspace backend: stratovirt with `uds-path=`, the test
kernel's `vsock` commands (docs/testkernel.md) on one side, host programs on the Unix socket
(Firecracker's `CONNECT <port>` handshake) and listeners at `<path>_<port>` on the other.

Bytes cross both ways intact (host to guest CRC, guest seeded stream to the host, echoed back);
guest connections reach `<path>_<port>` and a missing listener is refused; shutdown works in
each direction and a close frees both ends; many sequential connections leave the VMM's
descriptors as they were; every malformed chain and every protocol violation (a wrong source
CID, another socket type, an unknown operation, a length past the buffer, writes past the
credit) fails alone: its own connection is reset, another one keeps working; a snapshot restore
sends the guest a transport reset and new connections work after it; every configuration form
boots, vhost-vsock on this host (no vhost_vsock module) is refused with the clear message, and
bad input is one line on stderr; the socket is 0600 and removed on every exit path.
"""
import json
import os
import signal
import socket
import stat
import subprocess
import threading
import time
import zlib

import pytest

from harness import Vm, parse_kv
from svm import BIN, KERNEL_BIN, RawQmp, boot, wait_path
from test_console import stream

APPEND = "console=ttyS0 reboot=k panic=1"
VHOST_MISSING = ("vhost-vsock: /dev/vhost-vsock is missing (load the vhost_vsock module, or use "
                 "the userspace backend: uds-path=<socket> on the -device, \"uds_path\" in JSON)")
FIRST_HOST_PORT = 1 << 30  # the host ports host-initiated connections get (as Firecracker)


def vsock_cmd(uds, qmp=None, extra=(), cid=3, form="current"):
    dev = {"current": "vhost-vsock-device", "old": "vsock"}[form]
    cmd = [BIN, "-kernel", KERNEL_BIN, "-append", APPEND, "-m", "128", "-serial", "stdio",
           "-device", f"{dev},id=vsock0,guest-cid={cid},uds-path={uds}"]
    if qmp:
        cmd += ["-qmp", f"unix:{qmp},server,nowait"]
    return cmd + list(extra)


@pytest.fixture
def vs(tmp_path):
    uds = str(tmp_path / "v.sock")
    vm, m = boot(vsock_cmd(uds, qmp=str(tmp_path / "qmp.sock")))
    yield vm, uds
    vm.kill()


def host_connect(vm, uds, port, timeout=10):
    """A host program connects with `CONNECT port` and the guest (listening) accepts; returns
    the stream after `OK` and the guest's connection number."""
    vm.cmd_ok(f"vsock listen {port}")
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(uds)
    s.sendall(f"CONNECT {port}\n".encode())
    kv = parse_kv(vm.cmd_ok(f"vsock accept {port}"))
    line = b""
    while not line.endswith(b"\n"):
        line += s.recv(1)
    assert line == f"OK {kv['peer']}\n".encode(), line
    assert int(kv["peer"]) >= FIRST_HOST_PORT
    return s, int(kv["conn"])


def recv_exactly(s, n):
    out = bytearray()
    while len(out) < n:
        chunk = s.recv(min(65536, n - len(out)))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def send_async(s, data):
    """Sends `data` from a thread (the guest reads it while the test waits on its command)."""
    t = threading.Thread(target=s.sendall, args=(data,), daemon=True)
    t.start()
    return t


def listener(uds, port):
    l = socket.socket(socket.AF_UNIX)
    l.bind(f"{uds}_{port}")
    l.listen(8)
    l.settimeout(10)
    return l


def vmm_fds(vm):
    return len(os.listdir(f"/proc/{vm.proc.pid}/fd"))


# -- bytes both ways ---------------------------------------------------------------------------

def test_a_host_program_reaches_a_guest_listener_and_bytes_cross_both_ways(vs):
    vm, uds = vs
    s, c = host_connect(vm, uds, 52)
    data = os.urandom(1 << 20)
    t = send_async(s, data)
    assert vm.cmd_ok(f"vsock recv {c} {len(data)}", timeout=300) == [
        f"crc32={zlib.crc32(data):08x} bytes={len(data)}"]
    t.join()
    vm.send_line(f"vsock send {c} {1 << 20} 9")
    assert recv_exactly(s, 1 << 20) == stream(9, 1 << 20)
    vm.wait_for(f"sent={1 << 20}", timeout=60)
    # Echoed: what goes in comes back.
    echo = os.urandom(200_000)
    vm.send_line(f"vsock echo {c} {len(echo)}")
    send_async(s, echo)
    assert recv_exactly(s, len(echo)) == echo
    vm.wait_for(f"echoed={len(echo)}", timeout=120)


def test_a_guest_connection_reaches_the_port_path(vs):
    vm, uds = vs
    l = listener(uds, 1234)
    kv = parse_kv(vm.cmd_ok("vsock connect 1234"))
    assert kv["peer"] == "1234"
    h, _ = l.accept()
    h.settimeout(10)
    h.sendall(b"to the guest")
    assert vm.cmd_ok(f"vsock recv {kv['conn']} 12") == [f"crc32={zlib.crc32(b'to the guest'):08x} bytes=12"]
    vm.send_line(f"vsock send {kv['conn']} 100000 3")
    assert recv_exactly(h, 100000) == stream(3, 100000)
    vm.wait_for("sent=100000", timeout=60)
    # Nobody listens on port 9: the guest's connect is refused, and nothing else changes.
    assert vm.cmd("vsock connect 9") == ["ERR refused"]
    h.sendall(b"still")
    assert vm.cmd_ok(f"vsock recv {kv['conn']} 5") == [f"crc32={zlib.crc32(b'still'):08x} bytes=5"]


def test_a_bad_connect_line_is_refused_and_a_slow_guest_is_given_up(vs):
    vm, uds = vs
    for line in [b"HELLO\n", b"CONNECT x\n", b"A" * 64]:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(uds)
        s.sendall(line)
        try:
            assert s.recv(10) == b"", line
        except ConnectionResetError:
            pass
    # Nobody accepts on port 77 (the guest replies RST): the host program sees the end.
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(uds)
    s.sendall(b"CONNECT 77\n")
    assert s.recv(10) == b""


# -- shutdown and cleanup ----------------------------------------------------------------------

def test_shutdown_in_each_direction_and_close(vs):
    vm, uds = vs
    s, c = host_connect(vm, uds, 52)
    # The host stops sending: the guest reads what came and then the end.
    s.sendall(b"last words")
    s.shutdown(socket.SHUT_WR)
    assert vm.cmd_ok(f"vsock recv {c} 1000") == [f"crc32={zlib.crc32(b'last words'):08x} bytes=10"]
    assert parse_kv(vm.cmd_ok(f"vsock state {c}"))["peer_shut"] == "2"
    # The guest can still send, then stops: the host reads it and then the end.
    vm.cmd_ok(f"vsock send {c} 5000 4")
    vm.cmd_ok(f"vsock shutdown {c} send")
    got = recv_exactly(s, 10_000)
    assert got == stream(4, 5000)
    vm.cmd_ok(f"vsock close {c}")
    assert parse_kv(vm.cmd_ok("vsock info"))["conns"] == "0"
    # A guest connection the host closes: the guest sees both directions end.
    l = listener(uds, 1234)
    kv = parse_kv(vm.cmd_ok("vsock connect 1234"))
    h, _ = l.accept()
    h.close()
    deadline = time.time() + 10
    while parse_kv(vm.cmd_ok(f"vsock state {kv['conn']}"))["state"] == "established":
        assert time.time() < deadline
        time.sleep(0.05)
    vm.cmd_ok(f"vsock close {kv['conn']}")


def test_sequential_connections_leave_no_descriptors_behind(vs):
    vm, uds = vs
    l = listener(uds, 1234)
    s, c = host_connect(vm, uds, 52)
    s.close()
    vm.cmd_ok(f"vsock close {c}")
    time.sleep(0.3)
    before = vmm_fds(vm)
    for i in range(25):
        s, c = host_connect(vm, uds, 52)
        s.sendall(b"x")
        vm.cmd_ok(f"vsock recv {c} 1")
        vm.cmd_ok(f"vsock close {c}")
        s.close()
        kv = parse_kv(vm.cmd_ok("vsock connect 1234"))
        h, _ = l.accept()
        vm.cmd_ok(f"vsock close {kv['conn']}")
        h.close()
    time.sleep(0.3)
    assert vmm_fds(vm) == before


# -- the guest cannot hurt the host ------------------------------------------------------------

GENERIC = ["oob", "wrap", "mmio", "zero", "wrongdir", "loop", "huge", "badidx", "availjump"]
PROTOCOL = ["badcid", "badtype", "unknownop", "lenpast"]


@pytest.mark.parametrize("case", GENERIC)
def test_a_malformed_tx_chain_fails_alone(vs, case):
    vm, uds = vs
    out = vm.cmd_ok(f"vsock evil {case}")
    assert out[0].startswith(f"evil {case} "), out
    assert out[0] in (f"evil {case} used len=0", f"evil {case} needs-reset"), out
    if out[0].endswith("needs-reset"):
        vm.cmd_ok("vsock reset")
    # The device serves a new connection afterwards.
    s, c = host_connect(vm, uds, 52)
    s.sendall(b"alive")
    assert vm.cmd_ok(f"vsock recv {c} 5") == [f"crc32={zlib.crc32(b'alive'):08x} bytes=5"]


def test_a_packet_shorter_than_its_header_is_dropped(vs):
    vm, uds = vs
    s, c = host_connect(vm, uds, 52)
    assert vm.cmd_ok("vsock evil short") == ["evil short used len=0"]
    s.sendall(b"alive")
    assert vm.cmd_ok(f"vsock recv {c} 5") == [f"crc32={zlib.crc32(b'alive'):08x} bytes=5"]


@pytest.mark.parametrize("case", PROTOCOL + ["overcredit"])
def test_a_protocol_violation_resets_its_own_connection_only(vs, case):
    vm, uds = vs
    bystander, b = host_connect(vm, uds, 52)
    victim, v = host_connect(vm, uds, 53)
    # overcredit: the host program does not read, so the guest's bytes pile up in the device
    # until they pass the credit it was given.
    assert vm.cmd_ok(f"vsock evil {case} {v}", timeout=300) == [f"evil {case} conn-reset"]
    if case != "overcredit":
        assert victim.recv(10) == b""
    else:
        # What reached the socket before the reset, then the end.
        victim.settimeout(10)
        while True:
            try:
                if not victim.recv(1 << 20):
                    break
            except ConnectionResetError:
                break
    bystander.sendall(b"unharmed")
    assert vm.cmd_ok(f"vsock recv {b} 8") == [f"crc32={zlib.crc32(b'unharmed'):08x} bytes=8"]
    vm.cmd_ok(f"vsock send {b} 3000 5")
    assert recv_exactly(bystander, 3000) == stream(5, 3000)
    assert vm.proc.poll() is None


# -- snapshots ---------------------------------------------------------------------------------

def test_a_restore_resets_the_transport_and_new_connections_work(tmp_path):
    uds = str(tmp_path / "v.sock")
    qmp = str(tmp_path / "qmp.sock")
    snap = tmp_path / "snap"
    vm, _ = boot(vsock_cmd(uds, qmp=qmp))
    try:
        s, c = host_connect(vm, uds, 52)
        q = RawQmp(qmp)
        q.execute("qmp_capabilities")
        _, r = q.execute("migrate", {"uri": f"file:{snap}"})
        assert r == {"return": {}}, r
        deadline = time.time() + 60
        while q.execute("query-migrate")[1]["return"]["status"] != "completed":
            assert time.time() < deadline
            time.sleep(0.05)
        # The source goes on with its connection.
        q.execute("cont")
        s.sendall(b"source")
        assert vm.cmd_ok(f"vsock recv {c} 6") == [f"crc32={zlib.crc32(b'source'):08x} bytes=6"]
    finally:
        vm.kill()
    uds2 = str(tmp_path / "v2.sock")
    qmp2 = str(tmp_path / "qmp2.sock")
    vm2 = Vm(vsock_cmd(uds2, qmp=qmp2, extra=["-incoming", f"file:{snap}"]))
    try:
        q2 = RawQmp(qmp2, timeout=30)
        q2.execute("qmp_capabilities")
        deadline = time.time() + 30
        while parse_kv(vm2.cmd_ok("vsock info"))["resets"] != "1":
            assert time.time() < deadline, "no transport reset"
            time.sleep(0.05)
        assert parse_kv(vm2.cmd_ok(f"vsock state {c}"))["state"] == "reset"
        vm2.cmd_ok(f"vsock close {c}")
        s2, c2 = host_connect(vm2, uds2, 52)
        s2.sendall(b"restored")
        assert vm2.cmd_ok(f"vsock recv {c2} 8") == [f"crc32={zlib.crc32(b'restored'):08x} bytes=8"]
    finally:
        vm2.kill()
    # A restore with a different CID is refused with the reason.
    r = subprocess.run(vsock_cmd(str(tmp_path / "v3.sock"), cid=4, extra=["-incoming", f"file:{snap}"]),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "the snapshot's guest has CID 3, the configuration 4" in r.stderr, r.stderr


# -- configuration -----------------------------------------------------------------------------

def test_every_form_boots(tmp_path):
    for form in ("current", "old"):
        uds = str(tmp_path / f"{form}.sock")
        vm, m = boot(vsock_cmd(uds, form=form, cid=7))
        try:
            assert parse_kv(vm.cmd_ok("vsock info"))["cid"] == "7"
            assert stat.S_IMODE(os.stat(uds).st_mode) == 0o600
            # The device's own thread runs under its seccomp filter.
            task = f"/proc/{vm.proc.pid}/task"
            names = {t: open(f"{task}/{t}/comm").read().strip() for t in os.listdir(task)}
            vsock = [t for t, n in names.items() if n == "vsock"]
            assert len(vsock) == 1, names
            assert "Seccomp:\t2" in open(f"{task}/{vsock[0]}/status").read()
        finally:
            vm.kill()
    cfg = {
        "boot-source": {"kernel_image_path": KERNEL_BIN, "boot_args": APPEND},
        "machine-config": {"name": "v", "vcpu_count": 1, "mem_size": 134217728},
        "vsock": {"vsock_id": "vsock-123321132", "guest_cid": 4, "uds_path": str(tmp_path / "j.sock")},
        "serial": {"stdio": True},
    }
    path = tmp_path / "vm.json"
    path.write_text(json.dumps(cfg))
    vm, _ = boot([BIN, "-config", str(path)])
    try:
        assert parse_kv(vm.cmd_ok("vsock info"))["cid"] == "4"
    finally:
        vm.kill()


def one_line(argv):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_vhost_vsock_without_the_module_is_refused_clearly(tmp_path):
    assert not os.path.exists("/dev/vhost-vsock"), "this host has vhost-vsock: see tests/linux"
    base = [BIN, "-kernel", KERNEL_BIN, "-append", APPEND, "-m", "128"]
    for dev in ("vhost-vsock-device,id=vsock0,guest-cid=3", "vsock,id=vsock_id,guest-cid=3",
                "vhost-vsock-device,id=vsock-id,guest-cid=3"):
        assert one_line(base + ["-device", dev]) == f"stratovirt: vsock {dev.split('id=')[1].split(',')[0]}: {VHOST_MISSING}"
    # The seeds' JSON example (004), its vsock entry as written.
    cfg = {
        "boot-source": {"kernel_image_path": KERNEL_BIN, "boot_args": APPEND},
        "machine-config": {"name": "abc", "vcpu_count": 1, "mem_size": 268435456},
        "serial": {"stdio": True},
        "vsock": {"vsock_id": "vsock-123321132", "guest_cid": 4},
    }
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(cfg))
    assert one_line([BIN, "-config", str(path)]) == f"stratovirt: vsock vsock-123321132: {VHOST_MISSING}"
    # vhostfd= that is not a vhost device.
    with open("/dev/null") as f:
        fd = f.fileno()
        r = subprocess.run(base + ["-device", f"vhost-vsock-device,id=v,guest-cid=3,vhostfd={fd}"],
                           capture_output=True, text=True, timeout=30, pass_fds=(fd,))
    assert r.returncode == 1
    assert f"descriptor {fd} is not a vhost device" in r.stderr, r.stderr
    assert one_line(base + ["-device", "vhost-vsock-device,id=v,guest-cid=3,vhostfd=99"]) == \
        "stratovirt: vsock v: vhostfd=99 is not open"


@pytest.mark.parametrize("dev,msg", [
    ("vsock,id=v,guest-cid=2,uds-path=/tmp/x.sock", "guest-cid 2 is out of range 3..=4294967294"),
    ("vsock,id=v,guest-cid=4294967295,uds-path=/tmp/x.sock", "guest-cid 4294967295 is out of range 3..=4294967294"),
    ("vsock,id=v,uds-path=/tmp/x.sock", "missing guest-cid=..."),
    ("vsock,id=v,guest-cid=3,uds-path=/nonexistent-dir/v.sock", "cannot be created"),
    ("vsock,id=v,guest-cid=3,uds-path=/tmp/x.sock,vhostfd=5",
     "vhostfd= is for vhost-vsock; uds-path= selects the userspace backend: give one"),
])
def test_bad_vsock_options_are_one_line(dev, msg):
    line = one_line([BIN, "-kernel", KERNEL_BIN, "-device", dev])
    assert line.startswith("stratovirt: -device: "), line
    assert msg in line, line


def test_the_socket_path_must_be_free_and_goes_on_every_exit(tmp_path):
    uds = str(tmp_path / "v.sock")
    # A path that exists is refused; one a live VMM holds names it.
    open(uds, "w").close()
    assert "already exists" in one_line(vsock_cmd(uds))
    os.unlink(uds)
    vm, _ = boot(vsock_cmd(uds))
    try:
        line = one_line(vsock_cmd(uds))
        assert f"is in use by running process {vm.proc.pid}" in line, line
    finally:
        vm.kill()
    # SIGKILL leaves the socket: the next start says whose it was.
    line = one_line(vsock_cmd(uds))
    assert "left over from a process that is gone" in line, line


@pytest.mark.parametrize("how", ["poweroff", "sigterm", "quit"])
def test_the_socket_is_removed_when_the_vm_ends(tmp_path, how):
    uds = str(tmp_path / "v.sock")
    qmp = str(tmp_path / "q.sock")
    vm, _ = boot(vsock_cmd(uds, qmp=qmp))
    try:
        assert os.path.exists(uds)
        if how == "poweroff":
            vm.send_line("poweroff")
        elif how == "sigterm":
            vm.proc.send_signal(signal.SIGTERM)
        else:
            q = RawQmp(qmp)
            q.execute("qmp_capabilities")
            q.execute("quit")
        vm.wait_exit(30)
    finally:
        vm.kill()
    assert not os.path.exists(uds)
