"""The virtio-console end to end: stratovirt with a console socket, the test kernel's `con`
commands (docs/testkernel.md) on one side and clients of the socket on the other.

Bytes cross both ways exactly (the guest's seeded stream to the client, the client's bytes to
the guest's CRC and back through `con echo`); output written while nobody is connected waits
for the next client, the last 64 KiB of it; a client that does not read makes the guest wait
without the VMM's memory growing, and gets every byte once it reads; a new client replaces the
old one, and the two see one stream split at a byte boundary; a connection that leaves at once
(another stratovirt checking the path) replaces nobody; every malformed buffer (`con evil`)
fails alone and the VMM keeps serving; every configuration form boots (the old and current
command lines, Kata's triple, the seeds' JSON), every bad path is refused with one line; the
socket is created 0600 and removed on every exit path.
"""
import json
import os
import random
import re
import signal
import socket
import stat
import subprocess
import threading
import time
import zlib

import pytest

from svm import BIN, KERNEL_BIN, RawQmp, boot, wait_path
from test_blk import disk_pattern

APPEND = "console=ttyS0 reboot=k panic=1"
BUFFER = 64 * 1024  # the console's output buffer (devices::virtio::console::BUFFER_SIZE)
GRACE = 0.1  # how long a new client waits before it replaces the current one


def stream(seed, n):
    """The bytes `con write <n> <seed>` sends: the disk pattern of `seed` from sector 0."""
    return disk_pattern(seed, 0, (n + 511) // 512)[:n]


def console_args(path, form="current"):
    """The console options in one of the spellings the seeds and Kata use."""
    if form == "old":
        return ["-chardev", f"id=con0,path={path}"]
    chardev = ["-chardev", f"socket,id=con0,path={path},server,nowait"]
    if form == "current":
        return chardev + ["-device", "virtconsole,chardev=con0"]
    if form == "serial":
        return ["-device", "virtio-serial-device"] + chardev + ["-device", "virtconsole,chardev=con0,id=vc0"]
    if form == "kata":
        return (["-device", "virtio-serial-device,id=virtio-serial0",
                 "-chardev", f"socket,id=charconsole0,path={path},server,nowait",
                 "-device", "virtconsole,chardev=charconsole0,id=virtio-console0,nr=0"])
    raise ValueError(form)


def svm_cmd(sock, qmp=None, extra=(), form="current", kernel=KERNEL_BIN):
    cmd = [BIN, "-kernel", kernel, "-append", APPEND, "-m", "128", "-serial", "stdio"]
    if qmp:
        cmd += ["-qmp", f"unix:{qmp},server,nowait"]
    return cmd + console_args(sock, form) + list(extra)


class Client:
    """A console client: connects to the socket and collects what arrives in a thread."""

    def __init__(self, path, read=True):
        wait_path(path)
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(path))
        self.data = bytearray()
        self.eof = False
        self.cond = threading.Condition()
        self.reading = threading.Event()
        if read:
            self.reading.set()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            self.reading.wait()
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                chunk = b""  # ECONNRESET counts as the end too
            with self.cond:
                if not chunk:
                    self.eof = True
                    self.cond.notify_all()
                    return
                self.data += chunk
                self.cond.notify_all()

    def wait_bytes(self, n, timeout=30):
        """Waits for `n` bytes in all; returns them."""
        end = time.time() + timeout
        with self.cond:
            while len(self.data) < n and not self.eof:
                left = end - time.time()
                if left <= 0:
                    break
                self.cond.wait(left)
            return bytes(self.data)

    def wait_eof(self, timeout=30):
        end = time.time() + timeout
        with self.cond:
            while not self.eof and time.time() < end:
                self.cond.wait(end - time.time())
            assert self.eof, "the stream did not end"
            return bytes(self.data)

    def take(self):
        """What arrived so far; forgets it."""
        with self.cond:
            d = bytes(self.data)
            self.data.clear()
            return d

    def send(self, data):
        self.sock.sendall(data)

    def close(self):
        self.sock.close()


