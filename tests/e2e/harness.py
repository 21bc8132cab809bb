"""Reusable helpers for end-to-end tests that drive a VM over its serial port.

`Vm` runs any command line whose serial console is on stdin/stdout (QEMU with
`-serial stdio`, our `stratovirt ... -serial stdio`), collects the output in a
background thread and talks to the test kernel's shell (see
docs/testkernel.md):

    vm = Vm(qemu_microvm_cmd(elf, cpus=2, mem_mib=128))
    m = vm.wait_for(r"READY cpus=(\\d+) mem=(\\d+) virtio=(\\d+)", timeout=30)
    lines = vm.cmd("ticks")          # ["ticks=42", "OK"]
    vm.send_line("poweroff"); vm.wait_exit(10)

Everything fails loudly: timeouts raise `VmTimeout` with the tail of the
output, a missing /dev/kvm or QEMU raises `MissingRequirement`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from typing import Iterable, Optional, Sequence

# Guest code runs through KVM's instruction emulator on this project's
# machines (PVM), so be generous; see docs/testkernel.md.
DEFAULT_TIMEOUT = 30.0

# The CPU model of every QEMU reference run under KVM. `host` alone dies on AMD hosts of this
# project ("failed to set MSR 0x10a": KVM there lists IA32_ARCH_CAPABILITIES but refuses to set
# it); without that one flag the model is still the host's, and the flag exists on Intel and AMD
# alike (on Intel it only hides speculation-control bits the test kernel never reads).
QEMU_KVM_CPU = "host,-arch-capabilities"

REPLY_END = re.compile(r"^(OK|ERR(?: [^\r\n]*)?)\r?$", re.M)
PROMPT = "> "


class VmError(Exception):
    """The VM did not behave as expected."""


class VmTimeout(VmError):
    """A wait ran out of time."""


class MissingRequirement(VmError):
    """Something the test needs (KVM, QEMU) is not available."""


def require_kvm() -> None:
    """Raises MissingRequirement unless /dev/kvm can be opened read-write."""
    if not os.path.exists("/dev/kvm"):
        raise MissingRequirement("/dev/kvm does not exist: KVM is required for these tests")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        raise MissingRequirement("/dev/kvm is not readable and writable by this user")


def require_binary(name: str, hint: str = "") -> str:
    """Path of executable `name`, or MissingRequirement."""
    path = shutil.which(name)
    if path is None:
        raise MissingRequirement(f"{name} is not installed{': ' + hint if hint else ''}")
    return path


def qemu_microvm_cmd(
    kernel_elf: str,
    cpus: int = 1,
    mem_mib: int = 128,
    extra: Sequence[str] = (),
    machine_opts: str = "",
    append: Optional[str] = None,
) -> list[str]:
    """QEMU microvm command line booting `kernel_elf` (PVH) with the serial
    port on stdio. `machine_opts` is appended to `-M microvm` (e.g.
    "acpi=off"); `-no-reboot` makes a guest reset end QEMU."""
    require_kvm()
    qemu = require_binary("qemu-system-x86_64", "apt-get install qemu-system-x86")
    machine = "microvm" + ("," + machine_opts if machine_opts else "")
    cmd = [
        qemu,
        "-M", machine,
        "-enable-kvm",
        "-cpu", QEMU_KVM_CPU,
        "-nodefaults",
        "-no-user-config",
        "-nographic",
        "-serial", "stdio",
        "-no-reboot",
        "-kernel", kernel_elf,
        "-smp", str(cpus),
        "-m", str(mem_mib),
    ]
    if append is not None:
        cmd += ["-append", append]
    return cmd + list(extra)


class Vm:
    """A VM process with its serial console on stdin/stdout."""

    def __init__(self, argv: Sequence[str], env: Optional[dict] = None, cwd: Optional[str] = None,
                 pass_fds: Sequence[int] = ()):
        self.argv = list(argv)
        self.started = time.monotonic()
        self._buf = ""  # all serial output so far (latin-1 decoded)
        self._pos = 0  # where the next wait_for starts searching
        self._last_cmd = 0  # output position when the last line was sent
        self._cond = threading.Condition()
        self._eof = False
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
            pass_fds=tuple(pass_fds),
        )
        self._stderr = b""
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        self._err_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._err_reader.start()

    # -- output collection -------------------------------------------------

    def _read_stdout(self) -> None:
        fd = self.proc.stdout.fileno()
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            with self._cond:
                if not data:
                    self._eof = True
                    self._cond.notify_all()
                    return
                self._buf += data.decode("latin-1")
                self._cond.notify_all()

    def _read_stderr(self) -> None:
        fd = self.proc.stderr.fileno()
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            if not data:
                return
            with self._cond:
                self._stderr += data

    @property
    def output(self) -> str:
        """Everything the serial port printed so far."""
        with self._cond:
            return self._buf

    @property
    def stderr(self) -> str:
        """What the VMM printed on stderr so far."""
        with self._cond:
            return self._stderr.decode("utf-8", "replace")

    def _tail(self, n: int = 1500) -> str:
        out = self.output[-n:]
        err = self.stderr[-n:]
        return f"--- serial tail ---\n{out}\n--- stderr tail ---\n{err}"

    def mark(self) -> int:
        """Current end of the output; pass as `start` to wait_for."""
        with self._cond:
            return len(self._buf)

    def wait_for(self, pattern: str | re.Pattern, timeout: float = DEFAULT_TIMEOUT,
                 start: Optional[int] = None, partial: bool = False) -> re.Match:
        """Waits until `pattern` (a regex, compiled with re.M) appears in the
        output after `start` (default: after the previous wait_for/cmd match)
        and returns the match; later waits start after it.

        Only complete lines are searched, so `\\d+` or `.*` never match half
        a line that is still arriving; `partial=True` also searches the
        unfinished last line (e.g. for the `> ` prompt)."""
        rx = re.compile(pattern, re.M) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._cond:
            pos = self._pos if start is None else start
            while True:
                end = len(self._buf) if partial or self._eof else self._buf.rfind("\n") + 1
                m = rx.search(self._buf, pos, max(end, pos))
                if m:
                    self._pos = m.end()
                    return m
                if self._eof:
                    raise VmError(f"VM output ended (exit code {self.proc.poll()}) "
                                  f"before /{rx.pattern}/ appeared\n{self._tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise VmTimeout(f"/{rx.pattern}/ did not appear within {timeout}s\n{self._tail()}")
                self._cond.wait(min(left, 0.5))

    # -- input -------------------------------------------------------------

    def send(self, data: str | bytes, char_delay: float = 0.0) -> None:
        """Writes to the serial port (stdin). With `char_delay`, one byte at
        a time (for VMMs without receive flow control)."""
        raw = data.encode("latin-1") if isinstance(data, str) else data
        try:
            if char_delay <= 0:
                self.proc.stdin.write(raw)
                self.proc.stdin.flush()
            else:
                for b in raw:
                    self.proc.stdin.write(bytes([b]))
                    self.proc.stdin.flush()
                    time.sleep(char_delay)
        except BrokenPipeError as e:
            raise VmError(f"VM stdin closed (exit code {self.proc.poll()})\n{self._tail()}") from e

    def send_line(self, line: str, char_delay: float = 0.0) -> int:
        """Sends `line` + CR (one shell command) without waiting for the
        reply; returns the output position before it (see
        output_since_last_command)."""
        start = self.mark()
        self._last_cmd = start
        self.send(line + "\r", char_delay=char_delay)
        return start

    def output_since_last_command(self) -> str:
        """Output printed since the last send_line()/cmd() started."""
        with self._cond:
            return self._buf[self._last_cmd:]

    def cmd(self, line: str, timeout: float = DEFAULT_TIMEOUT, char_delay: float = 0.0) -> list[str]:
        """Sends a shell command (line + CR) and returns the reply lines up to
        and including the final `OK` / `ERR ...`, without the echoed command
        and without the prompt."""
        start = self.send_line(line, char_delay=char_delay)
        m = self.wait_for(REPLY_END, timeout=timeout, start=start)
        text = self.output[start:m.end()]
        # Output since `start` may begin with the tail of earlier output (the
        # prompt, or the end of the READY line); the reply follows the echo,
        # which is the line (as far as the guest kept it) behind the prompt.
        lines = [l.rstrip("\r") for l in text.split("\n")]
        typed = line.strip()
        for i, l in enumerate(lines[:-1]):
            while l.startswith(PROMPT):
                l = l[len(PROMPT):]
            l = l.strip()
            if l == typed or (l and typed.startswith(l)):
                return lines[i + 1:]
        raise VmError(f"the echo of {line!r} is missing\n{self._tail()}")

    def cmd_ok(self, line: str, timeout: float = DEFAULT_TIMEOUT) -> list[str]:
        """Like cmd() but raises unless the reply ends with OK; returns the
        lines before OK."""
        reply = self.cmd(line, timeout=timeout)
        if reply[-1] != "OK":
            raise VmError(f"{line!r} failed: {reply}")
        return reply[:-1]

    # -- lifetime ----------------------------------------------------------

    def wait_exit(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        """Waits for the process to exit; returns its exit code."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise VmTimeout(f"VM did not exit within {timeout}s\n{self._tail()}") from e

    def kill(self) -> None:
        """Stops the process (SIGKILL) if it is still running and reaps it."""
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass

    def __enter__(self) -> "Vm":
        return self

    def __exit__(self, *exc) -> None:
        self.kill()


def parse_kv(lines: Iterable[str]) -> dict[str, str]:
    """`key=value` pairs from reply lines (first `=` splits; other lines are
    ignored)."""
    out = {}
    for line in lines:
        for word in line.split():
            if "=" in word:
                k, v = word.split("=", 1)
                out.setdefault(k, v)
    return out
