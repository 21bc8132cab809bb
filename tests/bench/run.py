#!/usr/bin/env python3
"""Side-by-side benchmarks: stratovirt vs QEMU microvm on the same guest, same machine, one run.

Boot: process spawn to the guest's READY line, and VMM resident memory after READY excluding
guest RAM. QMP: query-status round trips on one connection and with 10 concurrent clients.
Runs alternate between the two VMMs so drift hits both alike. Prints medians and ratios.
"""
import argparse
import json
import multiprocessing
import os
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STRATOVIRT = os.path.join(ROOT, "target/release/stratovirt")
KERNEL_ELF = os.path.join(ROOT, "target/guest/testkernel.elf")
QEMU = "qemu-system-x86_64"


def stratovirt_cmd(cpus, mem, qmp=None):
    cmd = [STRATOVIRT, "-kernel", KERNEL_ELF, "-append", "console=ttyS0",
           "-smp", str(cpus), "-m", str(mem), "-serial", "stdio"]
    if qmp:
        cmd += ["-qmp", f"unix:{qmp},server,nowait"]
    return cmd


def qemu_cmd(cpus, mem, qmp=None):
    cmd = [QEMU, "-M", "microvm", "-enable-kvm", "-cpu", "host", "-nodefaults",
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


def bench_boot(runs, cpus, mem):
    res = {"stratovirt": {"boot": [], "rss": []}, "qemu": {"boot": [], "rss": []}}
    for i in range(runs):
        for name, build in (("stratovirt", stratovirt_cmd), ("qemu", qemu_cmd)):
            p, t = boot_until_ready(build(cpus, mem))
            time.sleep(0.2)
            res[name]["boot"].append(t)
            res[name]["rss"].append(vmm_rss_kib(p.pid, mem))
            stop(p)
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


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--cpus", type=int, default=1)
    ap.add_argument("--mem", type=int, default=128)
    ap.add_argument("--qmp-requests", type=int, default=2000)
    a = ap.parse_args()
    for f in (STRATOVIRT, KERNEL_ELF):
        if not os.path.exists(f):
            sys.exit(f"missing {f}: run `make build` first")

    print(f"# boot: {a.runs} alternating runs each, {a.cpus} vCPU, {a.mem} MiB, guest testkernel.elf")
    r = bench_boot(a.runs, a.cpus, a.mem)
    sb, qb = statistics.median(r["stratovirt"]["boot"]), statistics.median(r["qemu"]["boot"])
    sr, qr = statistics.median(r["stratovirt"]["rss"]), statistics.median(r["qemu"]["rss"])
    print(f"spawn->READY median   stratovirt {sb*1000:8.1f} ms   qemu {qb*1000:8.1f} ms   "
          f"qemu/stratovirt = {qb/sb:.2f}x")
    print(f"VMM RSS (no guest RAM) stratovirt {sr/1024:8.2f} MiB  qemu {qr/1024:8.2f} MiB  "
          f"qemu/stratovirt = {qr/sr:.2f}x")

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


if __name__ == "__main__":
    main()