def connected(path):
    """A client the console has connected (after its grace period, if it replaced one)."""
    c = Client(path)
    time.sleep(GRACE * 3)
    return c


@pytest.fixture
def con_vm(tmp_path):
    sock = tmp_path / "console.sock"
    qmp = tmp_path / "qmp.sock"
    vm, _ = boot(svm_cmd(sock, qmp=qmp))
    yield vm, sock, qmp
    vm.kill()


def vmm_rss_kib(pid, guest_mib=128):
    """Resident memory of the VMM without its guest RAM (as tests/bench/run.py counts it)."""
    total = size = 0
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if line.startswith("Size:"):
                size = int(line.split()[1])
            elif line.startswith("Rss:") and size < guest_mib * 1024 // 2:
                total += int(line.split()[1])
    return total


# -- bytes both ways ---------------------------------------------------------------------------

def test_stream_pattern_matches_the_guest():
    assert zlib.crc32(stream(7, 10000)) == 0x8D194071


def test_bytes_cross_both_ways_exactly(con_vm):
    vm, sock, _ = con_vm
    c = connected(sock)
    assert vm.cmd_ok("con print hello from hvc0") == []
    assert c.wait_bytes(16) == b"hello from hvc0\n"
    c.take()
    # Guest to host: 200000 bytes of the seeded stream, in 4 KiB chains and in odd ones.
    for n, seed, chunk in [(200000, 3, 4096), (30001, 9, 777)]:
        vm.cmd_ok(f"con write {n} {seed} {chunk}", timeout=120)
        assert c.wait_bytes(n) == stream(seed, n)
        c.take()
    # Host to guest: random bytes (every value, control bytes included) read by the guest.
    data = random.Random(5).randbytes(50000)
    c.send(data)
    lines = vm.cmd_ok("con read 50000", timeout=120)
    assert lines == [f"crc32={zlib.crc32(data):08x} bytes=50000"], lines
    # And back: what the client sends comes back unchanged.
    data = random.Random(6).randbytes(20000)
    c.send(data)
    vm.cmd_ok("con echo 20000", timeout=120)
    assert c.wait_bytes(20000) == data
    info = vm.cmd_ok("con info")[0]
    assert "state=ready" in info and "written=" in info, info


def test_the_guest_waits_for_input(con_vm):
    """Bytes sent before the guest reads are kept for it, however long it takes."""
    vm, sock, _ = con_vm
    c = connected(sock)
    data = b"typed ahead\n" * 6000  # more than the guest's 64 KiB of receive buffers
    c.send(data)
    time.sleep(1)
    assert vm.cmd_ok(f"con read {len(data)}", timeout=120) == [
        f"crc32={zlib.crc32(data):08x} bytes={len(data)}"]


# -- nobody connected, a slow client, a new client ---------------------------------------------

def test_output_with_nobody_connected_waits_for_the_next_client(con_vm):
    vm, sock, _ = con_vm
    # The guest does not wait: 300000 bytes go at once with no client.
    t = time.time()
    vm.cmd_ok("con write 300000 4", timeout=120)
    assert time.time() - t < 60
    c = Client(sock)
    got = c.wait_bytes(BUFFER)
    assert got == stream(4, 300000)[-BUFFER:], "the last 64 KiB, exactly"
    time.sleep(0.3)
    assert c.take() == got, "and nothing more"
    # Output with the client connected follows directly.
    vm.cmd_ok("con print after")
    assert c.wait_bytes(6) == b"after\n"


def test_a_client_that_does_not_read_makes_the_guest_wait_and_gets_every_byte(con_vm):
    vm, sock, _ = con_vm
    c = Client(sock, read=False)
    time.sleep(GRACE * 3)
    before = vmm_rss_kib(vm.proc.pid)
    n = 4 << 20
    start = vm.send_line(f"con write {n} 11")
    time.sleep(3)
    assert "OK" not in vm.output[start:], "the guest waits for the client"
    grew = vmm_rss_kib(vm.proc.pid) - before
    assert grew < 1024, f"the VMM grew by {grew} KiB while 4 MiB waited"
    c.reading.set()
    assert c.wait_bytes(n, timeout=120) == stream(11, n)
    vm.wait_for(r"^OK", timeout=60, start=start)


