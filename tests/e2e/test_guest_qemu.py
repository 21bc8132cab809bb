"""The bundled test kernel under a real QEMU microvm (PVH boot of
testkernel.elf): READY line, CPU bring-up through the MP table and the ACPI
MADT, memory map, interrupts and every shell command.

QEMU microvm describes CPUs with an MP table (always) and, with acpi=on (the
default), also ACPI tables whose RSDP it passes in hvm_start_info; the
kernel takes the MP table first, and `cpu_tables=madt` forces the MADT path.
With acpi=off QEMU lists its virtio-mmio transports on the command line.
"""

from __future__ import annotations

import re
import time

import pytest

from harness import Vm, parse_kv, qemu_microvm_cmd

MIB = 1 << 20
READY = re.compile(r"^READY cpus=(\d+) mem=(\d+) virtio=(\d+)\r?$", re.M)
# Emulated guest code is slow, but the kernel reaches READY in well under a
# second; this bound only catches hangs.
BOOT_TIMEOUT = 30
# QEMU microvm's e820 for <= 3 GiB: [0, 0x9fc00) and [1 MiB, end) usable.
QEMU_LOW_HOLE = 0x100000 - 0x9FC00


def boot(elf: str, cpus: int = 1, mem_mib: int = 128, **kw) -> tuple[Vm, re.Match, float]:
    """Starts QEMU and waits for READY; returns (vm, match, seconds)."""
    t0 = time.monotonic()
    vm = Vm(qemu_microvm_cmd(elf, cpus=cpus, mem_mib=mem_mib, **kw))
    try:
        m = vm.wait_for(READY, BOOT_TIMEOUT)
    except Exception:
        vm.kill()
        raise
    return vm, m, time.monotonic() - t0


def e820_usable(boot_lines: list[str]) -> int:
    total = 0
    for line in boot_lines:
        if line.startswith("e820 "):
            kv = parse_kv([line])
            if kv["type"] == "1":
                total += int(kv["size"], 16)
    return total


def poweroff(vm: Vm) -> None:
    """`poweroff` answers OK and QEMU (-no-reboot) exits on the reset."""
    assert vm.cmd("poweroff") == ["OK"]
    assert vm.wait_exit(20) == 0, vm.stderr


@pytest.mark.parametrize("mem_mib", [128, 1024])
@pytest.mark.parametrize("cpus", [1, 2, 4])
def test_ready_cpus_and_memory(qemu, testkernel_elf, cpus, mem_mib):
    vm, m, secs = boot(testkernel_elf, cpus, mem_mib)
    with vm:
        assert int(m.group(1)) == cpus, vm.output
        mem = int(m.group(2))
        assert mem_mib * MIB - 16 * MIB < mem <= mem_mib * MIB
        assert mem == mem_mib * MIB - QEMU_LOW_HOLE, "what QEMU microvm's e820 gives"
        assert int(m.group(3)) == 0
        assert secs < 10, f"READY took {secs:.2f}s"
        lines = vm.cmd("boot")
        assert lines[-1] == "OK"
        assert e820_usable(lines) == mem, "READY mem= is the e820 usable sum"
        kv = parse_kv(lines)
        assert kv["protocol"] == "pvh"
        assert kv["topology"] == "mptable"
        assert int(kv["online"]) == cpus - 1
        assert int(kv["mapped"], 16) >= 4 << 30
        poweroff(vm)


@pytest.mark.parametrize("cpus", [2, 4])
def test_acpi_off_uses_mptable(qemu, testkernel_elf, cpus):
    vm, m, _ = boot(testkernel_elf, cpus, machine_opts="acpi=off")
    with vm:
        assert int(m.group(1)) == cpus
        kv = parse_kv(vm.cmd_ok("boot"))
        assert kv["topology"] == "mptable"
        assert kv["rsdp"] == "0x0", "no ACPI: no RSDP in hvm_start_info"


@pytest.mark.parametrize("cpus", [1, 4])
def test_madt_path(qemu, testkernel_elf, cpus):
    vm, m, _ = boot(testkernel_elf, cpus, append="console=ttyS0 cpu_tables=madt")
    with vm:
        assert int(m.group(1)) == cpus
        lines = vm.cmd_ok("boot")
        kv = parse_kv(lines)
        assert kv["topology"] == "madt"
        assert int(kv["rsdp"], 16) != 0
        assert sum(1 for l in lines if l.startswith("cpu apic_id=")) == cpus
        # microvm's MADT lists a second I/O APIC (GSIs 24-47).
        assert sum(1 for l in lines if l.startswith("ioapic ")) >= 1


