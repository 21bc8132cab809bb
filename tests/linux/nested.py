"""The host side of the real-Linux suite: a nested L1 Linux under QEMU TCG, an agent inside it,
and L2 VMs (stratovirt or QEMU microvm) that the agent starts on L1's /dev/kvm.

    arts = build.build_all()                      # kernels, initramfs, busybox (cached)
    payload = Payload(arts, workdir).build()      # this session's binaries and disks
    with L1(arts, payload, workdir) as l1:
        vm = L2(l1, "boot", stratovirt_argv(...))
        vm.wait_for(r"L2-USERSPACE-OK")
        rc, out = vm.sh("cat /proc/cpuinfo")
        q = RawQmp(vm.qmp_path)                   # the e2e suite's client, through L1

Every wait has a time bound, and every failure carries the tails of L1's serial console, of the
L2's serial console and of the VMM's log (see NestedError).
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from typing import Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
STRATOVIRT = os.path.join(ROOT, "target", "release", "stratovirt")
AGENT = os.path.join(ROOT, "target", "release", "sv-linux-agent")
AGENT_PORT = 7000
# QEMU's user network for the agent: link-local, and never routed anywhere.
L1_NET = "169.254.77.0/24"
L1_HOST = "169.254.77.2"
L1_ADDR = "169.254.77.15"
L1_BOOT_TIMEOUT = 240
# What L2 gets on its command line unless a test says otherwise: a quiet console (every byte
# of serial output costs about 0.35 ms nested).
L2_APPEND = "console=ttyS0 reboot=k panic=1 quiet"
# Paths inside L1.
L1_L2DIR = "/payload/l2"
L1_WORK = "/payload/work"


class NestedError(Exception):
    """Something in L1 or L2 did not behave; the message has the consoles' and logs' tails."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(text: str, n: int = 2500) -> str:
    return text[-n:] if len(text) > n else text


# -- the payload disk ------------------------------------------------------------------------


def _ldd(binary: str) -> list[str]:
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    libs = []
    for line in out.splitlines():
        m = re.search(r"=>\s*(/\S+)", line) or re.match(r"\s*(/\S+)", line)
        if m:
            libs.append(m.group(1))
    return libs


class Payload:
    """The session's disk for L1 (ext4 made with `mkfs.ext4 -d`, no loop mount): a sysroot that
    L1 copies over / (stratovirt, the agent, QEMU and their libraries) and the L2 kernels,
    initramfs and root disk under l2/. L1 mounts it read-write, so work/ is an ext4 scratch area
    (O_DIRECT works there, unlike on L1's tmpfs)."""

    QEMU_FILES = ["qboot.rom", "bios-microvm.bin", "linuxboot_dma.bin", "pvh.bin"]

    def __init__(self, arts: dict, workdir: str, size: str = "2G"):
        self.arts = arts
        self.workdir = workdir
        self.size = size
        self.path = os.path.join(workdir, "payload.img")
        # More binaries for the sysroot: {path in L1: host path}.
        self.extra_binaries: dict[str, str] = {}

    def _install(self, sysroot: str, src: str, dest: Optional[str] = None) -> None:
        dest = dest or src
        target = os.path.join(sysroot, dest.lstrip("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(os.path.realpath(src), target)

    def _install_binary(self, sysroot: str, binary: str, dest: str) -> None:
        self._install(sysroot, binary, dest)
        for lib in _ldd(binary):
            self._install(sysroot, lib)

    def build(self) -> str:
        for b in (STRATOVIRT, AGENT):
            if not os.path.exists(b):
                raise NestedError(f"{b} is missing: build it first (make build; cargo build "
                                  f"--release -p sv-linux-agent)")
        stage = os.path.join(self.workdir, "payload")
        shutil.rmtree(stage, ignore_errors=True)
        sysroot = os.path.join(stage, "sysroot")
        self._install_binary(sysroot, STRATOVIRT, "/usr/bin/stratovirt")
        self._install_binary(sysroot, AGENT, "/usr/bin/sv-linux-agent")
        for dest, src in self.extra_binaries.items():
            self._install_binary(sysroot, src, dest)
        # The static tools L2 has (tools/*.c) serve L1 too: the other end of a NIC test.
        for tool in sorted(glob.glob(os.path.join(self.arts["l2"]["root"], "usr", "bin", "*"))):
            if os.path.isfile(tool) and not os.path.islink(tool):
                self._install(sysroot, tool, f"/usr/bin/{os.path.basename(tool)}")
        # debugfs reads files out of the L2's ext4 images without mounting them.
        self._install_binary(sysroot, shutil.which("debugfs") or "/sbin/debugfs", "/usr/bin/debugfs")
        qemu = shutil.which("qemu-system-x86_64")
        if qemu:
            self._install_binary(sysroot, qemu, "/usr/bin/qemu-system-x86_64")
            for f in self.QEMU_FILES:
                p = os.path.join("/usr/share/qemu", f)
                if os.path.exists(p):
                    self._install(sysroot, p)
        l2 = os.path.join(stage, "l2")
        os.makedirs(l2)
        k = self.arts["kernel"]
        shutil.copy(k["bzimage"], os.path.join(l2, "bzImage"))
        shutil.copy(k["vmlinux"], os.path.join(l2, "vmlinux"))
        shutil.copy(self.arts["l2"]["initramfs"], os.path.join(l2, "initramfs.cpio.gz"))
        mkfs_ext4(self.arts["l2"]["root"], os.path.join(l2, "rootfs.ext4"), "64M")
        os.makedirs(os.path.join(stage, "work"))
        if os.path.exists(self.path):
            os.unlink(self.path)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "payload", "-E", "root_owner=0:0",
                        "-d", stage, self.path, self.size], check=True)
        shutil.rmtree(stage)
        return self.path