def test_a_slow_reader_gets_every_byte(con_vm):
    vm, sock, _ = con_vm
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(sock))
    time.sleep(GRACE * 3)
    n = 1 << 20
    start = vm.send_line(f"con write {n} 12")
    got = bytearray()
    s.settimeout(30)
    while len(got) < n:
        got += s.recv(1024)
        time.sleep(0.002)
    assert bytes(got) == stream(12, n)
    vm.wait_for(r"^OK", timeout=60, start=start)
    s.close()


def test_a_new_client_replaces_the_old_one_and_they_share_the_stream(con_vm):
    vm, sock, _ = con_vm
    a = connected(sock)
    vm.cmd_ok("con print one")
    assert a.wait_bytes(4) == b"one\n"
    # A connection that leaves at once (what a liveness check does) changes nothing.
    for _ in range(5):
        probe = socket.socket(socket.AF_UNIX)
        probe.connect(str(sock))
        probe.close()
    time.sleep(GRACE * 3)
    vm.cmd_ok("con print two")
    assert a.wait_bytes(8) == b"one\ntwo\n"
    a.take()
    # While 1 MiB flows to a (which stops reading for a while), b connects: a's stream ends,
    # b's goes on, at a byte boundary.
    n = 1 << 20
    start = vm.send_line(f"con write {n} 13")
    a.wait_bytes(100000, timeout=60)
    a.reading.clear()
    time.sleep(0.5)
    b = Client(sock)
    time.sleep(GRACE * 3)
    a.reading.set()
    from_a = a.wait_eof()
    from_b = b.wait_bytes(n - len(from_a), timeout=120)
    vm.wait_for(r"^OK", timeout=60, start=start)
    assert 100000 <= len(from_a) < n - BUFFER
    assert from_a + from_b == stream(13, n), (len(from_a), len(from_b))
    # b's input reaches the guest.
    b.send(b"from b")
    assert vm.cmd_ok("con read 6") == [f"crc32={zlib.crc32(b'from b'):08x} bytes=6"]


def test_a_second_vmm_on_the_path_is_refused_and_the_client_stays(con_vm):
    vm, sock, _ = con_vm
    a = connected(sock)
    r = subprocess.run([BIN, "-kernel", KERNEL_BIN] + console_args(sock), capture_output=True,
                       text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"stratovirt: -chardev: socket path `{sock}` is in use by running process {vm.proc.pid}"]
    time.sleep(GRACE * 3)
    vm.cmd_ok("con print still here")
    assert a.wait_bytes(11) == b"still here\n"
    assert not a.eof


# -- the guest cannot hurt the host ---------------------------------------------------------

EVIL_TX = ["oob", "wrap", "mmio", "wrongdir", "loop", "huge", "empty"]
EVIL_RX = ["rxro", "rxoob"]
EVIL_BROKEN = ["badidx", "availjump"]


def test_every_malformed_buffer_fails_alone(con_vm):
    vm, sock, qmp = con_vm
    listed = [l.split(":")[0] for l in vm.cmd_ok("con evil list")]
    assert sorted(listed) == sorted(EVIL_TX + EVIL_RX + EVIL_BROKEN), listed
    c = connected(sock)
    for i, case in enumerate(EVIL_TX):
        assert vm.cmd_ok(f"con evil {case}") == [f"evil {case} completed len=0"]
        vm.cmd_ok(f"con print after-{case}")
        want = f"after-{case}\n".encode()
        assert c.wait_bytes(len(want)) == want, f"{case}: nothing of the bad buffer arrives"
        c.take()
    for case in EVIL_RX:
        # The bad buffer is the first the device sees; it takes no input, the next one does.
        assert vm.cmd_ok(f"con evil {case}") == [f"evil {case} completed len=0"]
        data = f"input-{case}".encode()
        c.send(data)
        assert vm.cmd_ok(f"con read {len(data)}") == [
            f"crc32={zlib.crc32(data):08x} bytes={len(data)}"], f"{case}: the input is kept"
    for case in EVIL_BROKEN:
        assert vm.cmd_ok(f"con evil {case}") == [f"evil {case} needs-reset"]
        assert "state=needs-reset" in vm.cmd_ok("con info")[0]
        vm.cmd_ok("con reset")
        vm.cmd_ok(f"con print reset-after-{case}")
        want = f"reset-after-{case}\n".encode()
        assert c.wait_bytes(len(want)) == want
        c.take()
    # The VMM serves on: QMP, the console both ways, the same client.
    q = RawQmp(str(qmp))
    q.execute("qmp_capabilities")
    assert q.execute("query-status")[1]["return"]["status"] == "running"
    q.close()
    vm.cmd_ok("con write 50000 21")
    assert c.wait_bytes(50000) == stream(21, 50000)
    assert vm.proc.poll() is None