def test_no_cpu_tables_falls_back_to_one_cpu(qemu, testkernel_elf):
    # acpi=off and MADT only: no table to use, so the boot CPU alone.
    vm, m, _ = boot(testkernel_elf, 2, machine_opts="acpi=off", append="cpu_tables=madt")
    with vm:
        assert int(m.group(1)) == 1
        assert parse_kv(vm.cmd_ok("boot"))["topology"] == "none"


@pytest.fixture(scope="module")
def shell_vm(qemu, testkernel_elf):
    """2 vCPUs, 128 MiB, acpi=off so QEMU puts its two virtio-rng
    transports on the command line, plus one entry with nothing behind it."""
    vm, m, _ = boot(
        testkernel_elf, 2, 128,
        machine_opts="acpi=off",
        append="console=ttyS0 virtio_mmio.device=4K@0xd0000000:9:7",
        extra=["-device", "virtio-rng-device", "-device", "virtio-rng-device"],
    )
    vm.ready = m
    yield vm
    vm.kill()


def test_shell_ready_counts_virtio(shell_vm):
    assert int(shell_vm.ready.group(3)) == 3


def test_shell_help(shell_vm):
    lines = shell_vm.cmd("help")
    assert lines[-1] == "OK"
    names = {l.split()[0] for l in lines[:-1]}
    assert {"help", "info", "ticks", "irqs", "mem", "panic", "poweroff", "boot"} <= names


def test_shell_info(shell_vm):
    lines = shell_vm.cmd_ok("info")
    assert lines[0] == "cpus=2"
    assert lines[1] == f"mem={128 * MIB - QEMU_LOW_HOLE}"
    assert lines[2].startswith("cmdline=console=ttyS0 virtio_mmio.device=4K@0xd0000000:9:7")
    devs = lines[3:]
    assert len(devs) == 3, lines
    assert devs[0] == "virtio0 base=0xd0000000 size=0x1000 irq=9 absent"
    for d in devs[1:]:
        kv = parse_kv([d])
        assert kv["magic"] == "ok", d
        assert kv["device"] == "4", "virtio-rng"
        assert kv["vendor"] == "0x554d4551", "QEMU's vendor id"
        assert kv["version"] in ("1", "2")
        assert re.fullmatch(r"0x[0-9a-f]{16}", kv["features"])
        assert int(kv["size"], 16) == 0x200
        assert base_in_microvm_window(int(kv["base"], 16))


def base_in_microvm_window(base: int) -> bool:
    return 0xFEB00000 <= base < 0xFEC00000


def test_shell_ticks_increase(shell_vm):
    t1 = int(shell_vm.cmd_ok("ticks")[0].split("=")[1])
    time.sleep(1.0)
    t2 = int(shell_vm.cmd_ok("ticks")[0].split("=")[1])
    # ~100 Hz; allow a slow, busy host (2 cores shared with compilers).
    assert t2 - t1 >= 10, (t1, t2)


def test_shell_irqs_counts_serial(shell_vm):
    shell_vm.cmd_ok("ticks")  # typing raises IRQ 4
    lines = shell_vm.cmd_ok("irqs")
    kv = dict(l.split("=", 1) for l in lines)
    assert int(kv["timer"]) > 0
    assert int(kv["irq4"]) > 0


def test_shell_mem_fill_check(shell_vm):
    assert shell_vm.cmd("mem fill 64 12345") == ["pages=16384", "OK"]
    assert shell_vm.cmd("mem check 64 12345") == ["pages=16384", "OK"]
    assert shell_vm.cmd("mem check 64 12346") == ["ERR mismatch at 0x2000000"]
    # 0x hex arguments, and a smaller check of what was filled.
    assert shell_vm.cmd("mem check 0x10 12345") == ["pages=4096", "OK"]


def test_shell_mem_refuses_too_much(shell_vm):
    reply = shell_vm.cmd("mem fill 200 1")
    assert len(reply) == 1 and reply[0].startswith("ERR "), reply
    assert "max MiB=" in reply[0]
    assert shell_vm.cmd("mem fill")[0].startswith("ERR usage")
    assert shell_vm.cmd("mem fill x 1")[0] == "ERR bad size"
    assert shell_vm.cmd("mem wipe 1 1")[0].startswith("ERR usage")


