"""Disks end to end: stratovirt with virtio-blk slots, driven by the test kernel's `blk` shell
commands (docs/testkernel.md) and QMP.

Data written by the host into an image reads back with the same CRC-32 in the guest, and the
guest's writes (a documented seeded pattern) are in the image after `blk flush` and after QMP
`quit`; read-only disks refuse writes; boot disks come from the command line and from JSON with
their serial numbers; direct=on (O_DIRECT, the image on ext4) and direct=off; the seed's
hot-plug transcript replays exactly; ten add/remove cycles of three disks leave no descriptor
behind and the guest sees every capacity change; a hot-plugged read-only disk refuses writes
(and says so after a device reset); every QMP misuse is refused with its message
and changes nothing; every malformed request (`blk evil`) is answered or ignored and the VMM
keeps serving.
"""
import json
import os
import random
import re
import subprocess
import time
import zlib

import pytest

from harness import parse_kv
from svm import BIN, KERNEL_BIN, RawQmp, boot

SECTOR = 512
MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
APPEND = "console=ttyS0 reboot=k panic=1"


# -- the guest's disk pattern (docs/testkernel.md, "Disk pattern") ---------------------------

def pattern_value(seed, x):
    z = (x ^ (((seed << 32) | (seed >> 32)) & MASK) ^ GOLDEN) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def disk_pattern(seed, first_sector, count):
    """The bytes `blk write <dev> <first_sector> <count> <seed>` writes."""
    out = bytearray()
    for s in range(first_sector, first_sector + count):
        base = pattern_value(seed, s)
        out += b"".join(((base + i * GOLDEN) & MASK).to_bytes(8, "little") for i in range(64))
    return bytes(out)


def test_pattern_matches_the_guest_unit_test_values():
    assert pattern_value(1, 0) == 0x219FC13D6BC5B015
    assert zlib.crc32(disk_pattern(1, 0, 2)) == 0x1667A93C
    assert zlib.crc32(disk_pattern(42, 100, 8)) == 0xBC27725E


# -- helpers -----------------------------------------------------------------------------------

def image(tmp_path, name, size, data=None, at=0):
    """A sparse image of `size` bytes, optionally with `data` at byte offset `at`."""
    p = tmp_path / name
    with open(p, "wb") as f:
        f.truncate(size)
        if data:
            f.seek(at)
            f.write(data)
    return str(p)


def read_image(path, sector, count):
    with open(path, "rb") as f:
        f.seek(sector * SECTOR)
        return f.read(count * SECTOR)


def drive_args(disks):
    """-drive/-device pairs for [(id, path, read_only, direct, serial)]."""
    out = []
    for (did, path, ro, direct, serial) in disks:
        d = f"id={did},file={path},readonly={'on' if ro else 'off'},direct={'on' if direct else 'off'}"
        if serial:
            d += f",serial={serial}"
        out += ["-drive", d, "-device", f"virtio-blk-device,drive={did}"]
    return out


def svm_cmd(disks=(), qmp=None, append=APPEND, mem=128):
    cmd = [BIN, "-kernel", KERNEL_BIN, "-append", append, "-smp", "1", "-m", str(mem),
           "-serial", "stdio"]
    if qmp:
        cmd += ["-qmp", f"unix:{qmp},server,nowait"]
    return cmd + drive_args(disks)


def blk_list(vm):
    """name -> key/value dict of `blk list`."""
    out = {}
    for line in vm.cmd_ok("blk list"):
        if line.startswith("vd"):
            name = line.split()[0]
            out[name] = parse_kv(line.split()[1:])
    return out


def crc_of(vm, dev, sector, count, segs=None):
    line = f"blk read {dev} {sector} {count}" + (f" {segs}" if segs else "")
    lines = vm.cmd_ok(line)
    m = re.fullmatch(r"crc32=([0-9a-f]{8})", lines[-1])
    assert m, lines
    return int(m.group(1), 16)


def open_fds(pid):
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[fd] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            pass
    return out