# -- configuration ---------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["old", "current", "serial", "kata"])
def test_every_command_line_form_boots_with_a_console(tmp_path, form):
    sock = tmp_path / "c.sock"
    vm, m = boot(svm_cmd(sock, form=form))
    try:
        assert "state=ready" in vm.cmd_ok("con info")[0]
        c = connected(sock)
        vm.cmd_ok(f"con print {form}")
        assert c.wait_bytes(len(form) + 1) == f"{form}\n".encode()
        assert stat.S_IMODE(os.lstat(sock).st_mode) == 0o600
    finally:
        vm.kill()


def seed_004_json(tmp_path, sock):
    """The JSON example of seed 004 with this machine's paths; its net and vsock entries are
    left out (this build refuses them: not supported yet)."""
    disk = tmp_path / "rootfs.ext4"
    with open(disk, "wb") as f:
        f.truncate(4 << 20)
    return {
        "boot-source": {
            "kernel_image_path": KERNEL_BIN,
            "boot_args": "console=ttyS0 reboot=k panic=1 pci=off tsc=reliable ipv6.disable=1 root=/dev/vda quiet",
        },
        "machine-config": {"name": "abc", "vcpu_count": 2, "mem_size": 268435456, "omit_vm_memory": False},
        "drive": [{"drive_id": "rootfs", "path_on_host": str(disk), "direct": False, "read_only": False,
                   "serial_num": "abcd"}],
        "console": {"console_id": "charconsole0", "socket_path": str(sock)},
        "serial": {"stdio": True},
    }


def test_the_seed_004_json_example_boots_with_its_console(tmp_path):
    sock = tmp_path / "console.socket"
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(seed_004_json(tmp_path, sock)))
    qmp = tmp_path / "stratovirt.socket"
    vm, m = boot([BIN, "-config", str(cfg), "-api-channel", f"unix:{qmp}"])
    try:
        assert int(m.group(1)) == 2
        c = connected(sock)
        vm.cmd_ok("con write 10000 7")
        assert c.wait_bytes(10000) == stream(7, 10000)
        # The console's id is taken: it cannot be removed or reused over QMP.
        q = RawQmp(str(qmp))
        q.execute("qmp_capabilities")
        r = q.execute("device_del", {"id": "charconsole0"})[1]
        assert r["error"]["desc"] == "device 'charconsole0' cannot be removed while the VM runs", r
        q.close()
    finally:
        vm.kill()