def test_shell_errors_and_line_editing(shell_vm):
    assert shell_vm.cmd("nosuchcommand")[0].startswith("ERR unknown command")
    # Backspace (BS and DEL) edits the line before it runs.
    for typed in ("tickz\x08s", "tickq\x7fs"):
        start = shell_vm.send_line(typed)
        shell_vm.wait_for(r"^ticks=\d+\r?\nOK\r?$", 10, start=start)
    # CRLF counts as one line end: one reply, then the next command works.
    start = shell_vm.mark()
    shell_vm.send("ticks\r\n")
    shell_vm.wait_for(r"^ticks=\d+\r?\nOK\r?$", 10, start=start)
    assert shell_vm.cmd("ticks")[-1] == "OK"
    out = shell_vm.output[start:]
    assert out.count("OK") == 2, out
    # Over-long lines are refused, not truncated.
    assert shell_vm.cmd("x" * 200)[0].startswith("ERR line longer than")
    # Blank lines just print a new prompt.
    assert shell_vm.cmd("   \r ticks")[-1] == "OK"


def test_panic_reports_page_fault(qemu, testkernel_elf):
    vm, _, _ = boot(testkernel_elf, 1)
    with vm:
        vm.send_line("panic")
        m = vm.wait_for(r"^EXCEPTION vector=(\d+) rip=(0x[0-9a-f]+) error=(0x[0-9a-f]+) cr2=(0x[0-9a-f]+)\r?$", 10)
        assert m.group(1) == "14"
        assert m.group(3) == "0x0", "read of a not-present page"
        assert m.group(4) == "0x7f0000000000"
        assert int(m.group(2), 16) >= 0x1000000, "fault inside the kernel image"
        # The CPU halts: no prompt, no more replies.
        time.sleep(0.3)
        vm.send_line("ticks")
        time.sleep(0.5)
        assert "ticks=" not in vm.output_since_last_command()
        assert vm.proc.poll() is None, "a halted guest keeps QEMU running"


def test_virtio_modern_transport_features(qemu, testkernel_elf):
    vm, m, _ = boot(testkernel_elf, 1, machine_opts="acpi=off",
                    extra=["-global", "virtio-mmio.force-legacy=false", "-device", "virtio-rng-device"])
    with vm:
        assert int(m.group(3)) == 1
        dev = parse_kv([l for l in vm.cmd_ok("info") if l.startswith("virtio0 ")])
        assert dev["version"] == "2"
        # VIRTIO_F_VERSION_1 is bit 32: the upper feature word was read.
        assert int(dev["features"], 16) & (1 << 32)
        poweroff(vm)


def test_images_layout(testkernel_elf, testkernel_bin):
    """The two images are one program: the raw image is the ELF's loadable
    bytes from 0x1000000, entered at its first byte (the 64-bit entry), and
    the ELF carries a PVH note pointing into the same image."""
    import struct

    elf = open(testkernel_elf, "rb").read()
    raw = open(testkernel_bin, "rb").read()
    assert elf[:4] == b"\x7fELF" and elf[4] == 2, "64-bit ELF"
    e_entry, e_phoff = struct.unpack_from("<QQ", elf, 0x18)
    e_phentsize, e_phnum = struct.unpack_from("<HH", elf, 0x36)
    assert e_entry == 0x1000000
    loads, note = [], None
    for i in range(e_phnum):
        p_type, _flags, off, vaddr, paddr, filesz, memsz, align = struct.unpack_from(
            "<IIQQQQQQ", elf, e_phoff + i * e_phentsize)
        if p_type == 1:
            loads.append((off, paddr, filesz, memsz))
        elif p_type == 4:
            note = (off, filesz, align)
    assert len(loads) == 1
    off, paddr, filesz, memsz = loads[0]
    assert paddr == 0x1000000
    assert raw == elf[off:off + filesz], "raw image = the ELF's file-backed bytes"
    assert paddr + memsz <= 32 << 20, "kernel and its data end below the mem test area"
    # _start: cli; cld; xor %edi,%edi (protocol 0 = Linux boot_params).
    assert raw[:4] == b"\xfa\xfc\x31\xff"
    # PVH note: name "Xen", type 18, 8-byte descriptor = 32-bit entry.
    assert note is not None and note[2] == 4, "PT_NOTE aligned to 4 (QEMU pads the name by p_align)"
    namesz, descsz, ntype = struct.unpack_from("<III", elf, note[0])
    assert (namesz, descsz, ntype) == (4, 8, 18)
    assert elf[note[0] + 12:note[0] + 16] == b"Xen\0"
    (entry32,) = struct.unpack_from("<Q", elf, note[0] + 16)
    assert paddr < entry32 < paddr + filesz
    # pvh_start32: cli; cld; mov %ebx,%esi.
    assert raw[entry32 - paddr:entry32 - paddr + 4] == b"\xfa\xfc\x89\xde"