def mkfs_ext4(src_dir: str, image: str, size: str) -> None:
    """An ext4 image holding `src_dir`, made without a loop mount."""
    if os.path.exists(image):
        os.unlink(image)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "root_owner=0:0", "-d", src_dir, image, size],
                   check=True, capture_output=True)


def debugfs_cat(image: str, path: str) -> bytes:
    """A file's contents from an ext4 image, read on the host without mounting it."""
    r = subprocess.run(["debugfs", "-R", f"cat {path}", image], capture_output=True)
    if r.returncode != 0:
        raise NestedError(f"debugfs cat {path} in {image}: {r.stderr.decode(errors='replace')}")
    return r.stdout


# -- L1 ----------------------------------------------------------------------------------------


class Console:
    """Collects a byte stream (a console) in a thread; waits for patterns in it."""

    def __init__(self, read, log_path: Optional[str] = None):
        self._read = read
        self._buf = ""
        self._pos = 0
        self._eof = False
        self._cond = threading.Condition()
        self._log = open(log_path, "w") if log_path else None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                data = self._read()
            except OSError:
                data = b""
            with self._cond:
                if not data:
                    self._eof = True
                    self._cond.notify_all()
                    break
                text = data.decode("latin-1").replace("\r", "")
                self._buf += text
                if self._log:
                    self._log.write(text)
                    self._log.flush()
                self._cond.notify_all()

    @property
    def text(self) -> str:
        with self._cond:
            return self._buf

    @property
    def eof(self) -> bool:
        with self._cond:
            return self._eof

    def mark(self) -> int:
        with self._cond:
            return len(self._buf)

    def wait_for(self, pattern, timeout: float, start: Optional[int] = None, what=lambda: ""):
        rx = re.compile(pattern, re.M) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._cond:
            pos = self._pos if start is None else start
            while True:
                end = len(self._buf) if self._eof else self._buf.rfind("\n") + 1
                m = rx.search(self._buf, pos, max(end, pos))
                if m:
                    self._pos = m.end()
                    return m
                if self._eof:
                    raise NestedError(f"the console ended before /{rx.pattern}/ appeared\n{what()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise NestedError(f"/{rx.pattern}/ did not appear within {timeout:.0f} s\n{what()}")
                self._cond.wait(min(left, 0.5))


class L1:
    """The nested L1: QEMU TCG with SVM, booting Debian's cloud kernel with the L1 initramfs
    and the payload disk; its agent is reached on a forwarded localhost port."""

    def __init__(self, arts: dict, payload: str, workdir: str, mem: str = "4G", smp: int = 2):
        self.arts, self.payload, self.workdir = arts, payload, workdir
        self.mem, self.smp = mem, smp
        self.port = _free_port()
        self.proc: Optional[subprocess.Popen] = None
        self.console: Optional[Console] = None
        self._forwards: list[socket.socket] = []
        self.vms: list["L2"] = []
        self.boot_seconds = None
        # Set once the agent missed a reply: failure reports then stop asking it for the VMMs'
        # logs (each question would time out, and report its own failure the same way).
        self.agent_unresponsive = False

    def argv(self) -> list[str]:
        l1 = self.arts["l1"]
        net = (f"user,id=n0,net={L1_NET},host={L1_HOST},dhcpstart=169.254.77.100,"
               f"hostfwd=tcp:127.0.0.1:{self.port}-{L1_ADDR}:{AGENT_PORT}")
        return [
            "qemu-system-x86_64", "-accel", "tcg,thread=multi", "-machine", "pc",
            "-cpu", "max", "-smp", str(self.smp), "-m", self.mem,
            "-kernel", l1["kernel"], "-initrd", l1["initramfs"],
            "-append", "console=ttyS0 panic=-1 mitigations=off quiet",
            "-drive", f"file={self.payload},if=virtio,format=raw,cache=unsafe",
            "-netdev", net, "-device", "virtio-net-pci,netdev=n0,romfile=",
            "-nographic", "-nodefaults", "-no-reboot", "-serial", "stdio",
        ]

    def start(self) -> "L1":
        t0 = time.monotonic()
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        fd = self.proc.stdout.fileno()
        self.console = Console(lambda: os.read(fd, 65536), os.path.join(self.workdir, "l1-serial.log"))
        self.console.wait_for(r"L1-AGENT-READY", L1_BOOT_TIMEOUT, what=self.tails)
        for marker in ("L1-KVM ok", "L1-PAYLOAD ok"):
            if marker not in self.console.text:
                raise NestedError(f"L1 booted without {marker!r}\n{self.tails()}")
        self.boot_seconds = time.monotonic() - t0
        return self

    def restart(self) -> None:
        """Boots a fresh L1 in place of this one, after the emulator left it unable to answer;
        its VMs went with it (and are marked gone, so nothing signals their pids in the new
        L1). Host-side forwards keep working: they reach the new agent on the same port."""
        for vm in self.vms:
            vm._exit = vm._exit or {"exited": False, "rc": None, "signal": None, "lost": True}
        self.vms = []
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.agent_unresponsive = False
        self.start()

    def l0_fault(self) -> Optional[str]:
        """The nested emulator's known fault, if an L2 is in it now: QEMU's TCG emulation of SVM
        (L0) sometimes resumes an L2 vCPU with L1's own state, its rip inside L1's `kvm_amd`
        (right after VMRUN) and its page-table root an L1 address outside the L2's memory, so
        it faults on that walk for ever (a nested page fault at each entry). No VMM can put
        an L2 there. Seen on this host's QEMU 7.2 in about 1 of 20 console-replacement runs;
        see tests/linux/README.md. Traces L1's KVM exits for half a second."""
        t = "/sys/kernel/tracing"
        r = self.exec(f"[ -d {t}/events ] || mount -t tracefs nodev {t}; echo > {t}/trace; "
                      f"echo 1 > {t}/events/kvm/kvm_exit/enable; sleep 0.5; "
                      f"echo 0 > {t}/events/kvm/kvm_exit/enable; grep -m 400 kvm_exit: {t}/trace; "
                      f"echo > {t}/trace; grep '^kvm_amd ' /proc/modules", timeout=20, check=False)
        out = r["out"]
        m = re.search(r"^kvm_amd (\d+) .* (0x[0-9a-f]+)$", out, re.M)
        if not m:
            return None
        size, base = int(m.group(1)), int(m.group(2), 16)
        for e in re.finditer(r"^\s*(\S+) .*kvm_exit: vcpu \d+ reason (\S+) rip (0x[0-9a-f]+)"
                             r"(?: info1 \S+ info2 (0x[0-9a-f]+))?", out, re.M):
            rip = int(e.group(3), 16)
            if base <= rip < base + size:
                return (f"{e.group(1)} exits ({e.group(2)}, info2 {e.group(4)}) at rip {rip:#x}, "
                        f"inside L1's kvm_amd ({base:#x}, {size} bytes): L0 resumed the L2 with "
                        "L1's state")
        return None

    def tails(self) -> str:
        parts = [f"--- L1 serial (tail) ---\n{_tail(self.console.text if self.console else '')}"]
        for vm in self.vms[-2:]:
            parts.append(vm.tails(include_l1=False))
        return "\n".join(parts)

    # -- the agent -------------------------------------------------------------------------

    def _request(self, req: dict, timeout: float) -> tuple[socket.socket, dict, bytes]:
        """Sends a request; returns the socket, the reply and bytes already read past it."""
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        except OSError as e:
            # The tails below would ask the agent again.
            self.agent_unresponsive = True
            raise NestedError(f"cannot reach the L1 agent: {e}\n{self.tails()}") from e
        s.settimeout(timeout)
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        try:
            while b"\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    raise NestedError(f"the L1 agent closed the connection on {req.get('op')}"
                                      f"\n{self.tails()}")
                buf += chunk
        except socket.timeout as e:
            s.close()
            self.agent_unresponsive = True
            raise NestedError(f"the L1 agent did not answer {req} within {timeout:.0f} s"
                              f"\n{self.tails()}") from e
        line, rest = buf.split(b"\n", 1)
        reply = json.loads(line)
        if "error" in reply:
            s.close()
            raise NestedError(f"L1 agent: {req.get('op')}: {reply['error']}")
        return s, reply, rest

    def exec(self, cmd: str, timeout: float = 60, check: bool = True, stdin: Optional[str] = None) -> dict:
        """Runs `sh -c cmd` in L1; returns {rc, out, err}."""
        req = {"op": "exec", "cmd": cmd, "timeout": timeout}
        if stdin is not None:
            req["stdin"] = stdin
        s, r, _ = self._request(req, timeout + 30)
        s.close()
        if r.get("timed_out"):
            raise NestedError(f"L1: {cmd!r} did not finish within {timeout} s\n{self.tails()}")
        if check and r["rc"] != 0:
            raise NestedError(f"L1: {cmd!r} failed (rc {r['rc']}): {r['err'][-2000:]}{r['out'][-1000:]}")
        return r

    def sh(self, cmd: str, timeout: float = 60) -> str:
        """Runs a command in L1 that must succeed; returns its stdout."""
        return self.exec(cmd, timeout)["out"]

    def spawn(self, argv: Sequence[str], stderr: str, env: Optional[dict] = None) -> tuple[int, socket.socket, bytes]:
        s, r, rest = self._request({"op": "spawn", "argv": list(argv), "stderr": stderr,
                                    "env": env or {}}, 30)
        s.settimeout(None)
        return r["pid"], s, rest

    def wait(self, pid: int, timeout: float) -> Optional[dict]:
        s, r, _ = self._request({"op": "wait", "pid": pid, "timeout": timeout}, timeout + 30)
        s.close()
        return r if r.get("exited") else None

    def signal(self, pid: int, sig: int) -> None:
        s, _, _ = self._request({"op": "signal", "pid": pid, "sig": sig}, 30)
        s.close()

    def connect(self, unix: Optional[str] = None, tcp: Optional[str] = None,
                timeout: float = 10) -> tuple[socket.socket, bytes]:
        req = {"op": "connect", "timeout": timeout}
        req.update({"unix": unix} if unix else {"tcp": tcp})
        s, _, rest = self._request(req, timeout + 30)
        s.settimeout(None)
        return s, rest

    def get(self, path: str, timeout: float = 120) -> bytes:
        s, r, data = self._request({"op": "get", "path": path}, timeout)
        with s:
            while len(data) < r["size"]:
                chunk = s.recv(1 << 20)
                if not chunk:
                    raise NestedError(f"L1: {path}: got {len(data)} of {r['size']} bytes")
                data += chunk
        return data

    def put(self, path: str, data: bytes, mode: int = 0o644, timeout: float = 120) -> None:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        with s:
            s.sendall(json.dumps({"op": "put", "path": path, "size": len(data), "mode": mode}).encode()
                      + b"\n" + data)
            reply = json.loads(s.makefile("rb").readline())
        if "error" in reply:
            raise NestedError(f"L1 agent: put {path}: {reply['error']}")

    def forward_unix(self, l1_path: str, host_path: str, connect_timeout: float = 10) -> str:
        """A Unix socket on the host whose every connection is relayed to `l1_path` in L1, so
        host clients (the e2e suite's QMP client) talk to an L2's sockets unchanged."""
        if os.path.exists(host_path):
            os.unlink(host_path)
        lsock = socket.socket(socket.AF_UNIX)
        lsock.bind(host_path)
        lsock.listen(16)
        self._forwards.append(lsock)

        def accept_loop():
            while True:
                try:
                    c, _ = lsock.accept()
                except OSError:
                    return
                threading.Thread(target=self._relay, args=(c, l1_path, connect_timeout),
                                 daemon=True).start()

        threading.Thread(target=accept_loop, daemon=True).start()
        return host_path

    def _relay(self, client: socket.socket, l1_path: str, timeout: float) -> None:
        try:
            remote, rest = self.connect(unix=l1_path, timeout=timeout)
        except NestedError:
            client.close()
            return
        if rest:
            client.sendall(rest)

        def pump(a: socket.socket, b: socket.socket):
            try:
                while True:
                    d = a.recv(65536)
                    if not d:
                        break
                    b.sendall(d)
            except OSError:
                pass
            try:
                b.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        t = threading.Thread(target=pump, args=(client, remote), daemon=True)
        t.start()
        pump(remote, client)
        t.join(timeout=5)
        client.close()
        remote.close()

    def close(self) -> None:
        for vm in self.vms:
            vm.kill()
        for f in self._forwards:
            f.close()
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def __enter__(self) -> "L1":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


