"""Real Linux boots under stratovirt the ways users boot it: kernel formats, vCPUs, memory, a
root file system on virtio-blk, the command line and -config JSON, and the ways it ends."""

from __future__ import annotations

import json
import re

import pytest

from nested import L1_L2DIR, L1_WORK, L2_APPEND, stratovirt_argv

ROOT_APPEND = "console=ttyS0 reboot=k panic=1 quiet root=/dev/vda rw"


def copy_rootfs(l1, path: str) -> str:
    """A fresh copy of the L2 root file system image (ext4 made with mkfs.ext4 -d)."""
    l1.sh(f"mkdir -p $(dirname {path}) && cp {L1_L2DIR}/rootfs.ext4 {path}")
    return path


def meminfo_kib(vm, key: str) -> int:
    return int(re.search(rf"^{key}:\s+(\d+) kB", vm.out("cat /proc/meminfo"), re.M).group(1))


# Pairwise coverage of kernel format x vCPUs x memory: every value of each meets every value of
# the others once.
@pytest.mark.parametrize("kernel,cpus,mem_mib", [
    ("vmlinux", 1, 128), ("bzImage", 1, 2048), ("vmlinux", 4, 2048), ("bzImage", 4, 128)])
def test_kernel_formats_cpus_and_memory(vms, kernel, cpus, mem_mib):
    vm = vms.boot(f"boot-{kernel}-{cpus}-{mem_mib}",
                  stratovirt_argv(kernel=f"{L1_L2DIR}/{kernel}", smp=cpus, mem=f"{mem_mib}M"))
    assert vm.out("grep -c ^processor /proc/cpuinfo") == str(cpus)
    assert vm.out("cat /sys/devices/system/cpu/online") == ("0" if cpus == 1 else f"0-{cpus - 1}")
    # The e820 map gives the guest all of its RAM but the first page, the EBDA and the legacy
    # hole below 1 MiB; the kernel keeps some of it for itself.
    total = meminfo_kib(vm, "MemTotal")
    assert mem_mib * 1024 * 0.80 < total <= mem_mib * 1024, total
    m = re.search(r"Memory: \d+K/(\d+)K available", vm.out("dmesg | grep 'Memory:'"))
    assert mem_mib * 1024 - 1024 <= int(m.group(1)) <= mem_mib * 1024, m.group(0)


def test_root_file_system_on_virtio_blk_written_and_read_back(l1, vms):
    image = copy_rootfs(l1, f"{L1_WORK}/rw/root.ext4")
    vm = vms.boot("rootfs-rw", stratovirt_argv(
        append=ROOT_APPEND, initrd=None,
        extra=["-drive", f"id=rootfs,file={image},readonly=off,direct=off",
               "-device", "virtio-blk-device,drive=rootfs"]))
    mounts = vm.out("cat /proc/mounts")
    assert re.search(r"^/dev/root / ext4 rw", mounts, re.M), mounts
    root_dev = vm.out("awk '$5 == \"/\" {print $3}' /proc/self/mountinfo")
    assert root_dev == vm.out("cat /sys/block/vda/dev"), root_dev
    vm.sh("echo written-by-l2-$(cat /proc/sys/kernel/random/boot_id) > /hello.txt && sync")
    want = vm.out("cat /hello.txt")
    vm.send("reboot -f\n")
    assert vm.wait_exit(60)["rc"] == 0
    assert l1.sh(f"debugfs -R 'cat /hello.txt' {image} 2>/dev/null").strip() == want


def test_readonly_disk_gives_erofs_and_serial_shows(l1, vms):
    root = copy_rootfs(l1, f"{L1_WORK}/ro/root.ext4")
    data = copy_rootfs(l1, f"{L1_WORK}/ro/data.ext4")
    vm = vms.boot("readonly", stratovirt_argv(
        append=ROOT_APPEND, initrd=None,
        extra=["-drive", f"id=rootfs,file={root},serial=SV-ROOT-0001",
               "-device", "virtio-blk-device,drive=rootfs",
               "-drive", f"id=data,file={data},readonly=on,serial=SV-DATA-0002",
               "-device", "virtio-blk-device,drive=data"]))
    assert vm.out("cat /sys/block/vda/serial") == "SV-ROOT-0001"
    assert vm.out("cat /sys/block/vdb/serial") == "SV-DATA-0002"
    assert vm.out("cat /sys/block/vda/ro /sys/block/vdb/ro").split() == ["0", "1"]
    vm.sh("mkdir -p /mnt && mount -t ext4 -o ro /dev/vdb /mnt")
    rc, out = vm.sh("touch /mnt/new-file", check=False)
    assert rc != 0 and "Read-only file system" in out, out
    rc, out = vm.sh("mount -o remount,rw /mnt", check=False)
    assert rc != 0, out
    rc, out = vm.sh("dd if=/dev/zero of=/dev/vdb bs=4096 count=1 oflag=direct", check=False)
    assert rc != 0, out
    assert vm.out("cat /mnt/init | head -1") == "#!/bin/sh"