def same_shape(actual, expected, ignore=("timestamp",)):
    """Same keys in the same order and the same values, except the ignored keys' values."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and list(actual) == list(expected), (actual, expected)
        for k in expected:
            if k not in ignore:
                same_shape(actual[k], expected[k], ignore)
    else:
        assert actual == expected, (actual, expected)


def wait_guest(vm, dev, key, value, timeout=10):
    """Polls `blk list` until disk `dev` shows key=value; returns its fields."""
    end = time.time() + timeout
    while True:
        d = blk_list(vm)[dev]
        if d[key] == str(value):
            return d
        if time.time() > end:
            raise AssertionError(f"{dev} never showed {key}={value}: {d}")
        time.sleep(0.05)


def ext4_tmp(tmp_path):
    """Whether tmp_path's file system takes O_DIRECT the way ext4 does (stat -f reports ext4 as
    ext2/ext3)."""
    fs = subprocess.run(["stat", "-f", "-c", "%T", str(tmp_path)], capture_output=True,
                        text=True).stdout.strip()
    return fs.startswith("ext")


# -- boot disks --------------------------------------------------------------------------------

def test_cmdline_disks_are_listed_with_capacity_serial_and_read_only(tmp_path):
    root = image(tmp_path, "root.img", 4 << 20)
    data = image(tmp_path, "data.img", 1 << 20)
    ro = image(tmp_path, "ro.img", 3 * 512 + 100)  # capacity rounds down to whole sectors
    vm, m = boot(svm_cmd([("rootfs", root, False, False, "abc"),
                          ("data", data, False, False, None),
                          ("ro", ro, True, False, "serial-of-ro-disk-20")]))
    try:
        assert m.group(3) == "8", "six disk slots and two NIC slots"
        disks = blk_list(vm)
        assert list(disks) == ["vda", "vdb", "vdc", "vdd", "vde", "vdf"]
        assert disks["vda"]["capacity"] == str(8192) and disks["vda"]["serial"] == "abc"
        assert disks["vda"]["ro"] == "0" and disks["vda"]["state"] == "ready"
        assert disks["vdb"]["capacity"] == "2048" and disks["vdb"]["serial"] == ""
        assert disks["vdc"]["capacity"] == "3" and disks["vdc"]["ro"] == "1"
        assert disks["vdc"]["serial"] == "serial-of-ro-disk-20", "all 20 bytes, no NUL"
        for empty in ("vdd", "vde", "vdf"):
            assert disks[empty]["capacity"] == "0" and disks[empty]["serial"] == "-"
            assert disks[empty]["state"] == "ready"
        # Features: VERSION_1 and EVENT_IDX taken; RO only on the read-only disk.
        for name, d in disks.items():
            f = int(d["features"], 16)
            assert f & (1 << 32) and f & (1 << 29), (name, d)
            assert bool(f & (1 << 5)) == (name == "vdc"), (name, d)
        assert vm.cmd("blk id vdc")[-2:] == ["serial=serial-of-ro-disk-20", "OK"]
        # An empty slot fails every request.
        assert vm.cmd("blk read vdd 0 1")[-1] == "ERR ioerr"
        assert vm.cmd("blk flush vdd")[-1] == "ERR ioerr"
    finally:
        vm.kill()


def test_json_config_disks_with_serials(tmp_path):
    rootdata = os.urandom(64 * 1024)
    root = image(tmp_path, "root.img", 2 << 20, rootdata)
    data = image(tmp_path, "data.img", 1 << 20)
    cfg = {
        "boot-source": {"kernel_image_path": KERNEL_BIN, "boot_args": APPEND},
        "machine-config": {"name": "blk", "vcpu_count": 1, "mem_size": 134217728},
        "drive": [
            {"drive_id": "rootfs", "path_on_host": root, "read_only": False, "direct": False,
             "serial_num": "abcd"},
            {"drive_id": "data", "path_on_host": data, "read_only": True, "direct": False},
        ],
        "serial": {"stdio": True},
    }
    f = tmp_path / "vm.json"
    f.write_text(json.dumps(cfg))
    vm, _ = boot([BIN, "-config", str(f), "-api-channel", f"unix:{tmp_path / 'api.sock'}"])
    try:
        disks = blk_list(vm)
        assert disks["vda"]["serial"] == "abcd" and disks["vda"]["capacity"] == "4096"
        assert disks["vdb"]["ro"] == "1" and disks["vdb"]["capacity"] == "2048"
        assert disks["vdc"]["capacity"] == "0"
        assert crc_of(vm, "vda", 0, 128) == zlib.crc32(rootdata)
        assert vm.cmd("blk write vdb 0 1 1")[-1] == "ERR ioerr"
    finally:
        vm.kill()


# -- data both ways ----------------------------------------------------------------------------

@pytest.mark.parametrize("direct", [False, True], ids=["direct=off", "direct=on"])
def test_host_data_reads_back_with_the_same_crc(tmp_path, direct):
    if direct and not ext4_tmp(tmp_path):
        pytest.fail(f"{tmp_path} is not on ext4; direct=on needs a file system with O_DIRECT")
    rng = random.Random(7)
    blob = bytes(rng.getrandbits(8) for _ in range(256 * 1024))
    root = image(tmp_path, "root.img", 8 << 20, blob, at=1 << 20)
    vm, _ = boot(svm_cmd([("rootfs", root, False, direct, None)]))
    try:
        first = (1 << 20) // SECTOR
        # One sector, a page, the largest transfer; unaligned multi-descriptor buffers.
        for (off, count, segs) in [(0, 1, None), (0, 8, None), (3, 5, 3), (0, 256, None),
                                   (256, 256, 16), (17, 100, 7)]:
            want = zlib.crc32(blob[off * SECTOR:(off + count) * SECTOR])
            assert crc_of(vm, "vda", first + off, count, segs) == want, (off, count, segs)
        # Untouched sparse space reads as zeros.
        assert crc_of(vm, "vda", 0, 8) == zlib.crc32(bytes(4096))
        # The last sector is readable, the one after it is not.
        last = (8 << 20) // SECTOR - 1
        assert crc_of(vm, "vda", last, 1) == zlib.crc32(bytes(512))
        assert vm.cmd(f"blk read vda {last} 2")[-1] == "ERR ioerr"
        assert vm.cmd(f"blk read vda {last + 1} 1")[-1] == "ERR ioerr"
    finally:
        vm.kill()


@pytest.mark.parametrize("direct", [False, True], ids=["direct=off", "direct=on"])
def test_guest_writes_reach_the_image_after_flush_and_after_quit(tmp_path, direct):
    if direct and not ext4_tmp(tmp_path):
        pytest.fail(f"{tmp_path} is not on ext4; direct=on needs a file system with O_DIRECT")
    root = image(tmp_path, "root.img", 4 << 20)
    data = image(tmp_path, "data.img", 2 << 20)
    sock = str(tmp_path / "qmp.sock")
    vm, _ = boot(svm_cmd([("rootfs", root, False, direct, None),
                          ("data", data, False, direct, None)], qmp=sock))
    try:
        vm.cmd_ok("blk write vda 10 16 1234")
        vm.cmd_ok("blk write vdb 0 256 99 5")
        vm.cmd_ok("blk flush vda")
        vm.cmd_ok("blk flush vdb")
        assert read_image(root, 10, 16) == disk_pattern(1234, 10, 16)
        assert read_image(data, 0, 256) == disk_pattern(99, 0, 256)
        assert read_image(root, 0, 10) == bytes(10 * SECTOR), "nothing written outside the range"
        assert read_image(root, 26, 6) == bytes(6 * SECTOR)
        # The guest reads its own pattern back with the host-computed CRC.
        assert crc_of(vm, "vda", 10, 16) == zlib.crc32(disk_pattern(1234, 10, 16))
        # Writes with no flush, then quit: the VMM flushes on the way out.
        vm.cmd_ok("blk write vda 4000 200 77 9")
        vm.cmd_ok("blk write vdb 4095 1 78")
        q = RawQmp(sock)
        _, r = q.execute("quit")
        assert r == {"return": {}}
        assert vm.wait_exit(20) == 0
        assert read_image(root, 4000, 200) == disk_pattern(77, 4000, 200)
        assert read_image(data, 4095, 1) == disk_pattern(78, 4095, 1)
    finally:
        vm.kill()


def test_read_only_disk_refuses_writes(tmp_path):
    blob = os.urandom(8192)
    root = image(tmp_path, "root.img", 1 << 20)
    ro = image(tmp_path, "ro.img", 1 << 20, blob)
    vm, _ = boot(svm_cmd([("rootfs", root, False, False, None), ("ro", ro, True, False, None)]))
    try:
        assert blk_list(vm)["vdb"]["ro"] == "1"
        assert vm.cmd("blk write vdb 0 16 5")[-1] == "ERR ioerr"
        assert vm.cmd("blk write vdb 100 1 5 1")[-1] == "ERR ioerr"
        assert vm.cmd("blk bench vdb 10 4 write")[-1] == "ERR ioerr"
        assert crc_of(vm, "vdb", 0, 16) == zlib.crc32(blob)
        vm.cmd_ok("blk flush vdb")
        with open(ro, "rb") as f:
            assert f.read(8192) == blob and f.read() == bytes((1 << 20) - 8192)
        # The writable disk next to it still takes writes.
        vm.cmd_ok("blk write vda 0 1 5")
    finally:
        vm.kill()


def test_shell_misuse_is_refused(tmp_path):
    root = image(tmp_path, "root.img", 1 << 20)
    vm, _ = boot(svm_cmd([("rootfs", root, False, False, None)]))
    try:
        assert vm.cmd("blk read vda 0 257")[-1] == "ERR count must be 1..256"
        assert vm.cmd("blk read vda 0 0")[-1] == "ERR count must be 1..256"
        assert vm.cmd("blk read vda 0 8 17")[-1] == "ERR segs must be 1..16"
        assert vm.cmd("blk read vdz 0 1")[-1] == "ERR no such disk; disks=6"
        assert vm.cmd("blk read sda 0 1")[-1].startswith("ERR bad device name")
        assert vm.cmd("blk read vda x 1")[-1] == "ERR bad sector"
        assert vm.cmd("blk bench vda 10 65")[-1] == "ERR queue depth must be 1..64"
        assert vm.cmd("blk evil nosuchcase")[-1] == "ERR unknown case (blk evil list)"
        assert vm.cmd("blk frob")[-1].startswith("ERR usage: blk")
        # Bench on an empty slot: nothing to read.
        assert vm.cmd("blk bench vdb 10 1")[-1] == "ERR disk smaller than 4 KiB"
        assert crc_of(vm, "vda", 0, 1) == zlib.crc32(bytes(512))
    finally:
        vm.kill()


def test_completions_are_interrupt_driven_with_and_without_event_idx(tmp_path):
    root = image(tmp_path, "root.img", 1 << 20)
    for append, event_idx in ((APPEND, True), (APPEND + " virtio_blk.event_idx=0", False)):
        vm, _ = boot(svm_cmd([("rootfs", root, False, False, None)], append=append))
        try:
            d = blk_list(vm)["vda"]
            assert bool(int(d["features"], 16) & (1 << 29)) == event_idx
            # Every single request interrupts (with EVENT_IDX the driver asks for it in
            # used_event before submitting), and the guest takes each interrupt before the next
            # command: it halts waiting for the serial line in between.
            before = int(parse_kv(vm.cmd_ok("irqs"))["irq5"])
            for i in range(10):
                vm.cmd_ok(f"blk read vda {i} 1")
            after = int(parse_kv(vm.cmd_ok("irqs"))["irq5"])
            assert after - before == 10, (event_idx, before, after)
            # The benchmark keeps 32 and 1 requests in flight; with EVENT_IDX it asks for an
            # interrupt only when it is about to sleep.
            r = parse_kv(vm.cmd_ok("blk bench vda 300 32"))
            assert r["requests"] == "300" and r["qd"] == "32"
            r = parse_kv(vm.cmd_ok("blk bench vda 300 1 write"))
            assert r["requests"] == "300" and r["qd"] == "1"
            vm.cmd_ok("blk write vda 8 8 3")
            assert crc_of(vm, "vda", 8, 8) == zlib.crc32(disk_pattern(3, 8, 8))
        finally:
            vm.kill()


# -- malformed requests ------------------------------------------------------------------------

# What stratovirt answers: a status byte (IOERR 1, UNSUPP 2), or the chain returned untouched
# (no status: nowhere valid to put one), or the device marked broken (needs reset).
EVIL_EXPECTED = {
    "loop": "status=none",
    "huge": "status=none",
    "oob": "status=1",
    "wrap": "status=1",
    "mmio": "status=1",
    "short": "status=1",
    "nostatus": "status=none",
    "wrongdir": "status=1",
    "pastend": "status=1",
    "overflow": "status=1",
    "unaligned": "status=1",
    "badtype": "status=2",
    "badidx": "needs-reset",
    "availjump": "needs-reset",
}


def test_every_malformed_request_is_answered_and_the_vmm_keeps_serving(tmp_path):
    blob = os.urandom(4096)
    root = image(tmp_path, "root.img", 1 << 20, blob)
    other = image(tmp_path, "other.img", 1 << 20, blob[::-1])
    sock = str(tmp_path / "qmp.sock")
    vm, _ = boot(svm_cmd([("rootfs", root, False, False, None),
                          ("other", other, False, False, None)], qmp=sock))
    try:
        q = RawQmp(sock)
        q.execute("qmp_capabilities")
        cases = [l.split(" - ")[0] for l in vm.cmd_ok("blk evil list")]
        assert sorted(cases) == sorted(EVIL_EXPECTED)
        for case in cases:
            out = vm.cmd_ok(f"blk evil {case}")[-1]
            assert out.startswith(EVIL_EXPECTED[case] + " "), (case, out)
            if EVIL_EXPECTED[case] == "needs-reset":
                assert "state=needs-reset" in out and "device_status=0x4f" in out, out
                assert vm.cmd("blk read vda 0 8")[-1].startswith("ERR needs-reset"), case
                assert vm.cmd_ok("blk reset vda") == ["capacity=2048"]
            else:
                assert "state=ready" in out and "device_status=0xf" in out, (case, out)
            # A good request on the same disk, and on the other one, still works.
            assert crc_of(vm, "vda", 0, 8) == zlib.crc32(blob), case
            assert crc_of(vm, "vdb", 0, 8) == zlib.crc32(blob[::-1]), case
            _, r = q.execute("query-status")
            assert r["return"]["status"] == "running", case
        # The same on an empty slot, whose requests all fail anyway.
        out = vm.cmd_ok("blk evil loop vdc")[-1]
        assert out.startswith("status=none "), out
        assert vm.cmd("blk read vdc 0 1")[-1] == "ERR ioerr"
        vm.cmd_ok("blk write vda 0 8 11")
        assert crc_of(vm, "vda", 0, 8) == zlib.crc32(disk_pattern(11, 0, 8))
        assert vm.proc.poll() is None
    finally:
        vm.kill()


# -- hot-plug ----------------------------------------------------------------------------------

def blockdev_add(q, node, path, direct=False, ro=False):
    return q.execute("blockdev-add", {"node-name": node, "file": {"driver": "file", "filename": path},
                                      "cache": {"direct": direct}, "read-only": ro})


def device_add(q, did, addr=None, **extra):
    args = {"id": did, "driver": "virtio-blk-mmio"}
    if addr is not None:
        args["addr"] = addr
    args.update(extra)
    return q.execute("device_add", args)


@pytest.fixture
def hotplug_vm(tmp_path):
    """A VM with a root disk and a QMP socket; yields (vm, qmp, root image path)."""
    root = image(tmp_path, "root.img", 1 << 20)
    sock = str(tmp_path / "qmp.sock")
    vm, _ = boot(svm_cmd([("rootfs", root, False, False, None)], qmp=sock))
    q = RawQmp(sock)
    yield vm, q, root
    q.close()
    vm.kill()


def test_seed_hotplug_transcript(hotplug_vm, tmp_path):
    vm, q, _ = hotplug_vm
    block = image(tmp_path, "block.img", 3 << 20, b"\x5a" * 4096)
    assert ext4_tmp(tmp_path), "the seed's direct=true needs O_DIRECT (ext4)"
    # Seed 001, "Hot-pluggable disks", exactly as a person would type it (no qmp_capabilities).
    q.send('{"execute": "blockdev-add", "arguments": {"node-name": "drive-0", "file": {"driver": '
           f'"file", "filename": "{block}"}}, "cache": {{"direct": true}}, "read-only": false}}}}')
    assert q.recv() == {"return": {}}
    q.send('{"execute": "device_add", "arguments": {"id": "drive-0", "driver": "virtio-blk-mmio", '
           '"addr": "0x1"}}')
    assert q.recv() == {"return": {}}
    d = wait_guest(vm, "vdb", "capacity", 6144)
    assert d["serial"] == "drive-0" and d["gen"] == "1" and d["cfg_irqs"] == "1"
    assert crc_of(vm, "vdb", 0, 8) == zlib.crc32(b"\x5a" * 4096)
    vm.cmd_ok("blk write vdb 100 8 5 2")
    q.send('{"execute": "device_del", "arguments": {"id": "drive-0"}}')
    ev = q.recv()
    same_shape(ev, {"event": "DEVICE_DELETED", "data": {"device": "drive-0", "path": "drive-0"},
                    "timestamp": {"seconds": 1598513162, "microseconds": 367129}})
    assert set(ev["timestamp"]) == {"seconds", "microseconds"}
    assert abs(ev["timestamp"]["seconds"] - time.time()) < 60
    assert q.recv() == {"return": {}}
    d = wait_guest(vm, "vdb", "capacity", 0)
    assert d["gen"] == "2"
    assert vm.cmd("blk read vdb 0 1")[-1] == "ERR ioerr"
    # Detaching flushed the image.
    assert read_image(block, 100, 8) == disk_pattern(5, 100, 8)
    # lun 0 is vdb too.
    _, r = blockdev_add(q, "drive-1", block)
    assert r == {"return": {}}
    _, r = device_add(q, "drive-1", lun=0)
    assert r == {"return": {}}
    wait_guest(vm, "vdb", "capacity", 6144)
    assert crc_of(vm, "vdb", 100, 8) == zlib.crc32(disk_pattern(5, 100, 8))


def test_device_del_then_blockdev_del_as_in_qemu(hotplug_vm, tmp_path):
    """QEMU's clean-up after unplugging (device_del, then blockdev-del of the node) succeeds;
    the node is gone afterwards, and the same node can be added again."""
    vm, q, _ = hotplug_vm
    q.execute("qmp_capabilities")
    block = image(tmp_path, "block.img", 1 << 20)
    assert blockdev_add(q, "drive-0", str(block))[1] == {"return": {}}
    assert device_add(q, "drive-0", "0x1")[1] == {"return": {}}
    wait_guest(vm, "vdb", "capacity", 2048)
    _, r = q.execute("blockdev-del", {"node-name": "drive-0"})
    assert "device_del it first" in r["error"]["desc"], r
    events, r = q.execute("device_del", {"id": "drive-0"})
    assert r == {"return": {}} and events[0]["event"] == "DEVICE_DELETED", (events, r)
    wait_guest(vm, "vdb", "capacity", 0)
    assert q.execute("blockdev-del", {"node-name": "drive-0"})[1] == {"return": {}}
    _, r = q.execute("blockdev-del", {"node-name": "drive-0"})
    assert r["error"]["class"] == "DeviceNotFound", r
    # device_add of a node whose image device_del closed says so.
    _, r = device_add(q, "drive-0", "0x1")
    assert "error" in r, r
    assert blockdev_add(q, "drive-0", str(block))[1] == {"return": {}}
    assert device_add(q, "drive-0", "0x1")[1] == {"return": {}}
    wait_guest(vm, "vdb", "capacity", 2048)
    # The seeds' flow: device_del alone, then the same node again.
    assert q.execute("device_del", {"id": "drive-0"})[1] == {"return": {}}
    _, r = device_add(q, "drive-0", "0x1")
    assert "device_del closed its image" in r["error"]["desc"], r
    assert blockdev_add(q, "drive-0", str(block))[1] == {"return": {}}
    assert device_add(q, "drive-0", "0x1")[1] == {"return": {}}
    wait_guest(vm, "vdb", "capacity", 2048)


def test_ten_cycles_of_three_disks_leak_nothing_and_the_guest_sees_every_change(hotplug_vm,
                                                                               tmp_path):
    vm, q, _ = hotplug_vm
    q.execute("qmp_capabilities")
    pid = vm.proc.pid
    # Different sizes, so the guest's capacity shows which disk is where.
    sizes = {"vdb": 1 << 20, "vdc": 2 << 20, "vdd": 3 << 20}
    imgs = {dev: image(tmp_path, f"{dev}.img", size) for dev, size in sizes.items()}
    addrs = {"vdb": "0x1", "vdc": "0x2", "vdd": "0x3"}
    fds_before = open_fds(pid)
    threads_before = len(os.listdir(f"/proc/{pid}/task"))
    for cycle in range(10):
        for dev in sizes:
            node = f"disk-{dev}"
            _, r = blockdev_add(q, node, imgs[dev], direct=(cycle % 2 == 1))
            assert r == {"return": {}}, (cycle, dev, r)
            _, r = device_add(q, node, addrs[dev])
            assert r == {"return": {}}, (cycle, dev, r)
        for dev, size in sizes.items():
            d = wait_guest(vm, dev, "gen", 2 * cycle + 1)
            assert d["capacity"] == str(size // SECTOR), (cycle, d)
            assert d["serial"] == f"disk-{dev}"
        # Each disk takes a write of its own in every cycle, at its own place.
        for dev in sizes:
            vm.cmd_ok(f"blk write {dev} {cycle * 8} 8 {cycle}")
        for dev in sizes:
            ev, r = q.execute("device_del", {"id": f"disk-{dev}"})
            assert r == {"return": {}}
            assert [e["event"] for e in ev] == ["DEVICE_DELETED"]
            assert ev[0]["data"] == {"device": f"disk-{dev}", "path": f"disk-{dev}"}
        for dev in sizes:
            d = wait_guest(vm, dev, "gen", 2 * cycle + 2)
            assert d["capacity"] == "0", (cycle, d)
            assert vm.cmd(f"blk read {dev} 0 1")[-1] == "ERR ioerr"
    final = blk_list(vm)
    for dev in sizes:
        # Config interrupts may coalesce when two changes come before the guest acks one; with
        # the waits above every change got its own.
        assert int(final[dev]["cfg_irqs"]) == 20, final[dev]
    fds_after = open_fds(pid)
    assert fds_after == fds_before, (
        f"leaked descriptors: {set(fds_after.items()) - set(fds_before.items())}")
    assert len(os.listdir(f"/proc/{pid}/task")) == threads_before
    for dev, path in imgs.items():
        for cycle in range(10):
            assert read_image(path, cycle * 8, 8) == disk_pattern(cycle, cycle * 8, 8), (dev, cycle)


def test_qmp_misuse_is_refused_and_changes_nothing(hotplug_vm, tmp_path):
    vm, q, root = hotplug_vm
    q.execute("qmp_capabilities")
    pid = vm.proc.pid
    imgs = [image(tmp_path, f"d{i}.img", (i + 1) << 20) for i in range(7)]

    def guest_view():
        return {dev: {k: d[k] for k in ("capacity", "serial", "gen", "cfg_irqs", "state")}
                for dev, d in blk_list(vm).items()}

    before = guest_view()
    fds_before = open_fds(pid)

    def err(r, cls="GenericError"):
        assert "error" in r, r
        assert r["error"]["class"] == cls, r
        return r["error"]["desc"]

    # device_add before blockdev-add.
    _, r = device_add(q, "drive-0", "0x1")
    assert err(r) == "no block node 'drive-0': run blockdev-add with node-name 'drive-0' first"
    # A node-name that is not the device id.
    _, r = blockdev_add(q, "drive-0", imgs[0])
    assert r == {"return": {}}
    _, r = device_add(q, "drive-1", "0x1")
    assert err(r) == "no block node 'drive-1': run blockdev-add with node-name 'drive-1' first"
    _, r = device_add(q, "drive-1", "0x1", drive="drive-0")
    assert err(r) == ("the node-name of blockdev-add ('drive-0') must equal the id of device_add "
                      "('drive-1')")
    # An address that is taken (vda holds the root disk) or out of range.
    _, r = device_add(q, "drive-0", "0x0")
    assert err(r) == "addr 0x0 (vda) already holds disk 'rootfs'"
    _, r = device_add(q, "drive-0", "0x6")
    assert err(r) == "addr 0x6 is out of range: a VM has at most 6 disks (0x0-0x5)"
    _, r = device_add(q, "drive-0", lun=5)
    assert err(r) == "addr 0x6 is out of range: a VM has at most 6 disks (0x0-0x5)"
    # The same node-name twice.
    _, r = blockdev_add(q, "drive-0", imgs[1])
    assert err(r) == "node-name 'drive-0' is already in use"
    # The root image again, under any name.
    _, r = blockdev_add(q, "again", root)
    assert err(r) == (f"image {root} is already in use by this VM (the root file system image "
                      "cannot be plugged again)")
    _, r = blockdev_add(q, "again", os.path.join(os.path.dirname(root), ".", "root.img"))
    assert err(r).startswith(f"image {root} is already in use")
    # A missing image file.
    missing = str(tmp_path / "missing.img")
    _, r = blockdev_add(q, "gone", missing)
    assert err(r) == f"cannot open disk image {missing}: No such file or directory (os error 2)"
    # device_del of an unknown id.
    _, r = q.execute("device_del", {"id": "nosuch"})
    assert err(r, "DeviceNotFound") == "Device 'nosuch' not found"
    # Nothing changed: the guest sees the same disks, no descriptor is left behind except the
    # one pending node (drive-0), and the pending node still plugs in where it should.
    assert guest_view() == before
    fds_now = open_fds(pid)
    assert len(set(fds_now.values()) - set(fds_before.values())) == 1
    assert set(fds_now.values()) - set(fds_before.values()) == {imgs[0]}

    # Fill every slot: the same id twice, then a 7th disk.
    _, r = device_add(q, "drive-0", "0x1")
    assert r == {"return": {}}
    _, r = device_add(q, "drive-0", "0x2")
    assert err(r) == "Duplicate ID 'drive-0' for device"
    _, r = blockdev_add(q, "drive-0", imgs[1])
    assert err(r) == "node-name 'drive-0' is already in use"
    _, r = blockdev_add(q, "drive-0b", imgs[0])
    assert err(r) == f"image {imgs[0]} is already in use by this VM (the root file system image cannot be plugged again)"
    for i in range(2, 6):
        _, r = blockdev_add(q, f"drive-{i}", imgs[i])
        assert r == {"return": {}}
        _, r = device_add(q, f"drive-{i}", f"0x{i}")
        assert r == {"return": {}}
    _, r = blockdev_add(q, "drive-6", imgs[6])
    assert r == {"return": {}}
    _, r = device_add(q, "drive-6", lun=5)
    assert err(r) == "addr 0x6 is out of range: a VM has at most 6 disks (0x0-0x5)"
    _, r = device_add(q, "drive-6", "0x3")
    assert err(r) == "addr 0x3 (vdd) already holds disk 'drive-3'"
    disks = blk_list(vm)
    for i, dev in enumerate(["vdb", "vdc", "vdd", "vde", "vdf"], start=1):
        cap = (1 if i == 1 else i + 1) << 20
        assert wait_guest(vm, dev, "capacity", cap // SECTOR)["state"] == "ready", disks
    # A disk taken out frees its slot for the waiting node.
    ev, r = q.execute("device_del", {"id": "drive-3"})
    assert r == {"return": {}}
    _, r = device_add(q, "drive-6", "0x3")
    assert r == {"return": {}}
    wait_guest(vm, "vdd", "capacity", (7 << 20) // SECTOR)
    _, r = q.execute("device_del", {"id": "drive-3"})
    assert err(r, "DeviceNotFound") == "Device 'drive-3' not found"


def test_hot_plugged_read_only_disk_refuses_writes(hotplug_vm, tmp_path):
    vm, q, _ = hotplug_vm
    q.execute("qmp_capabilities")
    blob = os.urandom(4096)
    ro = image(tmp_path, "ro.img", 1 << 20, blob)
    _, r = blockdev_add(q, "ro-disk", ro, ro=True)
    assert r == {"return": {}}
    _, r = device_add(q, "ro-disk", "0x2")
    assert r == {"return": {}}
    d = wait_guest(vm, "vdc", "capacity", 2048)
    # BLK_F_RO was negotiated at boot, for an empty slot: the device refuses writes anyway.
    assert d["ro"] == "0"
    assert vm.cmd("blk write vdc 0 8 1")[-1] == "ERR ioerr"
    assert crc_of(vm, "vdc", 0, 8) == zlib.crc32(blob)
    # A device reset renegotiates: now the guest is told.
    assert vm.cmd_ok("blk reset vdc") == ["capacity=2048"]
    assert blk_list(vm)["vdc"]["ro"] == "1"
    assert vm.cmd("blk write vdc 0 8 1")[-1] == "ERR ioerr"
    _, r = q.execute("device_del", {"id": "ro-disk"})
    assert r == {"return": {}}
    with open(ro, "rb") as f:
        assert f.read(4096) == blob
