"""The virtio console with a real Linux guest: with console=hvc0 the kernel's messages reach the
socket, a shell on hvc0 answers commands typed into it, 10 MiB written by the guest arrive
intact through a slow reader without the VMM's memory growing, output written while no client
is connected is there for the next one (the last 64 KiB), and a second client replaces the
first at a byte boundary. Host clients reach the console socket inside L1 through
`L1.forward_unix`."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import threading
import time

from nested import L2_APPEND, NestedError, stratovirt_argv

BUFFER = 64 * 1024  # the console's output buffer
GRACE = 0.1  # how long a new client waits before it replaces the current one
HVC_APPEND = "console=hvc0 reboot=k panic=1"


class Client:
    """A host client of an L2's console socket (through L1's relay); a thread collects what
    arrives. `pace` makes it a slow reader: that many bytes per read, then a pause."""

    def __init__(self, path: str, pace: tuple[int, float] | None = None):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.data = bytearray()
        self.eof = False
        self.pace = pace
        self.cond = threading.Condition()
        self.reading = threading.Event()
        self.reading.set()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        size, pause = self.pace or (65536, 0)
        while True:
            self.reading.wait()
            try:
                chunk = self.sock.recv(size)
            except OSError:
                chunk = b""
            with self.cond:
                if not chunk:
                    self.eof = True
                    self.cond.notify_all()
                    return
                self.data += chunk
                self.cond.notify_all()
            if pause:
                time.sleep(pause)

    def wait(self, pred, timeout: float, what: str):
        end = time.monotonic() + timeout
        with self.cond:
            while not pred(bytes(self.data)):
                left = end - time.monotonic()
                if left <= 0 or self.eof:
                    raise NestedError(f"console client: {what} did not arrive within {timeout:.0f} s; "
                                      f"got {len(self.data)} bytes, last: {bytes(self.data[-300:])!r}")
                self.cond.wait(min(left, 0.5))
            return bytes(self.data)

    def wait_eof(self, timeout: float) -> bytes:
        end = time.monotonic() + timeout
        with self.cond:
            while not self.eof:
                left = end - time.monotonic()
                if left <= 0:
                    raise NestedError(f"console client: no end of stream within {timeout:.0f} s")
                self.cond.wait(min(left, 0.5))
            return bytes(self.data)

    def send(self, data: bytes):
        self.sock.sendall(data)

    def close(self):
        self.sock.close()


def console_vm(vms, l1, name: str, append: str, smp: int = 1, kata: bool = False):
    """Starts an L2 with a console socket; returns (vm, host path of the socket). The host
    may connect before the VMM has created the socket: the relay waits for it."""
    sock = f"/run/vms/{name}/console.sock"
    if kata:
        con = ["-device", "virtio-serial-device,id=virtio-serial0",
               "-chardev", f"socket,id=charconsole0,path={sock},server,nowait",
               "-device", "virtconsole,chardev=charconsole0,id=virtio-console0,nr=0"]
    else:
        con = ["-chardev", f"socket,id=con0,path={sock},server,nowait",
               "-device", "virtconsole,chardev=con0"]
    log = f"/run/vms/{name}/vmm.log"
    vm = vms.start(name, stratovirt_argv(append=append, smp=smp, extra=con + ["-D", log]), log=log)
    host = l1.forward_unix(sock, os.path.join(l1.workdir, f"{name}.console"), connect_timeout=60)
    return vm, host


def vmm_rss_kib(l1, pid: int, guest_mib: int = 256) -> int:
    """The VMM's resident memory without guest RAM (mappings of half the guest's size or more)."""
    total = size = 0
    for line in l1.sh(f"cat /proc/{pid}/smaps").splitlines():
        if line.startswith("Size:"):
            size = int(line.split()[1])
        elif line.startswith("Rss:") and size < guest_mib * 1024 // 2:
            total += int(line.split()[1])
    return total


def sha256_in_l2(vm, path: str) -> str:
    return vm.out(f"sha256sum {path}").split()[0]


# Writes a file to hvc0 unchanged: raw mode on the open that writes (hvc0's settings go back to
# the defaults whenever nothing holds it open).
RAW_CAT = "sh -c 'stty raw -echo && cat {}' <>/dev/hvc0 >&0"


def raw_write(vm, path: str) -> str:
    """Starts writing `path` to hvc0 in the background; its end prints a line on the serial
    console, whose pattern is returned."""
    token = f"WRITER-DONE-{os.path.basename(path)}"
    vm.sh(f"({RAW_CAT.format(path)}; echo {token} rc=$?) & true")
    return rf"^{token} rc=0$"


def test_kernel_messages_and_a_shell_on_hvc0(l1, vms):
    vm, host = console_vm(vms, l1, "hvc-shell", HVC_APPEND + " hvcshell=1")
    vm.wait_userspace()
    assert "Linux version" not in vm.console.text, "the serial port carries no kernel messages"
    assert "hvc0" in vm.out("cat /proc/consoles")
    # Nobody was connected during the boot: the first client gets the boot log, every line the
    # kernel wrote to hvc0 (Linux's hvc console prints only once the virtio device is probed;
    # what came before is in dmesg only).
    c = Client(host)
    end = b"Run /init as init process\r\n"
    log = c.wait(lambda d: end in d, 120, "the end of the boot log")
    log = log[:log.index(end) + len(end)]  # the hvc0 shell's prompt follows
    assert len(log) < BUFFER
    got = log.decode().split("\r\n")
    assert got[-1] == "" and got[0].startswith("["), log[:200]
    got = got[:-1]
    dmesg = vm.out("dmesg").splitlines()
    assert got[0] in dmesg, got[0]
    first = dmesg.index(got[0])
    assert got == dmesg[first:first + len(got)], "the lines the kernel wrote, whole and in order"
    assert "virtio_console" in vm.out("ls /sys/bus/virtio/drivers")
    # A kernel message now (init let only emergencies through) arrives at once.
    mark = len(c.data)
    vm.sh("echo '<0>a-live-kernel-message' > /dev/kmsg")
    c.wait(lambda d: b"a-live-kernel-message" in d[mark:], 60, "the kernel message")
    # The shell on hvc0 (started by l2/init for hvcshell=1) answers what the client types.
    mark = len(c.data)
    c.send(b"echo MARK-$((6*7)) $(cat /sys/class/tty/hvc0/dev)\n")
    out = c.wait(lambda d: re.search(rb"MARK-42 \d+:\d+", d[mark:]) is not None, 60, "the shell's answer")
    assert b"MARK-$((6*7))" in out[mark:], "the tty echoed the command"
    mark = len(c.data)
    c.send(b"tty; uname -r\n")
    c.wait(lambda d: b"/dev/hvc0" in d[mark:] and re.search(rb"\n6\.1\.", d[mark:]) is not None,
           60, "tty and uname")
    c.close()


def test_output_with_no_client_is_there_for_the_next_one(l1, vms):
    vm, host = console_vm(vms, l1, "hvc-backlog", HVC_APPEND)
    vm.wait_userspace()
    # 300000 bytes with nobody connected (after the boot log): the guest does not wait, and
    # the first client gets the last 64 KiB of them, exactly.
    vm.sh("head -c 300000 /dev/urandom > /tmp/p")
    want = vm.out("tail -c 65536 /tmp/p | sha256sum").split()[0]
    t0 = time.monotonic()
    vm.sh(RAW_CAT.format("/tmp/p"), timeout=120)
    written = time.monotonic() - t0
    c = Client(host)
    got = c.wait(lambda d: len(d) >= BUFFER, 60, "the buffered output")
    time.sleep(2)
    assert len(c.data) == BUFFER, f"{len(c.data)} bytes: the buffer holds the last 64 KiB only"
    assert hashlib.sha256(got).hexdigest() == want, "the last 64 KiB, exactly"
    assert written < 60, f"writing with nobody connected took {written:.1f} s"
    c.close()


def test_ten_mib_arrive_intact_through_a_slow_reader(l1, vms):
    vm, host = console_vm(vms, l1, "hvc-slow", L2_APPEND, smp=2)
    vm.wait_userspace()
    n = 10 << 20
    vm.sh(f"head -c {n} /dev/urandom > /tmp/blob", timeout=120)
    want = sha256_in_l2(vm, "/tmp/blob")
    # About 1.6 MB/s at most: slower than the guest writes, so the guest waits for it.
    c = Client(host, pace=(16384, 0.01))
    time.sleep(GRACE * 10)
    before = vmm_rss_kib(l1, vm.pid)
    done = raw_write(vm, "/tmp/blob")
    # Measured in a CI run: 8.8 MiB in the first 14 s. A bound of 180 s each keeps a stalled
    # guest from holding the suite for 20 minutes.
    c.wait(lambda d: len(d) >= n // 2, 180, "half of the 10 MiB")
    during = vmm_rss_kib(l1, vm.pid)
    got = c.wait(lambda d: len(d) >= n, 180, "10 MiB")
    vm.wait_for(done, 120)
    assert len(got) == n
    assert hashlib.sha256(got).hexdigest() == want, "every byte, in order"
    assert during - before < 4096, f"the VMM grew by {during - before} KiB with a slow reader"
    c.close()


# Writes a file to hvc0 again and again until /tmp/stop exists, then says how many times.
LOOP_CAT = ("sh -c 'stty raw -echo && i=0 && while [ ! -e /tmp/stop ]; do cat {0} || exit 1; "
            "i=$((i+1)); done; echo $i >/tmp/copies' <>/dev/hvc0 >&0")


def vmm_log_has(l1, vm_name: str, text: str, timeout: float) -> None:
    """Waits until the VMM's log of `vm_name` holds `text`."""
    end = time.monotonic() + timeout
    while l1.exec(f"grep -qF '{text}' /run/vms/{vm_name}/vmm.log", check=False)["rc"] != 0:
        if time.monotonic() > end:
            raise NestedError(f"the VMM did not log {text!r} within {timeout:.0f} s")
        time.sleep(0.2)


