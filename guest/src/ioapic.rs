//! I/O APICs: numbering their GSIs and routing a GSI to a vector on one CPU
//! (fixed delivery, physical destination, edge triggered, active high unless
//! the firmware tables say otherwise).

use core::cell::UnsafeCell;

use testkernel::fixedvec::FixedVec;
use testkernel::topology::{IoApic, RouteTarget, Topology, DEFAULT_IOAPIC_ADDR, MAX_IOAPICS};

use crate::phys;

const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
const REG_VERSION: u32 = 0x01;
const REG_REDIR_BASE: u32 = 0x10;

const REDIR_MASKED: u32 = 1 << 16;
const REDIR_LEVEL: u32 = 1 << 15;
const REDIR_ACTIVE_LOW: u32 = 1 << 13;

/// One I/O APIC as the kernel uses it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Chip {
    /// Id from the firmware table.
    pub id: u8,
    /// Register window.
    pub addr: u64,
    /// First GSI.
    pub gsi_base: u32,
    /// Number of redirection entries (pins).
    pub pins: u32,
}

struct Chips(UnsafeCell<FixedVec<Chip, MAX_IOAPICS>>);

// SAFETY: written only by `init` on the boot CPU before interrupts are
// enabled or other CPUs run; read-only afterwards.
unsafe impl Sync for Chips {}

static CHIPS: Chips = Chips(UnsafeCell::new(FixedVec::new(Chip {
    id: 0,
    addr: 0,
    gsi_base: 0,
    pins: 0,
})));

fn read(addr: u64, reg: u32) -> u32 {
    // SAFETY: `addr` is an I/O APIC window below 4 GiB (identity mapped);
    // selecting a register and reading the window only affects the chip.
    unsafe {
        phys::write32(addr + IOREGSEL, reg);
        phys::read32(addr + IOWIN)
    }
}

fn write(addr: u64, reg: u32, value: u32) {
    // SAFETY: as for `read`.
    unsafe {
        phys::write32(addr + IOREGSEL, reg);
        phys::write32(addr + IOWIN, value);
    }
}

/// The I/O APICs in use.
pub fn chips() -> &'static [Chip] {
    // SAFETY: see `Chips`: no writer after boot.
    unsafe { (*CHIPS.0.get()).as_slice() }
}

/// Records the I/O APICs of `topo` (or the default one at 0xfec00000),
/// reading each one's pin count; GSI bases missing from an MP table are
/// assigned in table order, as Linux does. Boot CPU only, once.
pub fn init(topo: &Topology) {
    let default = [IoApic {
        id: 0,
        addr: DEFAULT_IOAPIC_ADDR,
        gsi_base: Some(0),
    }];
    let list = if topo.ioapics.is_empty() {
        &default[..]
    } else {
        topo.ioapics.as_slice()
    };
    // SAFETY: see `Chips`: single writer during boot.
    let chips = unsafe { &mut *CHIPS.0.get() };
    let mut next_gsi = 0u32;
    for io in list {
        if !phys::is_mapped(io.addr, 0x20) {
            continue;
        }
        let pins = ((read(io.addr, REG_VERSION) >> 16) & 0xff) + 1;
        let gsi_base = io.gsi_base.unwrap_or(next_gsi);
        next_gsi = gsi_base + pins;
        let _ = chips.push(Chip {
            id: io.id,
            addr: io.addr,
            gsi_base,
            pins,
        });
    }
}

/// The GSI an ISA IRQ arrives on, and its MPS INTI flags.
pub fn isa_gsi(topo: &Topology, irq: u8) -> (u32, u16) {
    match topo.isa_route(irq) {
        Some(r) => match r.target {
            RouteTarget::Gsi(g) => (g, r.flags),
            RouteTarget::Pin { ioapic_id, pin } => chips()
                .iter()
                .find(|c| c.id == ioapic_id)
                .map_or((u32::from(irq), r.flags), |c| {
                    (c.gsi_base + u32::from(pin), r.flags)
                }),
            RouteTarget::None => (u32::from(irq), 0),
        },
        None => (u32::from(irq), 0),
    }
}

/// Why a GSI could not be routed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteError {
    /// No I/O APIC handles this GSI.
    NoChip,
}

/// Routes `gsi` to `vector` on the CPU with APIC id `dest` and unmasks it.
/// `flags` are MPS INTI flags: polarity 3 = active low, trigger 3 = level;
/// 0 means the bus default (edge, active high for ISA and virtio-mmio).
pub fn route(gsi: u32, vector: u8, dest: u32, flags: u16) -> Result<(), RouteError> {
    let chip = chips()
        .iter()
        .find(|c| gsi >= c.gsi_base && gsi < c.gsi_base + c.pins)
        .ok_or(RouteError::NoChip)?;
    let pin = gsi - chip.gsi_base;
    let mut low = u32::from(vector);
    if flags & 0x3 == 0x3 {
        low |= REDIR_ACTIVE_LOW;
    }
    if (flags >> 2) & 0x3 == 0x3 {
        low |= REDIR_LEVEL;
    }
    let reg = REG_REDIR_BASE + 2 * pin;
    write(chip.addr, reg, REDIR_MASKED);
    write(chip.addr, reg + 1, dest << 24);
    write(chip.addr, reg, low);
    Ok(())
}
