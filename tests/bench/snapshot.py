#!/usr/bin/env python3
"""Snapshot benchmark: stratovirt's `migrate` to `file:` and `-incoming`, against QEMU microvm's
`migrate` to a file (`exec:cat > FILE`; QEMU 7.2 has no `file:` URI) and `-incoming exec:cat
FILE`, on the same guest (the test kernel), alternating runs, medians.

For 128 MiB and 1 GiB guests with 0 and 64 MiB written by the guest (`mem fill`):
  create    migrate until query-migrate says completed
  size      allocated bytes of the snapshot on disk
  greeting  spawn of the restoring VMM -> QMP greeting
  running   spawn -> query-status "running"
  reply     spawn -> the guest's answer to a serial command
Then 20 and 100 clones from one 128 MiB template started at once: time until every clone's
guest answered, and their total Pss.

    .venv/bin/python tests/bench/snapshot.py [--runs N] [--clones 20,100]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run as base  # noqa: E402  (the boot benchmark's command lines and helpers)


def qmp_connect(path, deadline):
    while True:
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            f = s.makefile("rwb", buffering=0)
            f.readline()
            return s, f
        except (FileNotFoundError, ConnectionRefusedError):
            s.close()
            if time.perf_counter() > deadline:
                raise RuntimeError(f"no QMP socket at {path}")
            time.sleep(0.0005)


def qmp_call(f, cmd, args=None):
    msg = {"execute": cmd}
    if args is not None:
        msg["arguments"] = args
    f.write(json.dumps(msg).encode() + b"\n")
    while True:
        line = f.readline()
        if not line:
            raise RuntimeError(f"QMP closed during {cmd}")
        r = json.loads(line)
        if "event" not in r:
            return r


# The test kernel's shell on a VMM's stdin/stdout, as the boot benchmark drives it.
Serial = base.SerialShell


def spawn(cmd):
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=base.env())


_sock_ids = iter(range(1 << 30))


def unique(work, name):
    """A fresh socket path: a VMM killed with SIGKILL leaves its socket behind."""
    return os.path.join(work, f"{name}-{next(_sock_ids)}.sock")


def with_qmp(cmd, sock):
    cmd = list(cmd)
    cmd += ["-qmp", f"unix:{sock},server,nowait"]
    return cmd


class Vmm:
    """How one VMM makes and restores a snapshot."""

    def __init__(self, name, boot_cmd, uri_of, incoming_of, paths_of):
        self.name, self.boot_cmd, self.uri_of = name, boot_cmd, uri_of
        self.incoming_of, self.paths_of = incoming_of, paths_of


def make_vmms():
    sv = Vmm("stratovirt",
             lambda mem: base.stratovirt_cmd(1, mem),
             lambda snap: f"file:{snap}",
             lambda snap: ["-incoming", f"file:{snap}"],
             lambda snap: [os.path.join(snap, "state"), os.path.join(snap, "memory")])
    qemu = Vmm("qemu",
               lambda mem: base.qemu_cmd(1, mem),
               lambda snap: f"exec:cat > {snap}/stream",
               lambda snap: ["-incoming", f"exec:cat {snap}/stream"],
               lambda snap: [os.path.join(snap, "stream")])
    return [sv, qemu]


def create(vmm, mem, written, snap, work):
    """Boots, writes `written` MiB, snapshots; returns (seconds to create, allocated bytes)."""
    sock = unique(work, f"{vmm.name}-src")
    p, _ = base.boot_until_ready(with_qmp(vmm.boot_cmd(mem), sock))
    try:
        sh = Serial(p)
        if written:
            sh.cmd(f"mem fill {written} 5")
        s, f = qmp_connect(sock, time.perf_counter() + 10)
        qmp_call(f, "qmp_capabilities")
        if vmm.name == "qemu":
            os.makedirs(snap, exist_ok=True)
            qmp_call(f, "stop")  # stratovirt's migrate pauses by itself; QEMU's does not
        t0 = time.perf_counter()
        r = qmp_call(f, "migrate", {"uri": vmm.uri_of(snap)})
        assert "return" in r, r
        while True:
            st = qmp_call(f, "query-migrate")["return"].get("status")
            if st == "completed":
                break
            if st == "failed":
                raise RuntimeError(f"{vmm.name}: migrate failed")
            time.sleep(0.001)
        elapsed = time.perf_counter() - t0
        s.close()
    finally:
        base.stop(p)
    size = sum(os.stat(x).st_blocks * 512 for x in vmm.paths_of(snap))
    return elapsed, size


def restore_once(vmm, mem, snap, work, tag):
    """Returns (greeting, running, reply) seconds after spawn."""
    sock = unique(work, f"{vmm.name}-{tag}")
    t0 = time.perf_counter()
    p = spawn(with_qmp(vmm.boot_cmd(mem), sock) + vmm.incoming_of(snap))
    try:
        s, f = qmp_connect(sock, t0 + 30)
        greeting = time.perf_counter() - t0
        qmp_call(f, "qmp_capabilities")
        while True:
            status = qmp_call(f, "query-status")["return"]["status"]
            if status == "running":
                break
            # QEMU keeps the source's run state: a snapshot of a paused VM restores paused.
            if status == "paused":
                qmp_call(f, "cont")
                continue
            if time.perf_counter() - t0 > 30:
                raise RuntimeError(f"{vmm.name} never ran after -incoming ({status})")
            time.sleep(0.0005)
        running = time.perf_counter() - t0
        Serial(p).cmd("ticks")
        reply = time.perf_counter() - t0
        s.close()
        return greeting, running, reply
    finally:
        base.stop(p)


def pss_kib(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def clones(vmm, n, snap, work, mem):
    """Starts n restores at once; returns (seconds until every guest answered, total Pss MiB)."""
    procs, socks = [], []
    t0 = time.perf_counter()
    try:
        for i in range(n):
            socks.append(unique(work, f"{vmm.name}-c{i}"))
            procs.append(spawn(with_qmp(vmm.boot_cmd(mem), socks[-1]) + vmm.incoming_of(snap)))
        if vmm.name == "qemu":
            # Each restores paused (see restore_once): run them once their load is done.
            for i in range(n):
                s, f = qmp_connect(socks[i], t0 + 120)
                qmp_call(f, "qmp_capabilities")
                while qmp_call(f, "query-status")["return"]["status"] != "running":
                    qmp_call(f, "cont")
                s.close()
        for p in procs:
            Serial(p).cmd("ticks", timeout=300)
        elapsed = time.perf_counter() - t0
        pss = sum(pss_kib(p.pid) for p in procs) / 1024
        return elapsed, pss
    finally:
        for p in procs:
            base.stop(p)


def med(xs):
    return statistics.median(xs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--clones", default="20,100")
    ap.add_argument("--json", default=os.path.join(base.ROOT, "target", "bench-snapshot.json"))
    args = ap.parse_args()
    vmms = make_vmms()
    work = tempfile.mkdtemp(prefix="sv-snapbench-")
    results = {}
    try:
        print("# snapshots: test kernel, 1 vCPU; create = migrate -> completed; restore from spawn; "
              f"medians of {args.runs} alternating runs")
        print(f"{'guest':>16} {'VMM':>10} {'create':>9} {'size':>10} {'greeting':>9} "
              f"{'running':>9} {'reply':>9}")
        for mem, written in [(128, 0), (128, 64), (1024, 0), (1024, 64)]:
            rows = {v.name: {"create": [], "size": [], "greeting": [], "running": [], "reply": []}
                    for v in vmms}
            for run in range(args.runs):
                for v in vmms:
                    snap = os.path.join(work, f"{v.name}-{mem}-{written}-{run}")
                    c, size = create(v, mem, written, snap, work)
                    g, r, rep = restore_once(v, mem, snap, work, f"r{run}")
                    row = rows[v.name]
                    row["create"].append(c)
                    row["size"].append(size)
                    row["greeting"].append(g)
                    row["running"].append(r)
                    row["reply"].append(rep)
                    shutil.rmtree(snap, ignore_errors=True)
            results[f"{mem}M-{written}M"] = rows
            for v in vmms:
                row = rows[v.name]
                print(f"{mem:>5} MiB, {written:>2} MiB {v.name:>10} {med(row['create']) * 1e3:7.1f}ms "
                      f"{med(row['size']) / 2**20:7.1f}MiB {med(row['greeting']) * 1e3:7.1f}ms "
                      f"{med(row['running']) * 1e3:7.1f}ms {med(row['reply']) * 1e3:7.1f}ms")
            sv, q = rows["stratovirt"], rows["qemu"]
            print(f"{'':>16} {'qemu/sv':>10} {med(q['create']) / med(sv['create']):8.2f}x "
                  f"{med(q['size']) / max(med(sv['size']), 1):9.2f}x "
                  f"{med(q['greeting']) / med(sv['greeting']):8.2f}x "
                  f"{med(q['running']) / med(sv['running']):8.2f}x "
                  f"{med(q['reply']) / med(sv['reply']):8.2f}x")
        print("# clones of one 128 MiB template (64 MiB written), started at once")
        for v in vmms:
            snap = os.path.join(work, f"{v.name}-template")
            create(v, 128, 64, snap, work)
            for n in [int(x) for x in args.clones.split(",") if x]:
                t, pss = clones(v, n, snap, work, 128)
                results[f"clones-{v.name}-{n}"] = {"seconds": t, "pss_mib": pss}
                print(f"{v.name:>10} {n:>4} clones: all answered after {t * 1e3:8.1f} ms, "
                      f"total Pss {pss:8.1f} MiB ({pss / n:.2f} MiB each)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=1)
    print(f"raw results: {args.json}")


if __name__ == "__main__":
    main()
