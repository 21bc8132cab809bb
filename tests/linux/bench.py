#!/usr/bin/env python3
"""Real-Linux benchmarks, stratovirt against QEMU microvm on the same L2 Linux in the same nested
L1, runs alternating: boot to userspace, the network (user-space virtio-net and vhost-net), and
vsock (the userspace backend and vhost-vsock against QEMU's vhost-vsock-device).

    make bench-linux                   # or: .venv/bin/python tests/linux/bench.py [--runs N]
    tests/linux/bench.py --baseline OLD_STRATOVIRT   # also time another stratovirt build
    tests/linux/bench.py --what net --net-runs 3     # only the network
    tests/linux/bench.py --what vsock                # only vsock

Boot: for each VMM and kernel format, spawn -> L2 userspace (seen on the host), the guest
kernel's own uptime at that point, and the largest gaps in the guest's boot log. Network: eth0
on a TAP in L1, TCP Mbit/s each way (tests/linux/tools/netxfer.c), UDP packets per second each
way with 64-byte datagrams, and the CPU the VMM itself spends per packet (its threads but the
vCPUs, plus its vhost kernel worker), for stratovirt and QEMU, each with and without vhost.
Absolute times under TCG mean little; the ratios do. Results also go to --json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

import build  # noqa: E402
import nested  # noqa: E402
from harness import QEMU_KVM_CPU  # noqa: E402

APPEND = "console=ttyS0 reboot=k panic=1 quiet"
DISK = f"{nested.L1_L2DIR}/rootfs.ext4"
INITRD = f"{nested.L1_L2DIR}/initramfs.cpio.gz"
GAPS = ("dmesg | sed -n 's/^\\[ *\\([0-9.]*\\)\\] /\\1 /p' | "
        "awk '{t = $1 + 0; if (NR > 1) printf \"%.3f %s\\n\", t - p, $0; p = t}' | sort -rn | head -4")


def stratovirt_argv(binary: str, kernel: str) -> list[str]:
    return [binary, "-kernel", f"{nested.L1_L2DIR}/{kernel}", "-initrd", INITRD,
            "-append", APPEND, "-smp", "1", "-m", "256M", "-serial", "stdio",
            "-drive", f"id=d0,file={DISK},readonly=on,direct=off",
            "-device", "virtio-blk-device,drive=d0"]


def qemu_argv(kernel: str) -> list[str]:
    # QEMU at its best for this guest: MP table instead of ACPI (the kernel has no ACPI), and
    # its MC146818 RTC, which microvm leaves out under KVM unless asked (without it rtc_cmos
    # waits out its probe, as it did under stratovirt before it had an RTC).
    return ["/usr/bin/qemu-system-x86_64", "-M", "microvm,acpi=off,rtc=on", "-enable-kvm",
            "-cpu", QEMU_KVM_CPU, "-m", "256M", "-smp", "1", "-nodefaults", "-no-user-config",
            "-nographic", "-serial", "stdio", "-no-reboot",
            "-kernel", f"{nested.L1_L2DIR}/{kernel}", "-initrd", INITRD, "-append", APPEND,
            "-drive", f"id=d0,file={DISK},if=none,format=raw,readonly=on",
            "-device", "virtio-blk-device,drive=d0"]


def one_boot(l1, name: str, argv: list[str]) -> dict:
    vm = nested.L2(l1, name, argv, env={"STRATOVIRT_LOG_LEVEL": "off"})
    try:
        spawn_to_userspace = vm.wait_userspace(240)
        m = re.search(r"L2-USERSPACE-OK uptime=([\d.]+)", vm.console.text)
        disks = vm.out("ls /sys/block | tr '\\n' ' '")
        if "vda" not in disks:
            raise nested.NestedError(f"{name}: the guest sees no virtio disk ({disks})")
        gaps = vm.out(GAPS).splitlines()
        return {"spawn_to_userspace": spawn_to_userspace, "guest_uptime": float(m.group(1)),
                "gaps": gaps}
    finally:
        vm.kill()


# -- network -----------------------------------------------------------------------------------

NET_MAC = "0e:90:df:9f:a8:88"
HOST_IP, GUEST_IP = "169.254.100.1", "169.254.100.2"
# The VMM's own CPU: its threads but the vCPUs (stratovirt: vcpuN, QEMU: "CPU N/KVM"), plus its
# vhost workers (kthreads named vhost-TID after the thread that made the device its owner: QEMU's
# main thread, stratovirt's netN), from the scheduler's accounting (ns).
OWN_CPU = ("t=0; ids=; for d in /proc/{pid}/task/*; do ids=\"$ids ${{d##*/}}\"; c=$(cat $d/comm); "
           "case \"$c\" in vcpu*|CPU*) continue;; esac; set -- $(cat $d/schedstat); t=$((t+$1)); "
           "done; for d in /proc/[0-9]*; do c=$(cat $d/comm 2>/dev/null); case \"$c\" in vhost-*) "
           "for i in $ids; do if [ \"$c\" = vhost-$i ]; then set -- $(cat $d/schedstat); "
           "t=$((t+$1)); fi; done;; esac; done; echo $t")


def net_contestants() -> list[tuple[str, list[str]]]:
    base = ["-kernel", f"{nested.L1_L2DIR}/vmlinux", "-initrd", INITRD, "-append", APPEND,
            "-smp", "1", "-m", "512M", "-serial", "stdio"]
    out = []
    for vhost in (False, True):
        tag = "vhost" if vhost else "user"
        v = ",vhost=on" if vhost else ""
        out.append((f"stratovirt-{tag}", ["/usr/bin/stratovirt", *base,
                    "-netdev", f"tap,id=n0,ifname=tap0{v}",
                    "-device", f"virtio-net-device,netdev=n0,mac={NET_MAC}"]))
        out.append((f"qemu-{tag}", [
            "/usr/bin/qemu-system-x86_64", "-name", "bench,debug-threads=on",
            "-M", "microvm,acpi=off,rtc=on", "-enable-kvm", "-cpu", QEMU_KVM_CPU,
            "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
            "-global", "virtio-mmio.force-legacy=false", *base,
            "-netdev", f"tap,id=n0,ifname=tap0,script=no,downscript=no{v}",
            "-device", f"virtio-net-device,netdev=n0,mac={NET_MAC}"]))
    return out


# Interrupts of eth0's virtio device in the guest (its line in /proc/interrupts is named after
# the device, virtioN).
GUEST_IRQS = ("v=$(basename $(readlink /sys/class/net/eth0/device)); "
              "awk -v v=$v '$NF == v {print $2}' /proc/interrupts")


def own_cpu_ns(l1, pid: int) -> int:
    return int(l1.sh(OWN_CPU.format(pid=pid)).strip())


def kv(line: str) -> dict:
    d = dict(w.split("=", 1) for w in line.split() if "=" in w)
    d["count"] = line.split()[1] if len(line.split()) > 1 else "0"
    return d


def one_net(l1, name: str, argv: list[str], size: int, packets: int) -> dict:
    l1.sh("tunctl -d tap0 >/dev/null 2>&1; tunctl -t tap0 >/dev/null && ip link set tap0 up "
          f"&& ip addr add {HOST_IP}/24 dev tap0")
    vm = nested.L2(l1, name, argv, env={"STRATOVIRT_LOG_LEVEL": "off"})
    try:
        vm.wait_userspace(240)
        vm.sh(f"ip link set eth0 up && ip addr add {GUEST_IP}/24 dev eth0")
        deadline = 60
        while vm.out("cat /sys/class/net/eth0/carrier") != "1" and deadline:
            deadline -= 1
        vm.sh(f"ping -c 2 -W 10 {HOST_IP} >/dev/null")
        r = {}
        # TCP, guest to host and host to guest.
        l1.sh("(netxfer recv 6001 > /tmp/b.out 2>&1 &)")
        vm.out(f"netxfer send {HOST_IP} 6001 {size} 1", timeout=600)
        r["tcp_tx"] = kv(l1.sh("sleep 1; cat /tmp/b.out"))
        vm.sh("(netxfer recv 6002 > /tmp/b.out 2>&1 &)")
        l1.sh(f"netxfer send {GUEST_IP} 6002 {size} 2", timeout=600)
        r["tcp_rx"] = kv(vm.out("sleep 1; cat /tmp/b.out"))
        # UDP, 64-byte datagrams; CPU over the whole run of each.
        for way, port in (("udp_tx", 6003), ("udp_rx", 6004)):
            i0 = int(vm.out(GUEST_IRQS) or 0)
            c0 = own_cpu_ns(l1, vm.pid)
            if way == "udp_tx":
                l1.sh(f"(netxfer udprecv {port} 3 > /tmp/b.out 2>&1 &)")
                vm.out(f"netxfer udpsend {HOST_IP} {port} {packets} 64", timeout=600)
                got = kv(l1.sh("sleep 4; cat /tmp/b.out"))
            else:
                vm.sh(f"(netxfer udprecv {port} 3 > /tmp/b.out 2>&1 &)")
                l1.sh(f"netxfer udpsend {GUEST_IP} {port} {packets} 64", timeout=600)
                got = kv(vm.out("sleep 4; cat /tmp/b.out"))
            got["cpu_ns"] = str(own_cpu_ns(l1, vm.pid) - c0)
            got["irqs"] = str(int(vm.out(GUEST_IRQS) or 0) - i0)
            r[way] = got
        return r
    finally:
        vm.kill()
        l1.exec("tunctl -d tap0 >/dev/null 2>&1", check=False)


def net_bench(l1, runs: int, size: int, packets: int) -> dict:
    contestants = net_contestants()
    results: dict[str, list[dict]] = {name: [] for name, _ in contestants}
    for run in range(runs):
        for i, (name, argv) in enumerate(contestants):
            r = one_net(l1, f"n{run}-{i}", argv, size, packets)
            results[name].append(r)
            mbit = lambda x: int(x["count"]) * 8 / max(float(x["ms"]), 1) / 1e3  # noqa: E731
            print(f"  run {run + 1}: {name:18} tcp tx {mbit(r['tcp_tx']):6.1f} rx "
                  f"{mbit(r['tcp_rx']):6.1f} Mbit/s, udp tx {r['udp_tx']['count']} rx "
                  f"{r['udp_rx']['count']} packets ({r['udp_rx']['irqs']} guest irqs)", flush=True)

    def med(name, f):
        return statistics.median(f(r) for r in results[name])

    def mbit(way):
        return lambda r: int(r[way]["count"]) * 8 / max(float(r[way]["ms"]), 1) / 1e3

    def pps(way):
        return lambda r: int(r[way]["count"]) / max(float(r[way]["ms"]), 1) * 1e3

    def cpu(way):
        return lambda r: int(r[way]["cpu_ns"]) / max(int(r[way]["count"]), 1) / 1e3

    def irqs(way):
        return lambda r: int(r[way]["irqs"]) / max(int(r[way]["count"]), 1)

    print("\n| VMM | TCP guest->host | TCP host->guest | UDP 64 B guest->host | UDP 64 B host->guest "
          "| VMM CPU per packet, guest->host / host->guest | guest interrupts per packet |")
    print("|---|---|---|---|---|---|---|")
    for name, _ in contestants:
        print(f"| {name} | {med(name, mbit('tcp_tx')):.0f} Mbit/s | {med(name, mbit('tcp_rx')):.0f} Mbit/s "
              f"| {med(name, pps('udp_tx')):.0f} pkt/s | {med(name, pps('udp_rx')):.0f} pkt/s "
              f"| {med(name, cpu('udp_tx')):.1f} / {med(name, cpu('udp_rx')):.1f} us "
              f"| {med(name, irqs('udp_tx')):.2f} / {med(name, irqs('udp_rx')):.2f} |")
    print()
    for tag in ("user", "vhost"):
        s, q = f"stratovirt-{tag}", f"qemu-{tag}"
        print(f"{tag}: stratovirt / QEMU = TCP {med(s, mbit('tcp_tx')) / med(q, mbit('tcp_tx')):.2f}x "
              f"and {med(s, mbit('tcp_rx')) / med(q, mbit('tcp_rx')):.2f}x, UDP "
              f"{med(s, pps('udp_tx')) / med(q, pps('udp_tx')):.2f}x and "
              f"{med(s, pps('udp_rx')) / med(q, pps('udp_rx')):.2f}x; QEMU / stratovirt CPU per "
              f"packet {med(q, cpu('udp_tx')) / max(med(s, cpu('udp_tx')), 1e-9):.2f}x and "
              f"{med(q, cpu('udp_rx')) / max(med(s, cpu('udp_rx')), 1e-9):.2f}x")
    return results


# -- vsock -------------------------------------------------------------------------------------

VSOCK_UDS = "/run/bench-vsock.sock"
SENT_RE = re.compile(r"sent (\d+) sum=\w+ echoed=(\d+) esum=\w+ ms=(\d+)")
CONNS_RE = re.compile(r"conns (\d+) ms=(\d+)")


def vsock_contestants() -> list[tuple[str, list[str]]]:
    base = ["-kernel", f"{nested.L1_L2DIR}/vmlinux", "-initrd", INITRD, "-append", APPEND,
            "-smp", "1", "-m", "256M", "-serial", "stdio"]
    return [
        ("stratovirt-user", ["/usr/bin/stratovirt", *base, "-device",
                             f"vhost-vsock-device,id=v0,guest-cid=3,uds-path={VSOCK_UDS}"]),
        ("stratovirt-vhost", ["/usr/bin/stratovirt", *base, "-device", "vhost-vsock-device,id=v0,guest-cid=3"]),
        ("qemu-vhost", ["/usr/bin/qemu-system-x86_64", "-M", "microvm,acpi=off,rtc=on", "-enable-kvm",
                        "-cpu", QEMU_KVM_CPU, "-nodefaults", "-no-user-config", "-nographic",
                        "-no-reboot", "-global", "virtio-mmio.force-legacy=false", *base,
                        "-device", "vhost-vsock-device,guest-cid=3"]),
    ]


def one_vsock(l1, name: str, argv: list[str], size: int, conns: int) -> dict:
    """One boot: MiB/s guest->host and host->guest (one way, to a sink that answers the count),
    and sequential connections per second, host to guest (one byte echoed each)."""
    l1.exec(f"rm -f {VSOCK_UDS}*", check=False)
    vm = nested.L2(l1, name, argv, env={"STRATOVIRT_LOG_LEVEL": "off"})
    user = any("uds-path=" in a for a in argv)
    try:
        vm.wait_userspace(240)
        r = {}
        # Host to guest.
        vm.sh("(vsockxfer listen 7000 1 sink > /dev/null 2>&1 &)")
        send = f"usend {VSOCK_UDS}" if user else "send 3"
        m = SENT_RE.search(l1.sh(f"vsockxfer {send} 7000 {size} 1 oneway", timeout=900))
        r["rx"] = {"bytes": int(m.group(1)), "ms": int(m.group(3))}
        # Guest to host.
        where = f"ulisten {VSOCK_UDS}_7001" if user else "listen 7001"
        l1.sh(f"(vsockxfer {where} 1 sink > /dev/null 2>&1 &)")
        m = SENT_RE.search(vm.out(f"sleep 0.5; vsockxfer send 2 7001 {size} 2 oneway", timeout=900))
        r["tx"] = {"bytes": int(m.group(1)), "ms": int(m.group(3))}
        # Connection setup, host to guest.
        vm.sh(f"(vsockxfer listen 7002 {conns} > /dev/null 2>&1 &)")
        opener = f"uconns {VSOCK_UDS}" if user else "conns 3"
        m = CONNS_RE.search(l1.sh(f"sleep 0.5; vsockxfer {opener} 7002 {conns}", timeout=900))
        r["conns"] = {"count": int(m.group(1)), "ms": int(m.group(2))}
        return r
    finally:
        vm.kill()
        l1.exec(f"rm -f {VSOCK_UDS}*", check=False)


def vsock_bench(l1, runs: int, size: int, conns: int) -> dict:
    contestants = vsock_contestants()
    results: dict[str, list[dict]] = {name: [] for name, _ in contestants}
    mibs = lambda x: x["bytes"] / (1 << 20) / max(x["ms"], 1) * 1e3  # noqa: E731
    rate = lambda x: x["count"] / max(x["ms"], 1) * 1e3  # noqa: E731
    for run in range(runs):
        for i, (name, argv) in enumerate(contestants):
            r = one_vsock(l1, f"v{run}-{i}", argv, size, conns)
            results[name].append(r)
            print(f"  run {run + 1}: {name:17} guest->host {mibs(r['tx']):6.1f} MiB/s, host->guest "
                  f"{mibs(r['rx']):6.1f} MiB/s, {rate(r['conns']):6.1f} connections/s", flush=True)

    def med(name, way, f):
        return statistics.median(f(r[way]) for r in results[name])

    print("\n| VMM | guest->host | host->guest | connections/s (host to guest, sequential) |")
    print("|---|---|---|---|")
    for name, _ in contestants:
        print(f"| {name} | {med(name, 'tx', mibs):.1f} MiB/s | {med(name, 'rx', mibs):.1f} MiB/s "
              f"| {med(name, 'conns', rate):.0f} |")
    print()
    q = "qemu-vhost"
    for name in ("stratovirt-vhost", "stratovirt-user"):
        print(f"{name} / {q} = guest->host {med(name, 'tx', mibs) / med(q, 'tx', mibs):.2f}x, "
              f"host->guest {med(name, 'rx', mibs) / med(q, 'rx', mibs):.2f}x, connections "
              f"{med(name, 'conns', rate) / med(q, 'conns', rate):.2f}x")
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--baseline", help="another stratovirt binary to time beside this one")
    ap.add_argument("--json", default=os.path.join(nested.ROOT, "target", "bench-linux.json"))
    ap.add_argument("--what", default="boot,net,vsock", help="boot, net, vsock, or a list (default: all)")
    ap.add_argument("--vsock-runs", type=int, default=3)
    ap.add_argument("--vsock-bytes", type=int, default=16 << 20, help="per stream transfer")
    ap.add_argument("--vsock-conns", type=int, default=100, help="sequential connections per run")
    ap.add_argument("--net-runs", type=int, default=3)
    ap.add_argument("--net-bytes", type=int, default=32 << 20, help="per TCP transfer")
    ap.add_argument("--net-packets", type=int, default=20000, help="per UDP run")
    args = ap.parse_args()
    what = set(args.what.split(","))

    arts = build.build_all()
    work = tempfile.mkdtemp(prefix="bench-linux-")
    payload = nested.Payload(arts, work)
    if args.baseline:
        payload.extra_binaries = {"/usr/bin/stratovirt-baseline": os.path.abspath(args.baseline)}
    payload.build()
    contestants = []
    for kernel in ("bzImage", "vmlinux"):
        contestants.append((f"stratovirt {kernel}", stratovirt_argv("/usr/bin/stratovirt", kernel)))
        if args.baseline:
            contestants.append((f"baseline {kernel}",
                                stratovirt_argv("/usr/bin/stratovirt-baseline", kernel)))
        contestants.append((f"qemu-microvm {kernel}", qemu_argv(kernel)))
    results: dict[str, list[dict]] = {name: [] for name, _ in contestants}
    with nested.L1(arts, payload.path, work) as l1:
        print(f"L1 booted in {l1.boot_seconds:.1f} s", flush=True)
        if "net" in what:
            print(f"# network: {args.net_runs} runs each, alternating; TCP {args.net_bytes} bytes, "
                  f"UDP {args.net_packets} datagrams of 64 bytes", flush=True)
            net = net_bench(l1, args.net_runs, args.net_bytes, args.net_packets)
            os.makedirs(os.path.dirname(args.json), exist_ok=True)
            with open(args.json.replace(".json", "-net.json"), "w") as f:
                json.dump(net, f, indent=1)
        if "vsock" in what:
            print(f"# vsock: {args.vsock_runs} runs each, alternating; {args.vsock_bytes} bytes each "
                  f"way, {args.vsock_conns} connections", flush=True)
            vs = vsock_bench(l1, args.vsock_runs, args.vsock_bytes, args.vsock_conns)
            os.makedirs(os.path.dirname(args.json), exist_ok=True)
            with open(args.json.replace(".json", "-vsock.json"), "w") as f:
                json.dump(vs, f, indent=1)
        if "boot" not in what:
            shutil.rmtree(work, ignore_errors=True)
            return 0
        print(f"# boot: {args.runs} runs each, alternating", flush=True)
        for run in range(args.runs):
            for i, (name, argv) in enumerate(contestants):
                r = one_boot(l1, f"b{run}-{i}", argv)
                results[name].append(r)
                print(f"  run {run + 1}: {name:24} {r['spawn_to_userspace']:6.2f} s "
                      f"(guest uptime {r['guest_uptime']:.2f} s)", flush=True)

    def med(name, key):
        return statistics.median(r[key] for r in results[name])

    print("\n| VMM | kernel | spawn -> userspace (median, min-max) | guest kernel uptime | before the kernel's clock |")
    print("|---|---|---|---|---|")
    for name, _ in contestants:
        vmm, kernel = name.split()
        xs = [r["spawn_to_userspace"] for r in results[name]]
        print(f"| {vmm} | {kernel} | {statistics.median(xs):.2f} s ({min(xs):.2f}-{max(xs):.2f}) | "
              f"{med(name, 'guest_uptime'):.2f} s | "
              f"{med(name, 'spawn_to_userspace') - med(name, 'guest_uptime'):.2f} s |")
    print()
    for kernel in ("bzImage", "vmlinux"):
        ours = med(f"stratovirt {kernel}", "spawn_to_userspace")
        peer = med(f"qemu-microvm {kernel}", "spawn_to_userspace")
        fastest = lambda n: min(r["spawn_to_userspace"] for r in results[n])
        print(f"{kernel}: QEMU microvm / stratovirt = {peer / ours:.2f}x on medians, "
              f"{fastest(f'qemu-microvm {kernel}') / fastest(f'stratovirt {kernel}'):.2f}x on the "
              f"fastest runs ({'stratovirt faster' if peer > ours else 'QEMU faster'} on medians)")
        if args.baseline:
            base = med(f"baseline {kernel}", "spawn_to_userspace")
            print(f"{kernel}: baseline / stratovirt = {base / ours:.2f}x")
    print("\nlargest gaps in the guest's boot log (seconds, the line after the gap), last run:")
    for name, _ in contestants:
        print(f"  {name}:")
        for g in results[name][-1]["gaps"]:
            print(f"    {g[:110]}")
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=1)
    print(f"\nraw results: {args.json}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
