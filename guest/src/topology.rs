//! The machine description the kernel needs (CPUs, I/O APICs, ISA interrupt
//! routing), whether it came from an Intel MP table or an ACPI MADT.

use crate::fixedvec::FixedVec;

/// Most CPUs a description may list.
pub const MAX_DESCRIBED_CPUS: usize = 256;
/// Most I/O APICs kept.
pub const MAX_IOAPICS: usize = 8;
/// Most ISA interrupt routes kept.
pub const MAX_ISA_ROUTES: usize = 16;

/// Default local APIC physical address.
pub const DEFAULT_LAPIC_ADDR: u64 = 0xfee0_0000;
/// Default (first) I/O APIC physical address.
pub const DEFAULT_IOAPIC_ADDR: u64 = 0xfec0_0000;

/// Where a description came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Intel MultiProcessor Specification 1.4 configuration table.
    MpTable,
    /// ACPI Multiple APIC Description Table.
    Madt,
    /// Nothing found: one CPU, default APIC addresses.
    Default,
}

impl Source {
    /// Short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Source::MpTable => "mptable",
            Source::Madt => "madt",
            Source::Default => "none",
        }
    }
}

/// One processor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cpu {
    /// Local APIC id.
    pub apic_id: u32,
    /// Usable now (MP "EN" flag, MADT "Enabled" flag).
    pub enabled: bool,
    /// Marked as the boot processor (MP tables only).
    pub bsp: bool,
}

/// One I/O APIC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoApic {
    /// I/O APIC id.
    pub id: u8,
    /// Register window address.
    pub addr: u64,
    /// First GSI it handles; MP tables do not say (the kernel numbers them in
    /// order, from each one's redirection-entry count, as Linux does).
    pub gsi_base: Option<u32>,
}

/// Where an ISA IRQ is wired, when it is not the identity (ISA IRQ n = GSI n).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RouteTarget {
    /// A global system interrupt (MADT interrupt source override).
    Gsi(u32),
    /// A pin of the I/O APIC with this id (MP interrupt assignment entry).
    Pin { ioapic_id: u8, pin: u8 },
    /// Placeholder for unused slots.
    #[default]
    None,
}

/// One ISA interrupt route.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IsaRoute {
    /// ISA IRQ number.
    pub irq: u8,
    /// Destination.
    pub target: RouteTarget,
    /// MPS INTI flags (polarity bits 0-1, trigger mode bits 2-3).
    pub flags: u16,
}

/// A machine description.
#[derive(Clone, Copy, Debug)]
pub struct Topology {
    /// Where it came from.
    pub source: Source,
    /// Physical address of the table it was parsed from (0 for `Default`).
    pub table_addr: u64,
    /// Local APIC address.
    pub lapic_addr: u64,
    /// Processors, in table order.
    pub cpus: FixedVec<Cpu, MAX_DESCRIBED_CPUS>,
    /// Enabled processors that did not fit in `cpus`.
    pub cpus_dropped: usize,
    /// I/O APICs, in table order.
    pub ioapics: FixedVec<IoApic, MAX_IOAPICS>,
    /// ISA IRQs that are not identity mapped (or have non-default flags).
    pub isa_routes: FixedVec<IsaRoute, MAX_ISA_ROUTES>,
}

impl Topology {
    /// An empty description from `source`.
    pub fn new(source: Source, table_addr: u64) -> Self {
        Self {
            source,
            table_addr,
            lapic_addr: DEFAULT_LAPIC_ADDR,
            cpus: FixedVec::new(Cpu::default()),
            cpus_dropped: 0,
            ioapics: FixedVec::new(IoApic::default()),
            isa_routes: FixedVec::new(IsaRoute::default()),
        }
    }

    /// Adds a processor, counting it as dropped when the list is full.
    pub fn add_cpu(&mut self, cpu: Cpu) {
        if self.cpus.push(cpu).is_err() && cpu.enabled {
            self.cpus_dropped += 1;
        }
    }

    /// The enabled processors.
    pub fn enabled_cpus(&self) -> impl Iterator<Item = &Cpu> {
        self.cpus.iter().filter(|c| c.enabled)
    }

    /// The route of ISA `irq`, if the table gave one.
    pub fn isa_route(&self, irq: u8) -> Option<IsaRoute> {
        self.isa_routes.iter().copied().find(|r| r.irq == irq)
    }
}
