#!/usr/bin/env python3
"""Side-by-side benchmarks: stratovirt vs QEMU microvm on the same guest, same machine, one run.

Boot: process spawn to the guest's READY line, and VMM resident memory after READY excluding
guest RAM. QMP: query-status round trips on one connection and with 10 concurrent clients.
Block I/O: the test kernel's `blk bench` (4 KiB reads and writes at queue depth 1 and 32, O_DIRECT
and page cache): requests per second and VMM CPU time per request (`--blk-only` runs just that).
Network: the test kernel's `net bench` on a TAP (in a network namespace the benchmark makes),
frames of 1514 and 60 bytes guest to host and host to guest: Mbit/s, packets per second and the
VMM's own CPU per packet (`--net-only` runs just that). vhost-net needs /dev/vhost-net, which
only the real-Linux suite's L1 has: `make bench-linux` compares it there.
Console: the test kernel's `con bench` (guest to host, 4 KiB and 64-byte buffers) against QEMU's
virtconsole on a socket chardev: bytes per second that reach the client, bytes lost, notifications
per MiB (`--console-only` runs just that).
Balloon: 1 GiB into and out of the balloon of the test kernel's driver (tests/bench/balloon.py;
`--balloon-only` runs just that).
Runs alternate between the two VMMs so drift hits both alike. Prints medians and ratios.
"""
import argparse
import json
import multiprocessing
import os
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STRATOVIRT = os.path.join(ROOT, "target/release/stratovirt")
KERNEL_ELF = os.path.join(ROOT, "target/guest/testkernel.elf")
QEMU = "qemu-system-x86_64"
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from harness import QEMU_KVM_CPU  # noqa: E402  (one CPU model for every QEMU reference run)
import netns  # noqa: E402  (network namespaces, TAPs, raw frames)


def stratovirt_cmd(cpus, mem, qmp=None):
    cmd = [STRATOVIRT, "-kernel", KERNEL_ELF, "-append", "console=ttyS0",
           "-smp", str(cpus), "-m", str(mem), "-serial", "stdio"]
    if qmp:
        cmd += ["-qmp", f"unix:{qmp},server,nowait"]
    return cmd


def qemu_cmd(cpus, mem, qmp=None):
    # debug-threads names the vCPU threads "CPU N/KVM", so per-thread CPU can tell them apart.
    cmd = [QEMU, "-name", "bench,debug-threads=on", "-M", "microvm", "-enable-kvm", "-cpu", QEMU_KVM_CPU,
           "-nodefaults",
           "-no-user-config", "-nographic", "-no-reboot", "-serial", "stdio",
           "-kernel", KERNEL_ELF, "-append", "console=ttyS0",
           "-smp", str(cpus), "-m", str(mem)]
    if qmp:
        cmd += ["-qmp", f"unix:{qmp},server,nowait"]
    return cmd


def env():
    e = dict(os.environ)
    e.setdefault("STRATOVIRT_LOG_LEVEL", "off")
    return e


