"""The test kernel's virtio-blk driver on QEMU microvm (modern virtio-mmio, `acpi=off` so the
transports are on the command line): the same CRCs both ways as on stratovirt, serial, read-only,
the benchmark command, and the malformed requests QEMU survives.

QEMU 7.2 hangs for good on `blk evil mmio` (a data buffer on the device's own MMIO window), so
that case is not sent here."""
import os
import zlib

from harness import Vm, parse_kv, qemu_microvm_cmd
from test_blk import SECTOR, blk_list, crc_of, disk_pattern, image, read_image

READY = r"^READY cpus=(\d+) mem=(\d+) virtio=(\d+)\r?$"


def qemu_vm(elf, disks):
    """disks: [(path, read_only, serial)] as virtio-blk-device on virtio-mmio (modern)."""
    extra = ["-global", "virtio-mmio.force-legacy=false"]
    for i, (path, ro, serial) in enumerate(disks):
        drive = f"id=d{i},file={path},format=raw,if=none,cache=none,aio=threads"
        if ro:
            drive += ",readonly=on"
        dev = f"virtio-blk-device,drive=d{i}" + (f",serial={serial}" if serial else "")
        extra += ["-drive", drive, "-device", dev]
    vm = Vm(qemu_microvm_cmd(elf, cpus=1, mem_mib=128, extra=extra, machine_opts="acpi=off",
                             append="console=ttyS0"))
    try:
        m = vm.wait_for(READY, 30)
    except Exception:
        vm.kill()
        raise
    assert int(m.group(3)) == len(disks)
    return vm


def test_qemu_disks_crc_both_ways_serial_and_read_only(qemu, testkernel_elf, tmp_path):
    blob = os.urandom(128 * 1024)
    rw = image(tmp_path, "rw.img", 4 << 20, blob)
    ro = image(tmp_path, "ro.img", 1 << 20, blob[:4096])
    vm = qemu_vm(testkernel_elf, [(rw, False, "qserial"), (ro, True, None)])
    try:
        disks = blk_list(vm)
        assert disks["vda"]["capacity"] == "8192" and disks["vda"]["serial"] == "qserial"
        assert disks["vda"]["ro"] == "0" and disks["vdb"]["ro"] == "1"
        assert disks["vdb"]["capacity"] == "2048"
        assert crc_of(vm, "vda", 0, 256) == zlib.crc32(blob[:256 * SECTOR])
        assert crc_of(vm, "vda", 1, 9, 4) == zlib.crc32(blob[SECTOR:10 * SECTOR])
        vm.cmd_ok("blk write vda 1000 64 21 3")
        vm.cmd_ok("blk flush vda")
        assert read_image(rw, 1000, 64) == disk_pattern(21, 1000, 64)
        assert crc_of(vm, "vda", 1000, 64) == zlib.crc32(disk_pattern(21, 1000, 64))
        assert vm.cmd("blk write vdb 0 1 1")[-1] == "ERR ioerr"
        assert crc_of(vm, "vdb", 0, 8) == zlib.crc32(blob[:4096])
        assert vm.cmd("blk read vda 8192 1")[-1] == "ERR ioerr"
        r = parse_kv(vm.cmd_ok("blk bench vda 200 32"))
        assert r["requests"] == "200"
        r = parse_kv(vm.cmd_ok("blk bench vda 200 1 write"))
        assert r["requests"] == "200"
    finally:
        vm.kill()


def test_qemu_survives_malformed_requests(qemu, testkernel_elf, tmp_path):
    blob = os.urandom(4096)
    img = image(tmp_path, "rw.img", 1 << 20, blob)
    vm = qemu_vm(testkernel_elf, [(img, False, None)])
    try:
        cases = [l.split(" - ")[0] for l in vm.cmd_ok("blk evil list")]
        assert "mmio" in cases
        outcomes = {}
        for case in cases:
            if case == "mmio":
                continue
            out = vm.cmd_ok(f"blk evil {case}")[-1]
            outcomes[case] = out.split(" device_status")[0]
            assert out.split()[0] in ("needs-reset", "timeout") or out.startswith("status="), out
            if "state=ready" not in out:
                vm.cmd_ok("blk reset vda")
            assert crc_of(vm, "vda", 0, 8) == zlib.crc32(blob), (case, out)
        # What QEMU 7.2 does, for the record: it marks the device broken on chain errors and
        # answers range errors with IOERR, type errors with UNSUPP.
        assert outcomes["loop"] == "needs-reset"
        assert outcomes["badidx"] == "needs-reset"
        assert outcomes["pastend"].startswith("status=1")
        assert outcomes["badtype"].startswith("status=2")
    finally:
        vm.kill()
