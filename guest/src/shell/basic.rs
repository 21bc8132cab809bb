//! General commands: help, info, ticks, irqs, boot, cpuid.

use super::{commands, field_dec, field_hex, Args, CmdError, Command};
use crate::virtio_mmio::{self, Probe};
use crate::{cpu, interrupts, ioapic, phys, serial, smp, system};
use testkernel::e820;

/// The commands of this group.
pub const COMMANDS: &[Command] = &[
    Command {
        name: "help",
        usage: "help",
        help: "list commands",
        run: help,
    },
    Command {
        name: "info",
        usage: "info",
        help: "cpus, memory, command line, virtio-mmio devices",
        run: info,
    },
    Command {
        name: "ticks",
        usage: "ticks",
        help: "LAPIC timer interrupts on the boot CPU (about 100 per second)",
        run: ticks,
    },
    Command {
        name: "irqs",
        usage: "irqs",
        help: "interrupt counts per IRQ (GSI) that has fired, and the timer",
        run: irqs,
    },
    Command {
        name: "boot",
        usage: "boot",
        help: "boot details: protocol, e820 map, paging, CPU tables, I/O APICs",
        run: boot,
    },
    Command {
        name: "cpuid",
        usage: "cpuid <leaf> [subleaf]",
        help: "CPUID as the boot CPU sees it: eax ebx ecx edx",
        run: cpuid,
    },
];

fn help(_: &Args) -> Result<(), CmdError> {
    for c in commands() {
        serial::puts(c.usage);
        serial::puts(" - ");
        serial::puts(c.help);
        serial::puts("\n");
    }
    Ok(())
}

fn printable(bytes: &[u8]) {
    for &b in bytes {
        serial::write(&[if (0x20..0x7f).contains(&b) { b } else { b'?' }]);
    }
}

fn info(_: &Args) -> Result<(), CmdError> {
    let sys = system::get();
    field_dec("cpus=", u64::from(smp::cpus_online()));
    serial::puts("\nmem=");
    serial::dec(sys.usable);
    serial::puts("\ncmdline=");
    printable(sys.cmdline());
    serial::puts("\n");
    for (i, dev) in virtio_mmio::devices().iter().enumerate() {
        serial::puts("virtio");
        serial::dec(i as u64);
        field_hex(" base=", dev.base);
        field_hex(" size=", dev.size);
        field_dec(" irq=", u64::from(dev.irq));
        match virtio_mmio::probe(dev) {
            Probe::Unmapped => serial::puts(" unmapped"),
            Probe::Absent => serial::puts(" absent"),
            Probe::Present {
                version,
                device_id,
                vendor,
                features,
            } => {
                serial::puts(" magic=ok version=");
                serial::dec(u64::from(version));
                field_dec(" device=", u64::from(device_id));
                field_hex(" vendor=", u64::from(vendor));
                serial::puts(" features=");
                serial::hex16(features);
            }
        }
        serial::puts("\n");
    }
    Ok(())
}

fn cpuid(args: &Args) -> Result<(), CmdError> {
    let leaf = args.number(0, "usage: cpuid <leaf> [subleaf]")?;
    let sub = match args.get(1) {
        Some(_) => args.number(1, "subleaf is not a number")?,
        None => 0,
    };
    if leaf > u64::from(u32::MAX) || sub > u64::from(u32::MAX) {
        return Err(CmdError::msg("leaf and subleaf are 32-bit"));
    }
    let (a, b, c, d) = cpu::cpuid_count(leaf as u32, sub as u32);
    for (name, v) in [("eax=", a), ("ebx=", b), ("ecx=", c), ("edx=", d)] {
        serial::puts(name);
        serial::hex(u64::from(v));
        serial::puts(if name == "edx=" { "\n" } else { " " });
    }
    Ok(())
}

fn ticks(_: &Args) -> Result<(), CmdError> {
    field_dec("ticks=", interrupts::ticks());
    serial::puts("\n");
    Ok(())
}

fn irqs(_: &Args) -> Result<(), CmdError> {
    field_dec("timer=", interrupts::ticks());
    serial::puts("\n");
    for gsi in 0..interrupts::MAX_GSI {
        let n = interrupts::gsi_count(gsi);
        if n != 0 {
            serial::puts("irq");
            serial::dec(gsi as u64);
            serial::puts("=");
            serial::dec(n);
            serial::puts("\n");
        }
    }
    let other = interrupts::other_count();
    if other != 0 {
        field_dec("other=", other);
        serial::puts("\n");
    }
    Ok(())
}

fn boot(_: &Args) -> Result<(), CmdError> {
    let sys = system::get();
    serial::puts("protocol=");
    serial::puts(match sys.boot.protocol {
        testkernel::bootinfo::BootProtocol::Linux => "linux",
        testkernel::bootinfo::BootProtocol::Pvh => "pvh",
    });
    field_hex(" rsdp=", sys.boot.rsdp);
    serial::puts("\n");
    for e in sys.boot.memmap.iter() {
        serial::puts("e820 addr=");
        serial::hex(e.addr);
        field_hex(" size=", e.size);
        field_dec(" type=", u64::from(e.kind));
        serial::puts("\n");
    }
    field_dec("usable=", e820::usable_bytes(sys.boot.memmap.as_slice()));
    serial::puts("\npaging=");
    serial::puts(if sys.map.page_size == 1 << 30 {
        "1G"
    } else {
        "2M"
    });
    field_hex(" mapped=", phys::mapped_limit());
    serial::puts("\ntopology=");
    serial::puts(sys.topology.source.name());
    field_hex(" table=", sys.topology.table_addr);
    field_hex(" lapic=", sys.topology.lapic_addr);
    field_dec(" bsp_apic_id=", u64::from(sys.bsp_apic_id));
    serial::puts("\n");
    for c in sys.topology.cpus.iter() {
        serial::puts("cpu apic_id=");
        serial::dec(u64::from(c.apic_id));
        serial::puts(if c.enabled { " enabled" } else { " disabled" });
        if c.apic_id == sys.bsp_apic_id {
            serial::puts(" bsp");
        }
        serial::puts("\n");
    }
    for chip in ioapic::chips() {
        serial::puts("ioapic id=");
        serial::dec(u64::from(chip.id));
        field_hex(" addr=", chip.addr);
        field_dec(" gsi_base=", u64::from(chip.gsi_base));
        field_dec(" pins=", u64::from(chip.pins));
        serial::puts("\n");
    }
    field_dec("serial_gsi=", u64::from(sys.serial_gsi));
    serial::puts("\nsmp targets=");
    serial::dec(u64::from(sys.smp.targets));
    field_dec(" online=", u64::from(sys.smp.online));
    field_dec(" skipped=", u64::from(sys.smp.skipped));
    field_dec(" second_sipi=", u64::from(sys.smp.second_sipi));
    let scan = virtio_mmio::scan();
    serial::puts("\nvirtio devices=");
    serial::dec(scan.devices.len() as u64);
    field_dec(" invalid=", scan.invalid as u64);
    field_dec(" dropped=", scan.dropped as u64);
    serial::puts("\n");
    Ok(())
}