def one_line_error(r):
    assert r.returncode == 1, (r.returncode, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("stratovirt: "), lines
    return lines[0][len("stratovirt: "):]


def run(args, **kw):
    return subprocess.run([BIN] + args, capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL, **kw)


def test_every_bad_console_path_is_refused_with_one_line(tmp_path):
    k = ["-kernel", KERNEL_BIN]
    f = tmp_path / "file.sock"
    f.write_text("")
    stale = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))
    s.close()
    long = "/tmp/" + "x" * 110 + ".sock"
    missing = tmp_path / "no-such-dir" / "c.sock"
    cases = [
        (f, f"-chardev: socket path `{f}` already exists and is not a socket (choose another path)"),
        (stale, f"-chardev: socket path `{stale}` already exists, left over from a process that is gone "
                "(nothing listens on it): remove it first"),
        (long, "-chardev: socket path is 120 bytes long, the limit is 107"),
        (missing, f"-chardev: socket path `{missing}` cannot be created: directory "
                  f"`{tmp_path / 'no-such-dir'}` does not exist"),
    ]
    for path, want in cases:
        for form in ("old", "current", "kata"):
            assert one_line_error(run(k + console_args(path, form))) == want, (form, path)
    assert f.exists() and stale.exists(), "what was there is left alone"
    # The same path as QMP's; a second console; a port other than 0; a bare virtconsole.
    p = tmp_path / "s.sock"
    assert one_line_error(run(k + console_args(p) + ["-qmp", f"unix:{p},server,nowait"])) == \
        f"-qmp: socket path `{p}` is also the console socket"
    assert one_line_error(run(k + console_args(p) + ["-chardev", f"id=c1,path={tmp_path}/t.sock"])) == \
        "-chardev: only one console is supported, got 2"
    assert one_line_error(run(k + ["-chardev", f"socket,id=c,path={p},server,nowait",
                                   "-device", "virtconsole,chardev=c,nr=1"])) == \
        "-device: nr=1 is not supported (the console is port 0, the only port)"
    assert one_line_error(run(k + ["-device", "virtconsole,chardev=c"])) == \
        "-device: chardev=c names no -chardev"
    assert one_line_error(run(k + ["-chardev", "socket,id=c,path=/x.sock,server=off"])) == \
        "-chardev: server=off is not supported (the socket is always a server)"
    assert sorted(os.listdir(tmp_path)) == ["file.sock", "stale.sock"], "nothing was created"


def test_bad_json_console_paths_name_the_key(tmp_path):
    sock = tmp_path / "no-such-dir" / "console.socket"
    base = seed_004_json(tmp_path, sock)
    cfg = tmp_path / "vm.json"
    cfg.write_text(json.dumps(base))
    assert one_line_error(run(["-config", str(cfg)])) == (
        f"console.socket_path: socket path `{sock}` cannot be created: directory "
        f"`{tmp_path / 'no-such-dir'}` does not exist")
    existing = tmp_path / "rootfs.ext4"
    base["console"]["socket_path"] = str(existing)
    cfg.write_text(json.dumps(base))
    assert "already exists and is not a socket" in one_line_error(run(["-config", str(cfg)]))
    base["console"] = {"console_id": "c"}
    cfg.write_text(json.dumps(base))
    assert one_line_error(run(["-config", str(cfg)])) == \
        "console.socket_path: required key is missing"


# -- the socket: private, and removed on every exit path ----------------------------------------

@pytest.mark.parametrize("how", ["quit", "poweroff", "sigterm", "sigint", "sighup"])
def test_the_socket_is_removed_on_every_exit_path(tmp_path, how):
    sock = tmp_path / "c.sock"
    qmp = tmp_path / "q.sock"
    vm, _ = boot(svm_cmd(sock, qmp=qmp))
    try:
        c = connected(sock)
        assert stat.S_ISSOCK(os.lstat(sock).st_mode)
        if how == "quit":
            q = RawQmp(str(qmp))
            q.execute("qmp_capabilities")
            q.send({"execute": "quit"})
        elif how == "poweroff":
            vm.send_line("poweroff")
        elif how == "sigterm":
            vm.proc.send_signal(signal.SIGTERM)
        else:
            vm.proc.send_signal({"sigint": signal.SIGINT, "sighup": signal.SIGHUP}[how])
        assert vm.wait_exit(30) == 0, vm.stderr
        assert not sock.exists() and not qmp.exists()
        c.wait_eof()  # the client sees the end
    finally:
        vm.kill()


