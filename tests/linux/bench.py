#!/usr/bin/env python3
"""Real-Linux boot benchmark: L2 Linux to userspace under stratovirt and under QEMU microvm,
with the same kernel, initramfs and disk, in the same nested L1, runs alternating.

    make bench-linux                   # or: .venv/bin/python tests/linux/bench.py [--runs N]
    tests/linux/bench.py --baseline OLD_STRATOVIRT   # also time another stratovirt build

For each VMM and kernel format it reports spawn -> L2 userspace (seen on the host), the guest
kernel's own uptime at that point, and the largest gaps in the guest's boot log. Absolute times
under TCG mean little; the ratios and the gaps do. Results also go to --json.
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--baseline", help="another stratovirt binary to time beside this one")
    ap.add_argument("--json", default=os.path.join(nested.ROOT, "target", "bench-linux.json"))
    args = ap.parse_args()

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
        print(f"L1 booted in {l1.boot_seconds:.1f} s; {args.runs} runs each, alternating", flush=True)
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
