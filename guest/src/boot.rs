//! Reading what the loader handed over: `boot_params` (Linux) or
//! `hvm_start_info` (PVH), the command line, and the CPU description (MP
//! table first, then the ACPI MADT), through the identity map.

use testkernel::bootinfo::{self, BootInfo, BootInfoError, BOOT_PARAMS_SIZE};
use testkernel::physmem::PhysMem;
use testkernel::topology::{Cpu, Source, Topology};
use testkernel::{acpi, cmdline, mptable};

use crate::phys::{self, Identity};
use crate::serial;

/// `kmain`'s protocol argument for the PVH entry (0 is the Linux entry).
pub const PROTOCOL_PVH: u64 = 1;

/// Parses the boot information at `addr`.
pub fn read(protocol: u64, addr: u64) -> Result<BootInfo, BootInfoError> {
    if protocol == PROTOCOL_PVH {
        // The PVH entry identity-maps 0..4 GiB itself.
        phys::set_mapped_limit(4 << 30);
        bootinfo::parse_pvh(&Identity, addr)
    } else {
        let page = Identity
            .bytes(addr, BOOT_PARAMS_SIZE)
            .ok_or(BootInfoError::Unreadable(addr))?;
        bootinfo::parse_boot_params(page)
    }
}

/// Copies the command line into `out`; returns its length (0 if it is not
/// mapped yet or absent).
pub fn read_cmdline(info: &BootInfo, out: &mut [u8]) -> usize {
    bootinfo::read_cstr(&Identity, info.cmdline_addr, info.cmdline_max, out)
}

/// Which CPU description tables to consult (`cpu_tables=` on the command
/// line; the default is Linux's search order restricted to what the brief
/// asks: MP table first, MADT if there is none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableChoice {
    /// MP table, else MADT.
    Auto,
    /// Only the MP table.
    MpTable,
    /// Only the MADT.
    Madt,
}

/// The `cpu_tables=auto|mptable|madt` parameter (last one wins).
pub fn table_choice(cmdline: &[u8]) -> TableChoice {
    let mut choice = TableChoice::Auto;
    for (name, value) in cmdline::params(cmdline) {
        if cmdline::name_eq(name, b"cpu_tables") {
            choice = match value {
                Some(b"mptable") => TableChoice::MpTable,
                Some(b"madt") => TableChoice::Madt,
                _ => TableChoice::Auto,
            };
        }
    }
    choice
}

/// Finds the CPU description: an MP table where Linux looks for one, else
/// the MADT (RSDP from PVH or found by scanning), else one CPU.
pub fn topology(info: &BootInfo, choice: TableChoice) -> Topology {
    let mem = Identity;
    if choice != TableChoice::Madt {
        if let Some(fp) = mptable::find(&mem) {
            match mptable::parse(&mem, fp) {
                Ok(t) => return t,
                Err(e) => {
                    serial::puts("warning: MP table at ");
                    serial::hex(fp);
                    serial::puts(" rejected: ");
                    serial::puts(mp_error(e));
                    serial::puts("\n");
                }
            }
        }
    }
    if choice != TableChoice::MpTable {
        match acpi::topology(&mem, info.rsdp) {
            Ok(t) => return t,
            Err(acpi::AcpiError::BadRsdp) if info.rsdp == 0 => {}
            Err(e) => {
                serial::puts("warning: ACPI MADT not usable: ");
                serial::puts(acpi_error(e));
                serial::puts("\n");
            }
        }
    }
    let mut t = Topology::new(Source::Default, 0);
    t.add_cpu(Cpu {
        apic_id: crate::apic::id(),
        enabled: true,
        bsp: true,
    });
    t
}

fn mp_error(e: mptable::MpError) -> &'static str {
    use mptable::MpError::*;
    match e {
        DefaultConfig(_) => "default configuration (unsupported)",
        Unreadable(_) => "unreadable",
        BadSignature => "bad signature",
        BadChecksum => "bad checksum",
        BadSpecRev(_) => "bad spec revision",
        NoLapic => "no local APIC address",
        BadEntry { .. } => "bad entry",
    }
}

fn acpi_error(e: acpi::AcpiError) -> &'static str {
    use acpi::AcpiError::*;
    match e {
        Unreadable(_) => "unreadable table",
        BadRsdp => "bad RSDP",
        BadRootTable => "bad RSDT/XSDT",
        NoMadt => "no MADT",
        BadEntry { .. } => "bad MADT entry",
    }
}

/// One-line description of a boot information error.
pub fn error_text(e: BootInfoError) -> &'static str {
    match e {
        BootInfoError::BadPvhMagic(_) => "hvm_start_info magic mismatch",
        BootInfoError::Unreadable(_) => "boot information not readable",
        BootInfoError::NoMemoryMap => "no e820 memory map",
    }
}