# -- L2 ----------------------------------------------------------------------------------------

_tokens = itertools.count(1)


class L2:
    """A VMM process in L1 (stratovirt, or QEMU for the benchmark) whose stdio is the L2's
    serial console, streamed to the host. `sh` runs a command in the L2's shell (l2/init)."""

    def __init__(self, l1: L1, name: str, argv: Sequence[str], qmp: Optional[str] = None,
                 log: Optional[str] = None, env: Optional[dict] = None):
        self.l1, self.name = l1, name
        self.dir = f"/run/vms/{name}"
        l1.sh(f"rm -rf {self.dir} && mkdir -p {self.dir}")
        self.stderr_path = f"{self.dir}/stderr"
        self.log_path = log
        self.started = time.monotonic()
        self.pid, self.sock, rest = l1.spawn(argv, self.stderr_path, env)
        self._pending = rest
        self.console = Console(self._read, os.path.join(l1.workdir, f"l2-{name}-serial.log"))
        self.qmp_path = None
        if qmp:
            self.qmp_path = l1.forward_unix(qmp, os.path.join(l1.workdir, f"{name}.qmp"))
        self._exit: Optional[dict] = None
        l1.vms.append(self)

    def _read(self) -> bytes:
        if self._pending:
            d, self._pending = self._pending, b""
            return d
        return self.sock.recv(65536)

    def tails(self, include_l1: bool = True) -> str:
        parts = []
        if include_l1:
            parts.append(f"--- L1 serial (tail) ---\n{_tail(self.l1.console.text)}")
        parts.append(f"--- L2 {self.name} serial (tail) ---\n{_tail(self.console.text)}")
        for what, path in (("stderr", self.stderr_path), ("log", self.log_path)):
            if not path:
                continue
            if self.l1.agent_unresponsive:
                parts.append(f"--- L2 {self.name} VMM {what}: not read (the L1 agent stopped answering) ---")
                continue
            try:
                r = self.l1.exec(f"tail -c 3000 {path}", timeout=10, check=False)
                parts.append(f"--- L2 {self.name} VMM {what} ({path}, tail) ---\n{r['out']}")
            except NestedError as e:
                parts.append(f"--- L2 {self.name} VMM {what}: unavailable ({e}) ---")
        if not self.l1.agent_unresponsive:
            parts.append(self._fate())
        return "\n".join(parts)

    def _fate(self) -> str:
        """Whether the VMM still runs; if it ended, its status and what L1's kernel said of it
        (the OOM killer, a fault, a seccomp kill), which its own stderr cannot."""
        head = f"--- L2 {self.name} VMM (pid {self.pid})"
        try:
            r = self._exit or self.l1.wait(self.pid, 1)
        except NestedError as e:
            return f"{head}: status unavailable ({e}) ---"
        if r is None:
            return f"{head}: still running ---"
        self._exit = r
        try:
            k = self.l1.exec("dmesg | grep -i -E 'oom|killed process|segfault|traps:|type=1326|"
                             f"general protection|\\[{self.pid}\\]' | tail -8",
                             timeout=10, check=False)["out"]
        except NestedError as e:
            k = f"unavailable ({e})"
        return f"{head}: exited, rc {r.get('rc')}, signal {r.get('signal')}; L1's kernel log ---\n{k}"

    def wait_for(self, pattern, timeout: float = 120, start: Optional[int] = None):
        return self.console.wait_for(pattern, timeout, start, what=self.tails)

    def wait_userspace(self, timeout: float = 180) -> float:
        """Waits for L2-USERSPACE-OK; returns seconds since the VMM was spawned."""
        self.wait_for(r"L2-USERSPACE-OK", timeout)
        return time.monotonic() - self.started

    def send(self, data: str) -> None:
        self.sock.sendall(data.encode("latin-1"))

    def sh(self, cmd: str, timeout: float = 60, check: bool = True) -> tuple[int, str]:
        """Runs one shell line in L2 (stdout and stderr together); returns (rc, output)."""
        if "\n" in cmd or len(cmd) > 3500:
            raise ValueError("L2.sh takes one line of at most 3500 characters")
        token = f"T{next(_tokens)}"
        start = self.console.mark()
        # The marker starts on a line of its own even when the output has no final newline;
        # that extra newline is taken off again below.
        self.send(f"{{ {cmd} ; }} 2>&1; printf '\\n@@RC=%d %s\\n' $? {token}\n")
        m = self.wait_for(rf"^@@RC=(\d+) {token}$", timeout, start=start)
        out = self.console.text[start:m.start()]
        out = out[:-1] if out.endswith("\n") else out
        rc = int(m.group(1))
        if check and rc != 0:
            raise NestedError(f"L2 {self.name}: {cmd!r} failed (rc {rc}):\n{out[-2000:]}\n{self.tails()}")
        return rc, out

    def out(self, cmd: str, timeout: float = 60) -> str:
        """Output of a command that must succeed, stripped."""
        return self.sh(cmd, timeout)[1].strip()

    def wait_exit(self, timeout: float = 60) -> dict:
        """Waits for the VMM to exit; returns {rc, signal}."""
        if self._exit is None:
            r = self.l1.wait(self.pid, timeout)
            if r is None:
                raise NestedError(f"L2 {self.name}: the VMM did not exit within {timeout} s\n{self.tails()}")
            self._exit = r
        return self._exit

    def kill(self) -> None:
        # An L1 that stopped answering cannot signal it (each try would wait for the timeout).
        if self._exit is None and not self.l1.agent_unresponsive:
            try:
                self.l1.signal(self.pid, 9)
                self.wait_exit(30)
            except NestedError:
                pass
        try:
            self.sock.close()
        except OSError:
            pass


def stratovirt_argv(kernel: str = f"{L1_L2DIR}/vmlinux", append: str = L2_APPEND,
                    initrd: Optional[str] = f"{L1_L2DIR}/initramfs.cpio.gz", smp: int = 1,
                    mem: str = "256M", qmp: Optional[str] = None, extra: Sequence[str] = ()) -> list[str]:
    argv = ["/usr/bin/stratovirt", "-kernel", kernel, "-append", append, "-smp", str(smp),
            "-m", mem, "-serial", "stdio"]
    if initrd:
        argv += ["-initrd", initrd]
    if qmp:
        argv += ["-qmp", f"unix:{qmp},server,nowait"]
    return argv + list(extra)