def boot_until_ready(cmd, timeout=60):
    """Spawns `cmd`, returns (process, seconds to READY)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, env=env())
    buf = b""
    deadline = t0 + timeout
    while b"READY" not in buf or b"\n" not in buf[buf.index(b"READY"):]:
        left = deadline - time.perf_counter()
        if left <= 0:
            p.kill()
            raise RuntimeError(f"no READY from {cmd[0]} within {timeout}s: {buf[-300:]!r}")
        r, _, _ = select.select([p.stdout], [], [], left)
        if r:
            chunk = os.read(p.stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError(f"{cmd[0]} exited before READY: {buf[-300:]!r}")
            buf += chunk
    return p, time.perf_counter() - t0


def vmm_rss_kib(pid, guest_mem_mib):
    """Resident memory of the process minus its guest RAM mappings (any mapping at least half
    the guest's RAM size)."""
    total = 0
    size = 0
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if line.startswith("Size:"):
                size = int(line.split()[1])
            elif line.startswith("Rss:"):
                rss = int(line.split()[1])
                if size < guest_mem_mib * 1024 // 2:
                    total += rss
    return total


def stop(p):
    p.kill()
    p.wait()


def qemu_six_disks_cmd(cpus, mem, images):
    """QEMU microvm with six virtio-blk devices (modern transport, named on the kernel command
    line), so its guest probes the same six block devices as under stratovirt, whose six disk
    slots exist from boot."""
    cmd = qemu_cmd(cpus, mem)
    cmd[cmd.index("microvm")] = "microvm,acpi=off"
    cmd += ["-global", "virtio-mmio.force-legacy=false"]
    for i, img in enumerate(images):
        cmd += ["-drive", f"id=d{i},file={img},format=raw,if=none",
                "-device", f"virtio-blk-device,drive=d{i}"]
    return cmd


def bench_boot(runs, cpus, mem):
    res = {"stratovirt": {"boot": [], "rss": []}, "qemu": {"boot": [], "rss": []}}
    scratch = tempfile.mkdtemp(prefix="sv-bench-")
    images = []
    for i in range(6):
        images.append(os.path.join(scratch, f"d{i}.img"))
        with open(images[-1], "wb") as f:
            f.truncate(1 << 20)
    builds = (("stratovirt", stratovirt_cmd),
              ("qemu", lambda c, m: qemu_six_disks_cmd(c, m, images)))
    try:
        for i in range(runs):
            for name, build in builds:
                p, t = boot_until_ready(build(cpus, mem))
                time.sleep(0.2)
                res[name]["boot"].append(t)
                res[name]["rss"].append(vmm_rss_kib(p.pid, mem))
                stop(p)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return res


class Qmp:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(path)
        self.f = self.s.makefile("rwb", buffering=0)
        self.f.readline()
        self.call("qmp_capabilities")

    def call(self, cmd):
        self.f.write(json.dumps({"execute": cmd}).encode() + b"\n")
        while True:
            line = self.f.readline()
            if not line:
                raise RuntimeError("QMP connection closed")
            if b'"return"' in line or b'"error"' in line:
                return line

    def close(self):
        self.s.close()


def wait_socket(path, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        if os.path.exists(path):
            return
        time.sleep(0.01)
    raise RuntimeError(f"no QMP socket at {path}")


def qmp_latencies(path, n):
    c = Qmp(path)
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        c.call("query-status")
        lat.append(time.perf_counter() - t)
    c.close()
    return lat


def bench_qmp(name, build, n, clients):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "qmp.sock")
        p, _ = boot_until_ready(build(1, 128, qmp=path))
        wait_socket(path)
        try:
            qmp_latencies(path, 50)  # warm-up
            t = time.perf_counter()
            one = qmp_latencies(path, n)
            one_rate = n / (time.perf_counter() - t)
            # One process per client: Python threads would queue on the GIL and measure that.
            with multiprocessing.Pool(clients) as pool:
                t = time.perf_counter()
                results = pool.starmap(qmp_latencies, [(path, n // clients)] * clients)
                many_rate = (n // clients) * clients / (time.perf_counter() - t)
            many = [x for r in results for x in r]
        finally:
            stop(p)
    return {"one": one, "one_rate": one_rate, "many": many, "many_rate": many_rate}


# -- block I/O -------------------------------------------------------------------------------
# The test kernel's `blk bench <dev> <requests> <qd> [read|write]` (docs/testkernel.md) keeps
# <qd> 4 KiB requests in flight on vda. The host measures wall time around the command (send to
# OK) and the VMM process's CPU time (utime + stime of /proc/<pid>/stat, all threads, so the
# vCPU thread's instruction emulation is in it for both VMMs alike).

BLK_IMAGE_MIB = 64


def blk_image(directory, name, mib=BLK_IMAGE_MIB):
    """A fully allocated image of `mib` MiB of random data, synced (so reads hit real blocks)."""
    path = os.path.join(directory, name)
    chunk = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    return path


def stratovirt_blk_cmd(image, direct):
    return stratovirt_cmd(1, 128) + [
        "-drive", f"id=rootfs,file={image},readonly=off,direct={'on' if direct else 'off'}",
        "-device", "virtio-blk-device,drive=rootfs"]


def qemu_blk_cmd(image, direct):
    cmd = qemu_cmd(1, 128)
    # microvm names its virtio-mmio transports on the kernel command line only with acpi=off;
    # force-legacy=false gives the modern (version 2) transport stratovirt has.
    cmd[cmd.index("microvm")] = "microvm,acpi=off"
    return cmd + [
        "-global", "virtio-mmio.force-legacy=false",
        "-drive", f"id=d0,file={image},format=raw,if=none,aio=threads,"
                  f"cache={'none' if direct else 'writeback'}",
        "-device", "virtio-blk-device,drive=d0"]


class SerialShell:
    """The test kernel's shell on a process's stdin/stdout (after boot_until_ready)."""

    def __init__(self, p):
        self.p = p

    def cmd(self, line, timeout=300):
        os.write(self.p.stdin.fileno(), line.encode() + b"\r")
        buf = b""
        deadline = time.perf_counter() + timeout
        while True:
            i = buf.find(line.encode())
            if i >= 0:
                tail = buf[i + len(line):]
                for end in (b"\nOK\r\n", b"\nERR"):
                    j = tail.find(end)
                    if j >= 0 and (end == b"\nOK\r\n" or tail.find(b"\r\n", j + 1) >= 0):
                        text = tail[:j + len(end)].decode("latin-1")
                        if end == b"\nERR":
                            raise RuntimeError(f"`{line}` failed: {tail.decode('latin-1')!r}")
                        return [l.strip() for l in text.splitlines() if l.strip()]
            left = deadline - time.perf_counter()
            if left <= 0:
                raise RuntimeError(f"no reply to `{line}`: {buf[-300:]!r}")
            r, _, _ = select.select([self.p.stdout], [], [], left)
            if r:
                chunk = os.read(self.p.stdout.fileno(), 65536)
                if not chunk:
                    raise RuntimeError(f"VMM exited during `{line}`: {buf[-300:]!r}")
                buf += chunk


def cpu_seconds(pid):
    """utime + stime of the whole process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def io_cpu_seconds(pid):
    """CPU time of the process's threads that are not vCPUs (stratovirt: `vcpuN`; QEMU:
    `CPU N/KVM`): the VMM's own device work, without the guest's emulated instructions."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            if name.startswith("vcpu") or (name.startswith("CPU ") and name.endswith("/KVM")):
                continue
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def io_cpu_ns(pid):
    """Like io_cpu_seconds, in nanoseconds from the scheduler's own accounting
    (/proc/PID/task/TID/schedstat), for per-packet figures below a clock tick."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            if name.startswith("vcpu") or (name.startswith("CPU ") and name.endswith("/KVM")):
                continue
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def blk_run(shell, pid, requests, qd, op):
    """One `blk bench`: (requests/s from host wall time, host CPU us per request, guest irqs,
    CPU us per request of the non-vCPU threads)."""
    c0, io0, t0 = cpu_seconds(pid), io_cpu_seconds(pid), time.perf_counter()
    lines = shell.cmd(f"blk bench vda {requests} {qd} {op}")
    t1, c1, io1 = time.perf_counter(), cpu_seconds(pid), io_cpu_seconds(pid)
    kv = dict(w.split("=", 1) for w in lines[-2].split() if "=" in w)
    if int(kv["requests"]) != requests or int(kv["qd"]) != qd:
        raise RuntimeError(f"unexpected bench reply {lines}")
    return (requests / (t1 - t0), (c1 - c0) * 1e6 / requests, int(kv["irqs"]),
            (io1 - io0) * 1e6 / requests)


def bench_blk(requests, reps, direct):
    """Both VMMs booted side by side on copies of one image; measurements alternate."""
    combos = [(op, qd) for op in ("read", "write") for qd in (1, 32)]
    res = {(vmm, op, qd): [] for vmm in ("stratovirt", "qemu") for op, qd in combos}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMPDIR", "/tmp")) as d:
        images = {"stratovirt": blk_image(d, "sv.img"), "qemu": blk_image(d, "qemu.img")}
        vms = {}
        try:
            for vmm, build in (("stratovirt", stratovirt_blk_cmd), ("qemu", qemu_blk_cmd)):
                p, _ = boot_until_ready(build(images[vmm], direct))
                vms[vmm] = (p, SerialShell(p))
            for vmm, (p, sh) in vms.items():  # warm-up: first-touch of the guest buffers
                blk_run(sh, p.pid, 200, 32, "read")
                blk_run(sh, p.pid, 200, 32, "write")
            for _ in range(reps):
                for op, qd in combos:
                    for vmm, (p, sh) in vms.items():
                        res[(vmm, op, qd)].append(blk_run(sh, p.pid, requests, qd, op))
        finally:
            for p, _ in vms.values():
                stop(p)
    return res


def print_blk(res, direct, requests, reps):
    mode = "direct=on / cache=none (O_DIRECT)" if direct else "direct=off / cache=writeback"
    print(f"# block: 4 KiB requests on vda, {mode}, {requests} requests x {reps} alternating "
          f"runs, medians; 64 MiB image on {os.environ.get('BENCH_TMPDIR', '/tmp')}")
    print("  CPU = all threads (mostly the vCPU emulating the guest); I/O CPU = non-vCPU threads")
    print(f"{'':12s}{'stratovirt':>32s}{'qemu':>32s}   sv/qemu   qemu/sv   qemu/sv")
    print(f"{'':12s}{'req/s  CPU us  I/O us':>32s}{'req/s  CPU us  I/O us':>32s}"
          f"   req/s     CPU       I/O CPU")
    for op in ("read", "write"):
        for qd in (1, 32):
            s = res[("stratovirt", op, qd)]
            q = res[("qemu", op, qd)]
            srate, scpu = statistics.median(x[0] for x in s), statistics.median(x[1] for x in s)
            qrate, qcpu = statistics.median(x[0] for x in q), statistics.median(x[1] for x in q)
            sio, qio = statistics.median(x[3] for x in s), statistics.median(x[3] for x in q)
            io_ratio = f"{qio/sio:8.2f}x" if sio > 0 else "     n/a"
            print(f"{op:5s} qd={qd:<3d} {srate:12.0f} {scpu:8.1f} {sio:8.1f}   "
                  f"{qrate:12.0f} {qcpu:8.1f} {qio:8.1f}   {srate/qrate:6.2f}x  {qcpu/scpu:6.2f}x "
                  f"{io_ratio}")


def blk_section(requests, reps):
    for direct in (True, False):
        res = bench_blk(requests, reps, direct)
        print_blk(res, direct, requests, reps)


# -- network ---------------------------------------------------------------------------------
# Both VMMs run in one network namespace, each with its own TAP. Guest to host: `net bench tx eth0
# N LEN` (32 frames per notification); the host counts what arrives on the TAP and times send to
# OK. Host to guest: the host offers frames as fast as it can (far more than the emulated guest
# takes; the surplus waits, then overflows the TAP's host queue, before either VMM) while the
# guest's `net bench rx` counts them, from its first frame to its last (10 ms ticks).

NET_LENGTHS = (1514, 60)


def stratovirt_net_cmd(tap):
    return stratovirt_cmd(1, 128) + ["-netdev", f"tap,id=n0,ifname={tap}",
                                     "-device", "virtio-net-device,netdev=n0"]


def qemu_net_cmd(tap):
    cmd = qemu_cmd(1, 128)
    cmd[cmd.index("microvm")] = "microvm,acpi=off"
    return cmd + ["-global", "virtio-mmio.force-legacy=false",
                  "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
                  "-device", "virtio-net-device,netdev=n0"]


def net_tx_run(shell, pid, peer, frames, length):
    """Guest to host: (frames/s, Mbit/s, frames the host got, I/O CPU us per frame)."""
    import threading
    got = [0]
    done = threading.Event()

    def count():
        peer.sock.settimeout(0.5)
        while not done.is_set() or got[0] < frames:
            try:
                peer.sock.recv(2048)
                got[0] += 1
            except (socket.timeout, BlockingIOError):
                if done.is_set():
                    return
    t = threading.Thread(target=count, daemon=True)
    peer.drain()
    t.start()
    io0, t0 = io_cpu_ns(pid), time.perf_counter()
    shell.cmd(f"net bench tx eth0 {frames} {length}")
    t1, io1 = time.perf_counter(), io_cpu_ns(pid)
    done.set()
    t.join(5)
    rate = got[0] / (t1 - t0)
    return rate, rate * length * 8 / 1e6, got[0], (io1 - io0) / 1e3 / max(got[0], 1)


def net_rx_run(shell, pid, peer, frames, length):
    """Host to guest: (frames/s, Mbit/s, frames the guest got, I/O CPU us per frame)."""
    import threading
    stop = threading.Event()
    frame = netns.pattern_frame(0, 0, length)

    def offer():
        while not stop.is_set():
            for _ in range(64):
                try:
                    peer.send(frame)
                except OSError:
                    pass
            time.sleep(0)
    t = threading.Thread(target=offer, daemon=True)
    io0 = io_cpu_ns(pid)
    t.start()
    try:
        lines = shell.cmd(f"net bench rx eth0 {frames} 3000")
    finally:
        stop.set()
        t.join(5)
    io1 = io_cpu_ns(pid)
    kv = dict(w.split("=", 1) for w in lines[-2].split() if "=" in w)
    got, ticks = int(kv["frames"]), max(int(kv["ticks"]), 1)
    rate = got / (ticks / 100)
    return rate, rate * length * 8 / 1e6, got, (io1 - io0) / 1e3 / max(got, 1)


def bench_net(frames, reps):
    combos = [(way, length) for way in ("tx", "rx") for length in NET_LENGTHS]
    res = {(vmm, way, length): [] for vmm in ("stratovirt", "qemu") for way, length in combos}
    with netns.NetNs() as ns:
        vms = {}
        try:
            for vmm, build in (("stratovirt", stratovirt_net_cmd), ("qemu", qemu_net_cmd)):
                tap = ns.add_tap(f"svb-{vmm[:4]}")
                peer = ns.packet_socket(tap)
                peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
                p, _ = boot_until_ready(ns.exec_argv(build(tap)))
                vms[vmm] = (p, SerialShell(p), peer)
            for vmm, (p, sh, peer) in vms.items():  # warm-up: the guest's buffers, both ways
                net_tx_run(sh, p.pid, peer, 200, 1514)
                net_rx_run(sh, p.pid, peer, 200, 1514)
            for _ in range(reps):
                for way, length in combos:
                    for vmm, (p, sh, peer) in vms.items():
                        run = net_tx_run if way == "tx" else net_rx_run
                        res[(vmm, way, length)].append(run(sh, p.pid, peer, frames, length))
        finally:
            for p, _, _ in vms.values():
                stop(p)
    return res


# -- console ---------------------------------------------------------------------------------
# The test kernel's `con bench <bytes> <chunk>` (docs/testkernel.md) keeps up to 64 buffers of
# <chunk> bytes on the transmitq, one notification per batch. A client of the console socket
# reads as fast as it can; the figure is the bytes it got per second, from sending the command
# to the last byte (or to the guest's OK when bytes went missing).

CONSOLE_CASES = ((4096, 16 << 20), (64, 1 << 20))


def stratovirt_console_cmd(sock):
    return stratovirt_cmd(1, 128) + ["-chardev", f"socket,id=con0,path={sock},server,nowait",
                                     "-device", "virtconsole,chardev=con0"]


def qemu_console_cmd(sock):
    cmd = qemu_cmd(1, 128)
    # As for the disks: the modern transport, named on the kernel command line.
    cmd[cmd.index("microvm")] = "microvm,acpi=off"
    return cmd + ["-global", "virtio-mmio.force-legacy=false", "-device", "virtio-serial-device",
                  "-chardev", f"socket,id=con0,path={sock},server=on,wait=off",
                  "-device", "virtconsole,chardev=con0"]


class ConsoleReader:
    """Reads a console socket in a thread, counting bytes and when the last one came."""

    def __init__(self, path):
        wait_socket(path)
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(path)
        self.total = 0
        self.last = time.perf_counter()
        self.cond = threading.Condition()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                n = len(self.s.recv(1 << 20))
            except OSError:
                n = 0
            if n == 0:
                return
            with self.cond:
                self.total += n
                self.last = time.perf_counter()
                self.cond.notify_all()

    def wait_for(self, n, timeout):
        """Waits until `n` bytes in all have come, or `timeout` seconds without any."""
        with self.cond:
            while self.total < n:
                before = self.total
                self.cond.wait(timeout)
                if self.total == before:
                    return

    def close(self):
        self.s.close()


def console_run(shell, pid, reader, nbytes, chunk):
    """One `con bench`: (bytes/s that reached the client, bytes lost, guest kicks, guest irqs,
    I/O CPU us per MiB of the non-vCPU threads)."""
    with reader.cond:
        base = reader.total
    io0, t0 = io_cpu_seconds(pid), time.perf_counter()
    lines = shell.cmd(f"con bench {nbytes} {chunk}")
    ok_at = time.perf_counter()
    reader.wait_for(base + nbytes, 1.0)
    io1 = io_cpu_seconds(pid)
    kv = dict(w.split("=", 1) for w in lines[-2].split() if "=" in w)
    if int(kv["bytes"]) != nbytes:
        raise RuntimeError(f"unexpected bench reply {lines}")
    with reader.cond:
        got, last = reader.total - base, reader.last
    end = last if got == nbytes else max(last, ok_at)
    mib = nbytes / (1 << 20)
    return (got / (end - t0), nbytes - got, int(kv["kicks"]) / mib, int(kv["irqs"]) / mib,
            (io1 - io0) * 1e6 / mib)


def bench_console(reps):
    res = {(vmm, chunk): [] for vmm in ("stratovirt", "qemu") for chunk, _ in CONSOLE_CASES}
    with tempfile.TemporaryDirectory() as d:
        vms = {}
        try:
            for vmm, build in (("stratovirt", stratovirt_console_cmd), ("qemu", qemu_console_cmd)):
                sock = os.path.join(d, f"{vmm}.sock")
                p, _ = boot_until_ready(build(sock))
                vms[vmm] = (p, SerialShell(p), ConsoleReader(sock))
            time.sleep(0.3)  # each console takes its client
            for vmm, (p, sh, r) in vms.items():  # warm-up
                console_run(sh, p.pid, r, 1 << 20, 4096)
            for _ in range(reps):
                for chunk, nbytes in CONSOLE_CASES:
                    for vmm, (p, sh, r) in vms.items():
                        res[(vmm, chunk)].append(console_run(sh, p.pid, r, nbytes, chunk))
        finally:
            for p, _, r in vms.values():
                r.close()
                stop(p)
    return res


def print_net(res, frames, reps):
    print(f"# network: test frames on a TAP (network namespace), {frames} frames x {reps} "
          "alternating runs, medians; user-space virtio-net on both")
    print("  tx = guest to host, rx = host to guest; I/O us = CPU of the non-vCPU threads per frame"
          " (schedstat)")
    print(f"{'':14s}{'stratovirt':>32s}{'qemu':>32s}   sv/qemu   qemu/sv")
    print(f"{'':14s}{'pkt/s  Mbit/s  I/O us':>32s}{'pkt/s  Mbit/s  I/O us':>32s}   pkt/s     I/O CPU")
    for way in ("tx", "rx"):
        for length in NET_LENGTHS:
            s = res[("stratovirt", way, length)]
            q = res[("qemu", way, length)]
            med = lambda xs, i: statistics.median(x[i] for x in xs)  # noqa: E731
            srate, qrate = med(s, 0), med(q, 0)
            sio, qio = med(s, 3), med(q, 3)
            io_ratio = f"{qio/sio:8.2f}x" if sio > 0 else "     n/a"
            print(f"{f'{way} {length:4d} B':14s}{srate:16.0f}{med(s, 1):8.1f}{sio:8.1f}"
                  f"{qrate:16.0f}{med(q, 1):8.1f}{qio:8.1f}   {srate/qrate:6.2f}x {io_ratio}")


def net_section(frames, reps):
    res = bench_net(frames, reps)
    print_net(res, frames, reps)


def print_console(res, reps):
    print(f"# console: guest to host, `con bench` ({', '.join(f'{n >> 20} MiB in {c}-byte buffers' for c, n in CONSOLE_CASES)}), "
          f"{reps} alternating runs, medians; QEMU: virtio-serial-device + virtconsole on a socket chardev")
    print("  MiB/s = bytes the client got per second; lost = bytes that never reached it; kicks, irqs and I/O CPU per MiB")
    print(f"{'':10s}{'stratovirt':>44s}{'qemu':>44s}   sv/qemu")
    print(f"{'':10s}{'MiB/s    lost  kicks   irqs  I/O us':>44s}{'MiB/s    lost  kicks   irqs  I/O us':>44s}   MiB/s")
    for chunk, _ in CONSOLE_CASES:
        row = []
        for vmm in ("stratovirt", "qemu"):
            x = res[(vmm, chunk)]
            med = [statistics.median(v[i] for v in x) for i in range(5)]
            row.append(med)
        (s, q) = row
        print(f"chunk={chunk:<5d}"
              f"{s[0] / (1 << 20):16.1f} {s[1]:8.0f} {s[2]:6.0f} {s[3]:6.0f} {s[4]:7.0f}"
              f"{q[0] / (1 << 20):16.1f} {q[1]:8.0f} {q[2]:6.0f} {q[3]:6.0f} {q[4]:7.0f}"
              f"   {s[0] / q[0]:6.2f}x")


def console_section(reps):
    print_console(bench_console(reps), reps)


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--cpus", type=int, default=1)
    ap.add_argument("--mem", type=int, default=128)
    ap.add_argument("--qmp-requests", type=int, default=2000)
    ap.add_argument("--blk-requests", type=int, default=4000)
    ap.add_argument("--blk-runs", type=int, default=3)
    ap.add_argument("--boot-only", action="store_true", help="only the boot section")
    ap.add_argument("--blk-only", action="store_true", help="only the block I/O section")
    ap.add_argument("--net-frames", type=int, default=4000)
    ap.add_argument("--net-runs", type=int, default=3)
    ap.add_argument("--net-only", action="store_true", help="only the network section")
    ap.add_argument("--console-runs", type=int, default=5)
    ap.add_argument("--console-only", action="store_true", help="only the console section")
    ap.add_argument("--balloon-runs", type=int, default=5)
    ap.add_argument("--balloon-only", action="store_true", help="only the balloon section")
    a = ap.parse_args()
    for f in (STRATOVIRT, KERNEL_ELF):
        if not os.path.exists(f):
            sys.exit(f"missing {f}: run `make build` first")
    import balloon  # noqa: E402  (imports this module for its helpers)
    if a.blk_only:
        blk_section(a.blk_requests, a.blk_runs)
        return
    if a.net_only:
        net_section(a.net_frames, a.net_runs)
        return
    if a.console_only:
        console_section(a.console_runs)
        return
    if a.balloon_only:
        balloon.section(a.balloon_runs)
        return

    print(f"# boot: {a.runs} alternating runs each, {a.cpus} vCPU, {a.mem} MiB, guest testkernel.elf,"
          " six virtio-blk devices on both (stratovirt's slots; QEMU: six 1 MiB disks)")
    r = bench_boot(a.runs, a.cpus, a.mem)
    sb, qb = statistics.median(r["stratovirt"]["boot"]), statistics.median(r["qemu"]["boot"])
    sr, qr = statistics.median(r["stratovirt"]["rss"]), statistics.median(r["qemu"]["rss"])
    print(f"spawn->READY median   stratovirt {sb*1000:8.1f} ms   qemu {qb*1000:8.1f} ms   "
          f"qemu/stratovirt = {qb/sb:.2f}x")
    print(f"VMM RSS (no guest RAM) stratovirt {sr/1024:8.2f} MiB  qemu {qr/1024:8.2f} MiB  "
          f"qemu/stratovirt = {qr/sr:.2f}x")
    if a.boot_only:
        return

    print(f"# QMP query-status: {a.qmp_requests} requests on 1 connection, then over 10 clients")
    q = {name: bench_qmp(name, build, a.qmp_requests, 10)
         for name, build in (("stratovirt", stratovirt_cmd), ("qemu", qemu_cmd))}
    for name in ("stratovirt", "qemu"):
        x = q[name]
        print(f"{name:10s} 1 client: {x['one_rate']:8.0f} req/s p50 {pct(x['one'],0.5)*1e6:6.0f} us "
              f"p99 {pct(x['one'],0.99)*1e6:6.0f} us | 10 clients: {x['many_rate']:8.0f} req/s "
              f"p50 {pct(x['many'],0.5)*1e6:6.0f} us p99 {pct(x['many'],0.99)*1e6:6.0f} us")
    s, qq = q["stratovirt"], q["qemu"]
    print(f"throughput ratio stratovirt/qemu: 1 client {s['one_rate']/qq['one_rate']:.2f}x, "
          f"10 clients {s['many_rate']/qq['many_rate']:.2f}x")

    blk_section(a.blk_requests, a.blk_runs)
    net_section(a.net_frames, a.net_runs)
    console_section(a.console_runs)
    balloon.section(a.balloon_runs)


if __name__ == "__main__":
    main()