def test_a_start_up_error_after_the_socket_exists_removes_it(tmp_path):
    k = tmp_path / "vmlinux.bin"
    k.write_bytes(b"abcdef")  # refused while the machine is built, after the console's socket
    sock = tmp_path / "c.sock"
    r = run(["-kernel", str(k)] + console_args(sock))
    assert "smaller than one page" in one_line_error(r)
    assert not sock.exists()


def test_a_daemon_s_console_socket_is_private_and_removed(tmp_path):
    sock, pidfile, log = tmp_path / "c.sock", tmp_path / "vm.pid", tmp_path / "vm.log"
    cmd = [BIN, "-kernel", KERNEL_BIN, "-append", APPEND, "-m", "128", "-daemonize",
           "-pidfile", str(pidfile), "-D", str(log)] + console_args(sock, "kata")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                       preexec_fn=lambda: os.umask(0))
    assert r.returncode == 0, r.stderr
    pid = int(pidfile.read_text())
    try:
        assert stat.S_IMODE(os.lstat(sock).st_mode) == 0o600
        c = Client(sock)
        end = time.time() + 10
        while "console: client connected" not in log.read_text():
            assert time.time() < end, log.read_text()
            time.sleep(0.05)
        with open(f"/proc/{pid}/task/{find_thread(pid, 'console')}/status") as f:
            assert "Seccomp:\t2" in f.read(), "the console thread is filtered"
        os.kill(pid, signal.SIGTERM)
        c.wait_eof()
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    end = time.time() + 10
    while sock.exists() and time.time() < end:
        time.sleep(0.05)
    assert not sock.exists() and not pidfile.exists()
    text = log.read_text()
    assert re.search(rf"console charconsole0 on socket {re.escape(str(sock))} in slot \d+ \(hvc0\)", text), text


def find_thread(pid, name):
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            if f.read().strip() == name:
                return tid
    raise AssertionError(f"no thread {name}")


# -- snapshots ---------------------------------------------------------------------------------

def test_a_snapshot_keeps_the_buffered_output_and_the_restored_console_goes_on(tmp_path):
    from test_snapshot import qmp_vm, restore, snapshot
    snap = tmp_path / "snap"
    vm, q = qmp_vm(tmp_path, "src", extra=console_args(tmp_path / "src-con.sock"))
    try:
        # Output nobody has read yet is part of the snapshot.
        vm.cmd_ok("con write 20000 17")
        snapshot(q, snap)
    finally:
        vm.kill()
    # The restored VM needs a console in its configuration, on a socket of its own.
    r = subprocess.run([BIN, "-kernel", KERNEL_BIN, "-m", "256", "-smp", "2", "-incoming", f"file:{snap}"],
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
    assert "virtio devices" in r.stderr, r.stderr
    sock = tmp_path / "dst-con.sock"
    vm2, q2 = restore(tmp_path, "dst", snap, extra=console_args(sock))
    try:
        c = Client(sock)
        assert c.wait_bytes(20000) == stream(17, 20000), "the buffered output, from the snapshot"
        c.take()
        assert "state=ready" in vm2.cmd_ok("con info")[0]
        vm2.cmd_ok("con print restored")
        assert c.wait_bytes(9) == b"restored\n"
        c.send(b"typed")
        assert vm2.cmd_ok("con read 5") == [f"crc32={zlib.crc32(b'typed'):08x} bytes=5"]
        q2.close()
    finally:
        vm2.kill()


def test_a_snapshot_without_a_console_is_not_restored_with_one(tmp_path):
    from test_snapshot import qmp_vm, snapshot
    snap = tmp_path / "snap"
    vm, q = qmp_vm(tmp_path, "src")
    try:
        snapshot(q, snap)
    finally:
        vm.kill()
    sock = tmp_path / "c.sock"
    r = subprocess.run([BIN, "-kernel", KERNEL_BIN, "-m", "256", "-smp", "2", "-incoming", f"file:{snap}"]
                       + console_args(sock), capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 1, r.stderr
    assert re.fullmatch(r"stratovirt: cannot restore the snapshot: the snapshot has \d+ virtio "
                        r"devices and no console\n", r.stderr), r.stderr
    assert not sock.exists(), "the socket goes with the failed start"