def test_a_second_client_replaces_the_first_with_whole_bytes(l1, vms):
    vm, host = console_vm(vms, l1, "hvc-replace", L2_APPEND, kata=True)
    vm.wait_userspace()
    n = 1 << 20
    vm.sh(f"head -c {n} /dev/urandom > /tmp/s", timeout=120)
    want = sha256_in_l2(vm, "/tmp/s")
    a = Client(host)
    vmm_log_has(l1, "hvc-replace", "console: client connected", 60)
    # The guest writes the file over and over while the second client takes over, so the
    # replacement falls in the middle of the stream whatever the relays buffer.
    vm.sh(f"({LOOP_CAT.format('/tmp/s')}; echo WRITER-DONE rc=$? copies=$(cat /tmp/copies)) & true")
    a.wait(lambda d: len(d) >= 512 << 10, 120, "the first 512 KiB")
    b = Client(host)
    vmm_log_has(l1, "hvc-replace", "console: a new client replaced the previous one", 60)
    # The VMM dropped the first client: it gets the end of its stream, what was already its own.
    from_a = a.wait_eof(120)
    b.wait(lambda d: len(d) >= 512 << 10, 120,
           f"512 KiB for the second client (the first had {len(from_a)} bytes)")
    vm.sh("touch /tmp/stop")
    copies = int(vm.wait_for(r"^WRITER-DONE rc=0 copies=(\d+)$", 120).group(1))
    total = copies * n
    from_b = b.wait(lambda d: len(from_a) + len(d) >= total, 300,
                    f"the rest of {copies} copies (the first client had {len(from_a)} bytes)")
    time.sleep(1)
    assert len(from_a) + len(b.data) == total, (len(from_a), len(b.data), copies)
    stream = from_a + from_b
    for i in range(copies):
        assert hashlib.sha256(stream[i * n:(i + 1) * n]).hexdigest() == want, \
            f"copy {i} of {copies} (the first client had {len(from_a)} bytes): a's bytes, then b's"
    assert len(from_a) >= 512 << 10 and len(from_b) >= 512 << 10
    b.close()
