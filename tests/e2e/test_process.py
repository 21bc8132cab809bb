"""Process behaviour: seccomp on every thread by default and off with
-disable-seccomp, -daemonize with -pidfile, the -D log, -omit_vm_memory, and clean exits on
SIGTERM (no socket, pidfile or raw terminal left behind, written data on disk)."""
import json
import os
import re
import signal
import socket
import stat
import struct
import subprocess
import termios
import threading
import time
import zlib

import pytest

from svm import BIN, KERNEL_BIN, READY, RawQmp, boot, stratovirt_cmd, wait_path

MIB = 1 << 20


# -- helpers -------------------------------------------------------------------------------

def threads(pid):
    """{thread name: seccomp mode} of every thread of `pid` (names made unique with #tid)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                mode = int(re.search(r"^Seccomp:\s+(\d+)", f.read(), re.M).group(1))
        except FileNotFoundError:
            continue  # the thread ended meanwhile
        key = name if name not in out else f"{name}#{tid}"
        out[key] = mode
    return out


def kernel_worker(name):
    """KVM's own worker threads (kvm-nx-lpage-recovery on newer kernels) live in the VMM's
    thread group but run only kernel code; where they inherit a filter depends on the kernel."""
    return name.startswith("kvm-")


def wait_threads(pid, want, timeout=30):
    """Waits until threads named like every regex in `want` exist; returns threads(pid)."""
    end = time.time() + timeout
    while True:
        t = threads(pid)
        if all(any(re.fullmatch(w, n.split("#")[0]) for n in t) for w in want):
            return t
        if time.time() > end:
            raise TimeoutError(f"threads {want} never all appeared: {t}")
        time.sleep(0.05)


def disk(tmp_path, name="d0.img", size=4 * MIB):
    p = tmp_path / name
    with open(p, "wb") as f:
        f.truncate(size)
    return p


def disk_args(img, drive_id="d0"):
    return ["-drive", f"id={drive_id},file={img},direct=off",
            "-device", f"virtio-blk-device,drive={drive_id}"]


def alive(pid):
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_gone(pid, timeout=15):
    end = time.time() + timeout
    while alive(pid):
        if time.time() > end:
            raise TimeoutError(f"process {pid} still runs")
        time.sleep(0.02)


def dead_pid():
    """The pid of a process that has exited and been reaped."""
    p = subprocess.Popen(["true"])
    p.wait()
    dead_pid.last = p.pid
    return p.pid


def one_line_error(r):
    """The single stderr line of a refused start."""
    assert r.returncode == 1, (r.returncode, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def daemon_cmd(tmp_path, extra=(), kernel=KERNEL_BIN):
    """A daemon with QMP, a pidfile and a log in tmp_path (no serial: a daemon has no stdio)."""
    sock, pidfile, log = tmp_path / "vm.sock", tmp_path / "vm.pid", tmp_path / "vm.log"
    cmd = [BIN, "-kernel", str(kernel), "-append", "console=ttyS0", "-m", "128",
           "-qmp", f"unix:{sock},server,nowait", "-daemonize", "-pidfile", str(pidfile),
           "-D", str(log)] + list(extra)
    return cmd, sock, pidfile, log


class PtyVm:
    """stratovirt with its standard streams on a pseudo-terminal, as on an operator's console."""

    def __init__(self, argv):
        self.master, self.slave = os.openpty()
        self.saved = termios.tcgetattr(self.slave)
        self.buf = b""
        self.eof = False
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(argv, stdin=self.slave, stdout=self.slave,
                                     stderr=self.slave, close_fds=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                data = b""
            with self.cond:
                if not data:
                    self.eof = True
                    self.cond.notify_all()
                    return
                self.buf += data
                self.cond.notify_all()

    def wait_for(self, pattern, start=0, timeout=60):
        rx = re.compile(pattern.encode())
        end = time.time() + timeout
        with self.cond:
            while True:
                m = rx.search(self.buf, start)
                if m:
                    return m
                left = end - time.time()
                if left <= 0 or self.eof:
                    raise TimeoutError(f"/{pattern}/ not seen; output tail: {self.buf[-1500:]!r}")
                self.cond.wait(min(left, 0.2))

    def command(self, line, reply, timeout=60):
        """Types `line`; returns the match of `reply` (a regex) in what follows."""
        with self.cond:
            start = len(self.buf)
        os.write(self.master, line.encode() + b"\r")
        return self.wait_for(reply, start, timeout)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


# -- seccomp -------------------------------------------------------------------------------

def test_every_thread_is_filtered(tmp_path):
    """Main loop, vCPUs, QMP and the disk workers the guest's driver starts at boot."""
    sock = tmp_path / "vm.sock"
    img = disk(tmp_path)
    vm, _ = boot(stratovirt_cmd(cpus=2, qmp=str(sock), extra=disk_args(img)))
    try:
        RawQmp(str(sock)).close()  # QMP thread up; the main thread is in its event loop
        t = wait_threads(vm.proc.pid, ["stratovirt", "vcpu0", "vcpu1", "qmp", r"blk\d+"])
        assert all(mode == 2 for name, mode in t.items() if not kernel_worker(name)), t
        assert "blk0" in t, t
    finally:
        vm.kill()


def test_the_console_thread_is_filtered(tmp_path):
    con = tmp_path / "con.sock"
    vm, _ = boot(stratovirt_cmd(extra=["-chardev", f"socket,id=c0,path={con},server,nowait",
                                       "-device", "virtconsole,chardev=c0"]))
    try:
        t = wait_threads(vm.proc.pid, ["stratovirt", "vcpu0", "console"])
        assert t["console"] == 2, t
        assert all(mode == 2 for name, mode in t.items() if not kernel_worker(name)), t
    finally:
        vm.kill()


def test_a_fatal_signal_under_seccomp_is_reported_as_itself(tmp_path):
    """Rust's own SIGSEGV handler would call sigaction(2), which no filter allows, and the crash
    would read as a forbidden system call; the VMM's handler names the signal and cleans up."""
    sock, log = tmp_path / "vm.sock", tmp_path / "vm.log"
    vm, _ = boot(stratovirt_cmd(qmp=str(sock), extra=["-D", str(log)]))
    vm.proc.send_signal(signal.SIGSEGV)
    assert vm.wait_exit(10) == 128 + signal.SIGSEGV
    text = log.read_text()
    assert re.search(rf"ERROR \[\S+\] fatal signal SIGSEGV sent by process {os.getpid()} "
                     r"on thread \S+; stopping the VMM", text), text[-2000:]
    assert "forbidden system call" not in text, text[-2000:]
    assert not sock.exists(), "the QMP socket is removed"


def test_disable_seccomp_leaves_threads_unfiltered(tmp_path):
    sock = tmp_path / "vm.sock"
    img = disk(tmp_path)
    vm, _ = boot(stratovirt_cmd(qmp=str(sock), extra=disk_args(img) + ["-disable-seccomp"]))
    try:
        RawQmp(str(sock)).close()
        t = wait_threads(vm.proc.pid, ["stratovirt", "vcpu0", "qmp", r"blk\d+"])
        assert all(mode == 0 for mode in t.values()), t
    finally:
        vm.kill()


def test_qmp_lifecycle_and_hotplug_under_seccomp(tmp_path):
    """What the QMP thread does (pause with kicks, hot-plug opening an image, unplug) passes
    its filter; the VM keeps running and exits cleanly."""
    sock = tmp_path / "vm.sock"
    img, extra = disk(tmp_path), disk(tmp_path, "hp.img")
    vm, _ = boot(stratovirt_cmd(qmp=str(sock), extra=disk_args(img)))
    try:
        q = RawQmp(str(sock))
        q.execute("qmp_capabilities")
        for cmd in ("stop", "cont"):
            assert q.execute(cmd)[1] == {"return": {}}
        r = q.execute("blockdev-add", {"node-name": "drive-1", "file": {"driver": "file", "filename": str(extra)},
                                       "cache": {"direct": False}, "read-only": False})[1]
        assert r == {"return": {}}, r
        r = q.execute("device_add", {"id": "drive-1", "driver": "virtio-blk-mmio", "addr": "0x1"})[1]
        assert r == {"return": {}}, r
        r = q.execute("device_del", {"id": "drive-1"})[1]
        assert r == {"return": {}}, r
        assert vm.cmd("ticks")[-1] == "OK", "the guest still runs"
        assert q.execute("query-status")[1]["return"]["status"] == "running"
        t = threads(vm.proc.pid)
        assert all(mode == 2 for name, mode in t.items() if not kernel_worker(name)), t
        q.send({"execute": "quit"})
        assert vm.wait_exit(15) == 0, vm.stderr
        assert "forbidden system call" not in vm.stderr, vm.stderr
        q.close()
    finally:
        vm.kill()


# -- -D log --------------------------------------------------------------------------------

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z (ERROR|WARN |INFO |DEBUG|TRACE) \[[^\]]+\] .+$")


