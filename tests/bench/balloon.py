#!/usr/bin/env python3
"""Balloon benchmark: stratovirt's virtio-balloon against QEMU microvm's virtio-balloon-device, on
the same guest (the test kernel's driver, docs/testkernel.md), both VMMs booted side by side,
measurements alternating, medians.

Each round fills every page the balloon can take (`mem fill`), then:
  inflate   QMP `balloon` to the boot memory less 1 GiB, then the guest's `balloon sync` (it
            gives 1 GiB in requests of 4096 pages and writes `actual` after each): wall time of
            the sync, as the host sees it
  reclaimed the VMM's RssAnon before the sync less after it, per second of the sync
  CPU/GiB   VMM CPU time per reclaimed GiB: all threads (the vCPU emulating the guest's driver
            is in it), and the device side alone (threads other than vCPUs)
  deflate   `balloon` back to the boot memory and `balloon sync`: wall time

    .venv/bin/python tests/bench/balloon.py [--runs N]      (also a section of `make bench`)
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run as base  # noqa: E402  (command lines and helpers of the boot benchmark)

MIB = 1 << 20
GIB = 1 << 30
# The guest: 1 GiB in the balloon out of 1280 MiB (the test kernel keeps the first 32 MiB).
MEM_MIB = 1280


def stratovirt_cmd(qmp):
    return base.stratovirt_cmd(1, MEM_MIB, qmp=qmp) + ["-device", "virtio-balloon-device"]


def qemu_cmd(qmp):
    cmd = base.qemu_cmd(1, MEM_MIB, qmp=qmp)
    # The transports on the kernel command line (acpi=off) and modern virtio-mmio, as stratovirt.
    cmd[cmd.index("microvm")] = "microvm,acpi=off"
    return cmd + ["-global", "virtio-mmio.force-legacy=false", "-device", "virtio-balloon-device"]


class Qmp:
    def __init__(self, path):
        base.wait_socket(path)
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(path)
        self.f = self.s.makefile("rwb", buffering=0)
        self.f.readline()
        self.call("qmp_capabilities")

    def call(self, cmd, args=None):
        msg = {"execute": cmd}
        if args is not None:
            msg["arguments"] = args
        self.f.write(json.dumps(msg).encode() + b"\n")
        while True:
            line = self.f.readline()
            if not line:
                raise RuntimeError(f"QMP closed during {cmd}")
            r = json.loads(line)
            if "return" in r:
                return r["return"]
            if "error" in r:
                raise RuntimeError(f"{cmd}: {r['error']}")


def rss_anon_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise RuntimeError("no RssAnon")


class Guest:
    def __init__(self, name, build, work):
        self.name = name
        sock = os.path.join(work, f"{name}.sock")
        self.p, _ = base.boot_until_ready(build(sock))
        self.sh = base.SerialShell(self.p)
        self.q = Qmp(sock)
        self.sh.cmd("balloon auto off")
        info = dict(w.split("=", 1) for w in self.sh.cmd("balloon info")[0].split() if "=" in w)
        if info.get("state") != "ready":
            raise RuntimeError(f"{name}: the balloon is not ready: {info}")
        self.fill_mib = int(info["pool"]) // 256

    def sync(self):
        """`balloon sync`: (wall seconds, RssAnon KiB freed, CPU s all threads, CPU s device)."""
        pid = self.p.pid
        r0, c0, d0 = rss_anon_kib(pid), base.cpu_seconds(pid), base.io_cpu_seconds(pid)
        t0 = time.perf_counter()
        self.sh.cmd("balloon sync")
        t1 = time.perf_counter()
        r1, c1, d1 = rss_anon_kib(pid), base.cpu_seconds(pid), base.io_cpu_seconds(pid)
        return t1 - t0, r0 - r1, c1 - c0, d1 - d0

    def round(self):
        self.sh.cmd(f"mem fill {self.fill_mib} 1")
        self.q.call("balloon", {"value": MEM_MIB * MIB - GIB})
        wall, freed_kib, cpu, dev = self.sync()
        if self.q.call("query-balloon")["actual"] != MEM_MIB * MIB - GIB:
            raise RuntimeError(f"{self.name}: the balloon did not reach 1 GiB")
        gib = freed_kib * 1024 / GIB
        self.q.call("balloon", {"value": MEM_MIB * MIB})
        dwall, _, _, _ = self.sync()
        return {"inflate": wall, "reclaim_mib_s": freed_kib / 1024 / wall, "freed_gib": gib,
                "cpu_gib": cpu / gib, "dev_gib": dev / gib, "deflate": dwall}

    def stop(self):
        base.stop(self.p)


def bench(runs):
    res = {"stratovirt": [], "qemu": []}
    with tempfile.TemporaryDirectory(prefix="sv-bench-balloon-") as work:
        guests = []
        try:
            for name, build in (("stratovirt", stratovirt_cmd), ("qemu", qemu_cmd)):
                guests.append(Guest(name, build, work))
            for g in guests:  # warm-up: the first fill maps the guest's memory
                g.round()
            for _ in range(runs):
                for g in guests:
                    res[g.name].append(g.round())
        finally:
            for g in guests:
                g.stop()
    return res


def section(runs):
    print(f"# balloon: 1 GiB into and out of the balloon of a {MEM_MIB} MiB guest (test kernel, "
          f"filled first), {runs} alternating runs, medians; requests of 4096 pages")
    res = bench(runs)
    med = {vmm: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for vmm, rs in res.items()}
    s, q = med["stratovirt"], med["qemu"]
    print(f"{'':24s}{'stratovirt':>12s}{'qemu':>12s}   ratio")
    rows = [
        ("inflate 1 GiB (ms)", "inflate", 1000, "qemu/sv"),
        ("deflate 1 GiB (ms)", "deflate", 1000, "qemu/sv"),
        ("reclaimed (MiB/s)", "reclaim_mib_s", 1, "sv/qemu"),
        ("CPU per GiB (ms)", "cpu_gib", 1000, "qemu/sv"),
        ("device CPU per GiB (ms)", "dev_gib", 1000, "qemu/sv"),
        ("RSS freed (GiB)", "freed_gib", 1, ""),
    ]
    for label, key, scale, how in rows:
        a, b = s[key] * scale, q[key] * scale
        if how == "qemu/sv":
            ratio = f"{b / a:6.2f}x qemu/sv" if a else "   n/a"
        elif how == "sv/qemu":
            ratio = f"{a / b:6.2f}x sv/qemu" if b else "   n/a"
        else:
            ratio = ""
        print(f"{label:24s}{a:12.2f}{b:12.2f}   {ratio}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    for f in (base.STRATOVIRT, base.KERNEL_ELF):
        if not os.path.exists(f):
            sys.exit(f"missing {f}: run `make build` first")
    section(a.runs)


if __name__ == "__main__":
    main()