def test_direct_io_root_on_ext4(l1, vms):
    image = copy_rootfs(l1, f"{L1_WORK}/direct/root.ext4")
    vm = vms.boot("direct", stratovirt_argv(
        append=ROOT_APPEND, initrd=None,
        extra=["-drive", f"id=rootfs,file={image},direct=on",
               "-device", "virtio-blk-device,drive=rootfs"]))
    # The VMM really opened the image with O_DIRECT (040000 in fdinfo's octal flags).
    flags = l1.sh(f"for f in /proc/{vm.pid}/fd/*; do [ \"$(readlink $f)\" = {image} ] && "
                  f"grep flags /proc/{vm.pid}/fdinfo/${{f##*/}}; done; true")
    assert flags and all(int(line.split()[1], 8) & 0o40000 for line in flags.splitlines()), flags
    vm.sh("dd if=/dev/urandom of=/blob bs=64k count=16 2>/dev/null && sync && "
          "echo 3 > /proc/sys/vm/drop_caches")
    want = vm.out("md5sum /blob").split()[0]
    vm.send("reboot -f\n")
    assert vm.wait_exit(60)["rc"] == 0
    got = l1.sh(f"debugfs -R 'cat /blob' {image} 2>/dev/null | md5sum").split()[0]
    assert got == want


def test_command_line_and_json_boot_the_same_guest(l1, vms):
    image = copy_rootfs(l1, f"{L1_WORK}/json/root.ext4")
    config = {
        "boot-source": {"kernel_image_path": f"{L1_L2DIR}/bzImage",
                        "boot_args": ROOT_APPEND + " ro"},
        "machine-config": {"name": "json-vm", "vcpu_count": 2, "mem_size": 268435456},
        "drive": [{"drive_id": "rootfs", "path_on_host": image, "read_only": False,
                   "direct": False, "serial_num": "SV-JSON"}],
        "serial": {"stdio": True},
    }
    l1.put(f"{L1_WORK}/json/vm.json", json.dumps(config).encode())
    probe = ("cat /proc/cmdline; grep -c ^processor /proc/cpuinfo; "
             "grep MemTotal /proc/meminfo; cat /sys/block/vda/size /sys/block/vda/serial")
    seen = []
    for name, argv in [
        ("json", ["/usr/bin/stratovirt", "-config", f"{L1_WORK}/json/vm.json"]),
        ("cmdline", ["/usr/bin/stratovirt", "-name", "json-vm", "-kernel", f"{L1_L2DIR}/bzImage",
                     "-append", ROOT_APPEND + " ro", "-smp", "2", "-m", "256M",
                     "-drive", f"id=rootfs,file={image},readonly=off,direct=off,serial=SV-JSON",
                     "-serial", "stdio"]),
    ]:
        vm = vms.boot(f"same-{name}", argv)
        seen.append(vm.out(probe))
        vm.send("reboot -f\n")
        assert vm.wait_exit(60)["rc"] == 0
    assert seen[0] == seen[1]
    assert "SV-JSON" in seen[0] and "\n2\n" in seen[0]


def test_reboot_ends_the_vmm_with_status_0(vms):
    vm = vms.boot("reboot", stratovirt_argv())
    vm.send("reboot -f\n")
    assert vm.wait_exit(60) == {"exited": True, "rc": 0, "signal": None}


def test_guest_panic_with_panic_1_ends_the_vmm(vms):
    vm = vms.boot("panic", stratovirt_argv())
    # Ending the shell ends PID 1: "Attempted to kill init", then panic=1 reboots after 1 s.
    vm.send("exit\n")
    vm.wait_for(r"Kernel panic - not syncing: Attempted to kill init", 60)
    assert vm.wait_exit(60)["rc"] == 0