def test_log_file_tells_the_lifecycle(tmp_path):
    sock, log = tmp_path / "vm.sock", tmp_path / "vm.log"
    img = disk(tmp_path)
    vm, _ = boot(stratovirt_cmd(cpus=2, qmp=str(sock), extra=disk_args(img) + ["-D", str(log)]))
    try:
        q = RawQmp(str(sock))
        q.execute("qmp_capabilities")
        q.execute("stop")
        q.execute("cont")
        q.send({"execute": "quit"})
        assert vm.wait_exit(15) == 0
        q.close()
    finally:
        vm.kill()
    assert vm.stderr == "", "the log goes to the file, not stderr"
    lines = log.read_text().splitlines()
    assert lines and all(LOG_LINE.match(l) for l in lines), lines
    text = "\n".join(lines)
    for want in [r"starting VM StratoVirt: 2 vCPUs, 128 MiB",
                 rf"config: disks \[d0={re.escape(str(img))}\].*qmp {re.escape(str(sock))}.*seccomp on",
                 r"VM running", r"VM paused", r"VM resumed", r"VM shutting down: host-qmp-quit"]:
        assert re.search(want, text), f"{want!r} missing from the log:\n{text}"
    order = [text.index(s) for s in ("starting VM", "VM running", "VM paused", "VM resumed", "shutting down")]
    assert order == sorted(order), text


