//! virtio-mmio transports named on the command line: probing their
//! registers for `info`, and acknowledging their interrupts.

use core::cell::UnsafeCell;

use testkernel::cmdline::{VirtioMmioDev, VirtioScan};

use crate::phys;

/// "virt" in little endian.
pub const MAGIC: u32 = 0x7472_6976;

/// Register offsets (virtio 1.x, section 4.2.2; legacy uses the same ones
/// for what is read here).
pub mod reg {
    /// Magic value.
    pub const MAGIC: u64 = 0x000;
    /// Device version (1 legacy, 2 modern).
    pub const VERSION: u64 = 0x004;
    /// Device type (0 = no device).
    pub const DEVICE_ID: u64 = 0x008;
    /// Vendor id.
    pub const VENDOR_ID: u64 = 0x00c;
    /// Device features, 32 bits selected by `DEVICE_FEATURES_SEL`.
    pub const DEVICE_FEATURES: u64 = 0x010;
    /// Selects the device feature word.
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    /// Pending interrupt causes.
    pub const INTERRUPT_STATUS: u64 = 0x060;
    /// Acknowledges interrupt causes.
    pub const INTERRUPT_ACK: u64 = 0x064;
}

struct Devices(UnsafeCell<VirtioScan>);

// SAFETY: written only by `init` on the boot CPU before interrupts are
// enabled; read-only afterwards.
unsafe impl Sync for Devices {}

static DEVICES: Devices = Devices(UnsafeCell::new(VirtioScan {
    devices: testkernel::fixedvec::FixedVec::new(VirtioMmioDev {
        size: 0,
        base: 0,
        irq: 0,
        id: None,
    }),
    invalid: 0,
    dropped: 0,
}));

/// Records the devices parsed from the command line. Boot CPU, once,
/// before interrupts are enabled.
pub fn init(scan: VirtioScan) {
    // SAFETY: see `Devices`.
    unsafe { *DEVICES.0.get() = scan };
}

/// The command-line scan result.
pub fn scan() -> &'static VirtioScan {
    // SAFETY: see `Devices`: no writer after boot.
    unsafe { &*DEVICES.0.get() }
}

/// The devices.
pub fn devices() -> &'static [VirtioMmioDev] {
    scan().devices.as_slice()
}

/// What a device's registers say.
#[derive(Clone, Copy, Debug)]
pub enum Probe {
    /// The window is not identity mapped (above the mapped limit).
    Unmapped,
    /// Magic does not match: no transport there.
    Absent,
    /// A transport.
    Present {
        /// Version register.
        version: u32,
        /// Device id (0: transport with no device behind it).
        device_id: u32,
        /// Vendor id.
        vendor: u32,
        /// Device feature bits 0-63.
        features: u64,
    },
}

fn read(base: u64, off: u64) -> u32 {
    // SAFETY: callers check that `base + 0x100` is identity mapped; the
    // address is a 4-byte aligned register of a virtio-mmio window the VMM
    // named on the command line.
    unsafe { phys::read32(base + off) }
}

fn write(base: u64, off: u64, v: u32) {
    // SAFETY: as for `read`; these registers only affect the device.
    unsafe { phys::write32(base + off, v) }
}

/// Reads `dev`'s identification and feature registers.
pub fn probe(dev: &VirtioMmioDev) -> Probe {
    if !phys::is_mapped(dev.base, 0x100) || dev.base & 3 != 0 {
        return Probe::Unmapped;
    }
    let magic = read(dev.base, reg::MAGIC);
    if magic != MAGIC {
        return Probe::Absent;
    }
    write(dev.base, reg::DEVICE_FEATURES_SEL, 1);
    let high = read(dev.base, reg::DEVICE_FEATURES);
    write(dev.base, reg::DEVICE_FEATURES_SEL, 0);
    let low = read(dev.base, reg::DEVICE_FEATURES);
    Probe::Present {
        version: read(dev.base, reg::VERSION),
        device_id: read(dev.base, reg::DEVICE_ID),
        vendor: read(dev.base, reg::VENDOR_ID),
        features: (u64::from(high) << 32) | u64::from(low),
    }
}

/// Interrupt on `gsi`: acknowledges whatever the devices on that line
/// report, so the (edge-triggered) line can fire again.
pub fn on_irq(gsi: u32) {
    for dev in devices().iter().filter(|d| d.irq == gsi) {
        if !phys::is_mapped(dev.base, 0x100) || read(dev.base, reg::MAGIC) != MAGIC {
            continue;
        }
        let status = read(dev.base, reg::INTERRUPT_STATUS);
        if status != 0 {
            write(dev.base, reg::INTERRUPT_ACK, status);
        }
    }
}