def test_log_file_tells_guest_reset_and_is_appended(tmp_path):
    log = tmp_path / "vm.log"
    log.write_text("earlier line\n")
    vm, _ = boot(stratovirt_cmd(extra=["-D", str(log)]))
    vm.send_line("poweroff")
    assert vm.wait_exit(30) == 0
    text = log.read_text()
    assert text.startswith("earlier line\n"), "appended, not truncated"
    assert "VM shutting down: guest-reset" in text, text
    assert "starting VM StratoVirt: 1 vCPU, 128 MiB" in text, text
    assert "VM running (serial console on stdin/stdout)" in text, text


def test_startup_error_is_in_the_log(tmp_path):
    log = tmp_path / "vm.log"
    bad = tmp_path / "notadisk"
    bad.mkdir()
    r = subprocess.run([BIN, "-kernel", KERNEL_BIN, "-m", "128", "-D", str(log),
                        "-drive", f"id=d0,file={bad},direct=off", "-device", "virtio-blk-device,drive=d0"],
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 1
    reason = r.stderr.strip().splitlines()[-1]
    assert str(bad) in reason, r.stderr
    assert "ERROR" in log.read_text() and str(bad) in log.read_text()


# -- -daemonize and -pidfile ---------------------------------------------------------------

def test_daemonize_writes_pidfile_and_answers_qmp(tmp_path):
    img = disk(tmp_path)
    cmd, sock, pidfile, log = daemon_cmd(tmp_path, disk_args(img))
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "" and r.stdout == ""
    # Right after the parent exits: the pidfile names the daemon and QMP answers.
    pid = int(pidfile.read_text())
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        assert argv[0] == BIN.encode() and str(pidfile).encode() in argv
        assert os.readlink(f"/proc/{pid}/cwd") == "/"
        for fd in (0, 1, 2):
            assert os.readlink(f"/proc/{pid}/fd/{fd}") == "/dev/null"
        assert os.getsid(pid) != os.getsid(0), "a session of its own"
        q = RawQmp(str(sock))
        assert b'"QMP"' in q.greeting
        q.execute("qmp_capabilities")
        assert q.execute("query-status")[1]["return"]["status"] == "running"
        t = wait_threads(pid, ["stratovirt", "vcpu0", "qmp", r"blk\d+"])
        assert all(mode == 2 for name, mode in t.items() if not kernel_worker(name)), t
        q.send({"execute": "quit"})
        wait_gone(pid)
        q.close()
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    assert not pidfile.exists() and not sock.exists()
    text = log.read_text()
    assert f"pid {pid}" in text and "daemon yes" in text and "host-qmp-quit" in text, text
    assert re.search(r"\] VM running$", text, re.M), text
    assert "console on" not in text, "a daemon has no console, and the log says none"


def test_daemon_resolves_relative_paths(tmp_path):
    """Paths relative to the starting directory still work after the daemon moves to /."""
    disk(tmp_path)
    kernel = os.path.relpath(KERNEL_BIN, tmp_path)
    cmd = [BIN, "-kernel", kernel, "-m", "128", "-qmp", "unix:vm.sock,server,nowait",
           "-daemonize", "-pidfile", "vm.pid", "-D", "vm.log"] + disk_args("d0.img")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    pid = int((tmp_path / "vm.pid").read_text())
    try:
        assert (tmp_path / "vm.sock").exists() and (tmp_path / "vm.log").exists()
        os.kill(pid, signal.SIGTERM)
        wait_gone(pid)
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    assert not (tmp_path / "vm.pid").exists() and not (tmp_path / "vm.sock").exists()


@pytest.mark.parametrize("case", ["missing-kernel", "bad-disk", "bad-log"])
def test_failing_daemon_start_reports_to_the_parent(tmp_path, case):
    kernel, extra = KERNEL_BIN, []
    if case == "missing-kernel":
        kernel = tmp_path / "no-such-kernel"
        want = str(kernel)
    elif case == "bad-disk":
        # Refused while the daemon builds the VM: after the pidfile and the socket exist.
        bad = tmp_path / "notadisk"
        bad.mkdir()
        extra = ["-drive", f"id=d0,file={bad},direct=off", "-device", "virtio-blk-device,drive=d0"]
        want = str(bad)
    else:
        extra = ["-D", str(tmp_path / "no-such-dir" / "vm.log")]
        want = "no-such-dir"
    cmd, sock, pidfile, _ = daemon_cmd(tmp_path, kernel=kernel)
    if case == "bad-log":
        cmd = cmd[:cmd.index("-D")] + cmd[cmd.index("-D") + 2:]
    r = subprocess.run(cmd + extra, capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    assert r.returncode != 0
    assert want in r.stderr and r.stderr.startswith("stratovirt: "), r.stderr
    assert not pidfile.exists() and not sock.exists()
    assert sorted(os.listdir(tmp_path)) in ([], ["notadisk"], ["vm.log"], ["notadisk", "vm.log"]), \
        os.listdir(tmp_path)


def test_daemonize_rules(tmp_path):
    cmd, sock, pidfile, _ = daemon_cmd(tmp_path)
    # A daemon has no terminal.
    r = subprocess.run(cmd + ["-serial", "stdio"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "-serial" in r.stderr and "-daemonize" in r.stderr, r.stderr
    # An existing pidfile is refused and left alone; one naming no running process is stale.
    pidfile.write_text(f"{dead_pid()}\n")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "already exists" in r.stderr, r.stderr
    assert "is not running" in r.stderr and "remove it first" in r.stderr, r.stderr
    assert pidfile.read_text() == f"{dead_pid.last}\n" and not sock.exists()
    # -pidfile needs -daemonize.
    pidfile.unlink()
    plain = [a for a in cmd if a != "-daemonize"]
    r = subprocess.run(plain, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "-daemonize" in r.stderr, r.stderr


# -- -omit_vm_memory -----------------------------------------------------------------------

def guest_ram_flags(pid, mem_mib):
    """VmFlags of the guest RAM mapping (the one anonymous mapping of exactly that size)."""
    with open(f"/proc/{pid}/smaps") as f:
        text = f.read()
    found = []
    for block in re.split(r"\n(?=[0-9a-f]+-[0-9a-f]+ )", text):
        if re.search(rf"^Size:\s+{mem_mib * 1024} kB$", block, re.M):
            found.append(re.search(r"^VmFlags:(.*)$", block, re.M).group(1).split())
    assert len(found) == 1, f"{len(found)} mappings of {mem_mib} MiB"
    return found[0]


@pytest.mark.parametrize("option,dd", [
    ([], False),
    (["-omit_vm_memory"], True),
    (["-machine", "microvm,dump-guest-core=off"], True),
    (["-machine", "microvm,dump-guest-core=on"], False),
])
def test_omit_vm_memory_marks_guest_ram_dontdump(option, dd):
    vm, _ = boot(stratovirt_cmd(mem=384, extra=option))
    try:
        flags = guest_ram_flags(vm.proc.pid, 384)
        assert ("dd" in flags) == dd, flags
    finally:
        vm.kill()


def test_omit_vm_memory_in_json_config(tmp_path):
    cfg = {
        "boot-source": {"kernel_image_path": KERNEL_BIN, "boot_args": "console=ttyS0"},
        "machine-config": {"name": "abc", "vcpu_count": 1, "mem_size": 384 * MIB, "omit_vm_memory": True},
        "serial": {"stdio": True},
    }
    f = tmp_path / "vm.json"
    f.write_text(json.dumps(cfg))
    vm, _ = boot([BIN, "-config", str(f)])
    try:
        assert "dd" in guest_ram_flags(vm.proc.pid, 384)
    finally:
        vm.kill()


# -- signals and exits ---------------------------------------------------------------------

def test_sigterm_during_disk_io_on_a_terminal(tmp_path):
    """SIGTERM while the guest reads its disk: exit 0, SHUTDOWN event, the socket removed, the
    terminal back as it was, and what the guest wrote is in the image."""
    sock = tmp_path / "vm.sock"
    img = disk(tmp_path)
    vm = PtyVm(stratovirt_cmd(qmp=str(sock), extra=disk_args(img)))
    try:
        vm.wait_for(READY.pattern)
        raw = termios.tcgetattr(vm.slave)
        assert not raw[3] & termios.ICANON and not raw[3] & termios.ECHO, "raw while running"
        vm.command("blk write vda 0 64 7", r"\nOK\r?\n")
        crc = int(vm.command("blk read vda 0 64", r"crc32=([0-9a-fA-F]{8})").group(1), 16)
        q = RawQmp(str(sock))
        q.execute("qmp_capabilities")
        os.write(vm.master, b"blk bench vda 1000000 4 read\r")
        time.sleep(1.0)
        vm.proc.send_signal(signal.SIGTERM)
        assert vm.proc.wait(15) == 0
        ev = q.recv()
        assert ev["event"] == "SHUTDOWN" and ev["data"] == {"guest": False, "reason": "host-signal"}, ev
        q.close()
        assert termios.tcgetattr(vm.slave) == vm.saved, "terminal attributes restored"
        assert not sock.exists()
        with open(img, "rb") as f:
            assert zlib.crc32(f.read(64 * 512)) == crc
    finally:
        vm.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_exit_signals_remove_pidfile_and_socket(tmp_path, sig):
    img = disk(tmp_path)
    cmd, sock, pidfile, log = daemon_cmd(tmp_path, disk_args(img))
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    pid = int(pidfile.read_text())
    try:
        q = RawQmp(str(sock))
        q.execute("qmp_capabilities")
        os.kill(pid, sig)
        assert q.recv()["event"] == "SHUTDOWN"
        wait_gone(pid)
        q.close()
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    assert not pidfile.exists() and not sock.exists()
    name = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT"}[sig]
    assert f"VM shutting down: host-signal ({name})" in log.read_text()


def test_vanished_qmp_client_is_harmless(tmp_path):
    """SIGPIPE from a client that left before its reply: the VMM carries on."""
    sock = tmp_path / "vm.sock"
    vm, _ = boot(stratovirt_cmd(qmp=str(sock)))
    try:
        for _ in range(20):
            q = RawQmp(str(sock))
            q.send(b'{"execute":"qmp_capabilities"}\n{"execute":"query-cpus"}\n' * 50)
            # Reset the connection on close: the replies meet a vanished peer.
            q.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            q.close()
        q = RawQmp(str(sock))
        q.execute("qmp_capabilities")
        assert q.execute("query-status")[1]["return"]["running"] is True
        q.close()
        assert vm.proc.poll() is None
    finally:
        vm.kill()


# -- what the VMM creates is private ----------------------------------------------------------

def test_socket_and_log_are_0600_under_umask_000(tmp_path):
    cmd, sock, pidfile, log = daemon_cmd(tmp_path)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                       preexec_fn=lambda: os.umask(0))
    assert r.returncode == 0, r.stderr
    pid = int(pidfile.read_text())
    try:
        assert stat.S_ISSOCK(os.lstat(sock).st_mode)
        assert stat.S_IMODE(os.lstat(sock).st_mode) == 0o600, oct(os.lstat(sock).st_mode)
        assert stat.S_IMODE(os.lstat(log).st_mode) == 0o600, oct(os.lstat(log).st_mode)
        assert stat.S_IMODE(os.lstat(pidfile).st_mode) == 0o644
        os.kill(pid, signal.SIGTERM)
        wait_gone(pid)
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


# -- live owners: "in use by running process N", removal advice only when stale ---------------

def test_a_live_qmp_socket_names_its_owner_and_a_stale_one_is_left_for_the_user(tmp_path):
    sock = str(tmp_path / "vm.sock")
    first, _ = boot(stratovirt_cmd(qmp=sock))
    try:
        cmd = [BIN, "-kernel", KERNEL_BIN, "-m", "128", "-qmp", f"unix:{sock},server,nowait"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        line = one_line_error(r)
        assert line == f"stratovirt: -qmp: socket path `{sock}` is in use by running process {first.proc.pid}", line
        # A console socket at a live VM's socket path: the same answer.
        con = [BIN, "-kernel", KERNEL_BIN, "-chardev", f"socket,id=c0,path={sock},server,nowait",
               "-device", "virtconsole,chardev=c0"]
        r = subprocess.run(con, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        line = one_line_error(r)
        assert line == f"stratovirt: -chardev: socket path `{sock}` is in use by running process {first.proc.pid}", line
        # The first VM is untouched and still answers.
        q = RawQmp(sock)
        q.execute("qmp_capabilities")
        assert q.execute("query-status")[1]["return"]["status"] == "running"
        q.close()
        first.proc.kill()
        first.proc.wait(10)
        assert os.path.exists(sock), "SIGKILL leaves the socket behind"
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        line = one_line_error(r)
        assert "left over from a process that is gone (nothing listens on it): remove it first" in line, line
        assert os.path.exists(sock), "never removed by the VMM"
    finally:
        first.kill()


def test_a_live_pidfile_names_its_owner_and_a_stale_one_gets_the_advice(tmp_path):
    cmd, sock, pidfile, log = daemon_cmd(tmp_path)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    pid = int(pidfile.read_text())
    try:
        other = tmp_path / "other"
        other.mkdir()
        second, _, _, _ = daemon_cmd(other)
        second[second.index("-pidfile") + 1] = str(pidfile)
        r = subprocess.run(second, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        line = one_line_error(r)
        assert line == f"stratovirt: -pidfile: pidfile `{pidfile}` is in use by running process {pid}", line
        assert alive(pid) and int(pidfile.read_text()) == pid
        os.kill(pid, signal.SIGKILL)
        wait_gone(pid)
        assert pidfile.exists(), "SIGKILL leaves the pidfile behind"
        # The leader thread is a zombie before the last thread has closed the files (and the
        # lock): until then the pidfile is rightly still in use.
        end = time.time() + 15
        while True:
            r = subprocess.run(second, capture_output=True, text=True, timeout=30,
                               stdin=subprocess.DEVNULL)
            line = one_line_error(r)
            if "in use" not in line or time.time() > end:
                break
            time.sleep(0.05)
        assert f"process {pid} is not running" in line and "remove it first" in line, line
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


# -- one image, one writer ---------------------------------------------------------------------

def test_a_second_vm_cannot_write_an_image_in_use(tmp_path):
    img = disk(tmp_path)
    first, _ = boot(stratovirt_cmd(extra=disk_args(img)))
    try:
        for readonly in ("off", "on"):
            cmd = [BIN, "-kernel", KERNEL_BIN, "-m", "128",
                   "-drive", f"id=d0,file={img},direct=off,readonly={readonly}",
                   "-device", "virtio-blk-device,drive=d0"]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                               stdin=subprocess.DEVNULL)
            line = one_line_error(r)
            assert f"disk image {img} is in use by another process" in line, line
        # Hot-plug in a second VM is refused the same way, and that VM runs on.
        sock = str(tmp_path / "second.sock")
        second, _ = boot(stratovirt_cmd(qmp=sock))
        try:
            q = RawQmp(sock)
            q.execute("qmp_capabilities")
            args = {"node-name": "drive-1", "file": {"driver": "file", "filename": str(img)},
                    "cache": {"direct": False}, "read-only": False}
            r = q.execute("blockdev-add", args)[1]
            assert f"disk image {img} is in use" in r["error"]["desc"], r
            assert second.cmd("ticks")[-1] == "OK"
            # Once the first VM is gone, the image is free.
            first.send_line("poweroff")
            assert first.wait_exit(30) == 0
            assert q.execute("blockdev-add", args)[1] == {"return": {}}
            q.close()
        finally:
            second.kill()
    finally:
        first.kill()


def test_two_vms_may_share_a_read_only_image(tmp_path):
    img = disk(tmp_path)
    ro = ["-drive", f"id=d0,file={img},direct=off,readonly=on", "-device", "virtio-blk-device,drive=d0"]
    a, _ = boot(stratovirt_cmd(extra=ro))
    try:
        b, _ = boot(stratovirt_cmd(extra=ro))
        try:
            for vm in (a, b):
                assert "ro=1" in " ".join(vm.cmd_ok("blk list"))
        finally:
            b.kill()
    finally:
        a.kill()


# -- the console's way out ---------------------------------------------------------------------

def test_ctrl_a_keys_on_a_terminal_console(tmp_path):
    """Ctrl-A Ctrl-A sends one Ctrl-A (the test kernel echoes it as ^A), Ctrl-A h lists the
    keys, Ctrl-A x ends the VM cleanly (SHUTDOWN host-ui, terminal restored, exit 0)."""
    sock = tmp_path / "vm.sock"
    vm = PtyVm(stratovirt_cmd(qmp=str(sock)))
    try:
        vm.wait_for(READY.pattern)
        q = RawQmp(str(sock))
        q.execute("qmp_capabilities")
        with vm.cond:
            start = len(vm.buf)
        os.write(vm.master, b"\x01\x01")
        vm.wait_for(r"\^A", start)
        with vm.cond:
            assert b"^A^A" not in vm.buf[start:], "one Ctrl-A reached the guest, not two"
            start = len(vm.buf)
        os.write(vm.master, b"\x01h")
        vm.wait_for(r"C-a x +exit the VM", start)
        # Ctrl-C, Ctrl-D and Ctrl-\ still go to the guest.
        os.write(vm.master, b"\x04\x1c")
        vm.wait_for(r"\^D\^\\", start)
        os.write(vm.master, b"\x01x")
        assert vm.proc.wait(15) == 0
        ev = q.recv()
        assert ev["event"] == "SHUTDOWN" and ev["data"] == {"guest": False, "reason": "host-ui"}, ev
        q.close()
        vm.wait_for(r"terminated \(Ctrl-A x\)", start)
        assert termios.tcgetattr(vm.slave) == vm.saved, "terminal attributes restored"
        assert not sock.exists()
    finally:
        vm.close()


def test_ctrl_a_is_plain_data_when_stdin_is_not_a_terminal(tmp_path):
    """Piped input (scripts, tests) has no escape: Ctrl-A x is two bytes for the guest."""
    vm, _ = boot(stratovirt_cmd())
    try:
        start = vm.send_line("\x01x")
        vm.wait_for(r"\^Ax", 10, start=start)
        vm.wait_for(r"^ERR unknown command", 10)
        assert vm.proc.poll() is None
        assert vm.cmd("ticks")[-1] == "OK"
    finally:
        vm.kill()
