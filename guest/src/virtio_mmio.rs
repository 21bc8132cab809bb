//! virtio-mmio transports named on the command line: probing their
//! registers for `info`, acknowledging their interrupts and passing
//! configuration changes to the virtio-blk and virtio-net drivers; and the
//! device bring-up every driver runs (virtio 1.x, 3.1.1).

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use testkernel::cmdline::{VirtioMmioDev, VirtioScan};
use testkernel::virtq::status;

use crate::{cpu, phys, virtio_balloon, virtio_blk, virtio_net};

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
    /// Driver features, 32 bits selected by `DRIVER_FEATURES_SEL`.
    pub const DRIVER_FEATURES: u64 = 0x020;
    /// Selects the driver feature word.
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    /// Selects the queue the queue registers refer to.
    pub const QUEUE_SEL: u64 = 0x030;
    /// Largest size of the selected queue (0: no such queue).
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    /// Size of the selected queue.
    pub const QUEUE_NUM: u64 = 0x038;
    /// The selected queue is ready.
    pub const QUEUE_READY: u64 = 0x044;
    /// Queue notification (the queue index).
    pub const QUEUE_NOTIFY: u64 = 0x050;
    /// Device status.
    pub const STATUS: u64 = 0x070;
    /// Descriptor table address, low half.
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    /// Descriptor table address, high half.
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    /// Driver area address, low half.
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    /// Driver area address, high half.
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    /// Device area address, low half.
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    /// Device area address, high half.
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    /// Configuration generation.
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    /// Start of the device configuration space.
    pub const CONFIG: u64 = 0x100;
}

/// InterruptStatus bit: a used buffer notification.
pub const INT_USED_BUFFER: u32 = 1;
/// InterruptStatus bit: the configuration changed.
pub const INT_CONFIG: u32 = 2;

/// Most transports the command line may name (see `cmdline`).
const MAX_TRANSPORTS: usize = testkernel::cmdline::MAX_VIRTIO_MMIO;

/// Transports whose window answered with the magic value at boot, so the
/// interrupt handler need not read the magic again.
static PRESENT: [AtomicBool; MAX_TRANSPORTS] = [const { AtomicBool::new(false) }; MAX_TRANSPORTS];
/// Interrupts per transport whose status had the used-buffer bit.
static USED_IRQS: [AtomicU64; MAX_TRANSPORTS] = [const { AtomicU64::new(0) }; MAX_TRANSPORTS];
/// Interrupts per transport whose status had the configuration bit.
static CONFIG_IRQS: [AtomicU64; MAX_TRANSPORTS] = [const { AtomicU64::new(0) }; MAX_TRANSPORTS];

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

/// Records the devices parsed from the command line and which of them
/// answer. Boot CPU, once, after paging is set up and before interrupts are
/// enabled.
pub fn init(scan: VirtioScan) {
    // SAFETY: see `Devices`.
    unsafe { *DEVICES.0.get() = scan };
    for (i, dev) in devices().iter().enumerate() {
        let present = phys::is_mapped(dev.base, 0x100)
            && dev.base & 3 == 0
            && read(dev.base, reg::MAGIC) == MAGIC;
        PRESENT[i].store(present, Ordering::Relaxed);
    }
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

/// Reads a register of the transport at `base`.
pub fn read(base: u64, off: u64) -> u32 {
    // SAFETY: callers check that `base + 0x100` is identity mapped; the
    // address is a 4-byte aligned register of a virtio-mmio window the VMM
    // named on the command line.
    unsafe { phys::read32(base + off) }
}

/// Writes a register of the transport at `base`.
pub fn write(base: u64, off: u64, v: u32) {
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
    let features = device_features(dev.base);
    Probe::Present {
        version: read(dev.base, reg::VERSION),
        device_id: read(dev.base, reg::DEVICE_ID),
        vendor: read(dev.base, reg::VENDOR_ID),
        features,
    }
}

/// The device's feature bits 0-63 (the high word read first).
pub fn device_features(base: u64) -> u64 {
    write(base, reg::DEVICE_FEATURES_SEL, 1);
    let high = read(base, reg::DEVICE_FEATURES);
    write(base, reg::DEVICE_FEATURES_SEL, 0);
    let low = read(base, reg::DEVICE_FEATURES);
    (u64::from(high) << 32) | u64::from(low)
}

/// The status once the features are negotiated.
const FEATURES_DONE: u32 = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;

/// Sets FAILED in the device's status; returns `why`.
pub fn failed(base: u64, why: &'static str) -> &'static str {
    write(base, reg::STATUS, read(base, reg::STATUS) | status::FAILED);
    why
}

/// Resets the device and runs the initialisation up to FEATURES_OK: ACKNOWLEDGE, DRIVER, then
/// the features `choose` accepts of the offered ones (`None`: no VERSION_1). The accepted
/// features; after a completed reset, a failure leaves FAILED set.
pub fn negotiate(base: u64, choose: impl FnOnce(u64) -> Option<u64>) -> Result<u64, &'static str> {
    write(base, reg::STATUS, 0);
    let mut polls = 0;
    while read(base, reg::STATUS) != 0 {
        polls += 1;
        if polls > 1000 {
            return Err("reset did not complete");
        }
        cpu::pause();
    }
    write(base, reg::STATUS, status::ACKNOWLEDGE);
    write(base, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
    let Some(acked) = choose(device_features(base)) else {
        return Err(failed(base, "device does not offer VERSION_1"));
    };
    write(base, reg::DRIVER_FEATURES_SEL, 0);
    write(base, reg::DRIVER_FEATURES, acked as u32);
    write(base, reg::DRIVER_FEATURES_SEL, 1);
    write(base, reg::DRIVER_FEATURES, (acked >> 32) as u32);
    write(base, reg::STATUS, FEATURES_DONE);
    if read(base, reg::STATUS) & status::FEATURES_OK == 0 {
        return Err(failed(
            base,
            "device refused the features (FEATURES_OK not kept)",
        ));
    }
    Ok(acked)
}

/// Selects queue `index` for setting up: the most entries the device offers for it (0: no
/// such queue), or `None` if it is live already.
pub fn select_queue(base: u64, index: u32) -> Option<u32> {
    write(base, reg::QUEUE_SEL, index);
    if read(base, reg::QUEUE_READY) != 0 {
        return None;
    }
    Some(read(base, reg::QUEUE_NUM_MAX))
}

/// Gives the selected queue its rings (descriptor table, driver and device area addresses)
/// and sets QueueReady.
pub fn set_queue_rings(base: u64, desc: u64, driver: u64, device: u64) {
    let set64 = |lo: u64, hi: u64, v: u64| {
        write(base, lo, v as u32);
        write(base, hi, (v >> 32) as u32);
    };
    set64(reg::QUEUE_DESC_LOW, reg::QUEUE_DESC_HIGH, desc);
    set64(reg::QUEUE_DRIVER_LOW, reg::QUEUE_DRIVER_HIGH, driver);
    set64(reg::QUEUE_DEVICE_LOW, reg::QUEUE_DEVICE_HIGH, device);
    write(base, reg::QUEUE_READY, 1);
}

/// The last step of the initialisation: DRIVER_OK, which the device must keep. A device that
/// already needs a reset is left as it is; one that dropped DRIVER_OK gets FAILED.
pub fn driver_ok(base: u64) -> Result<(), &'static str> {
    write(base, reg::STATUS, FEATURES_DONE | status::DRIVER_OK);
    let now = read(base, reg::STATUS);
    if now & status::DEVICE_NEEDS_RESET != 0 {
        return Err("device needs reset right after DRIVER_OK");
    }
    if now & status::DRIVER_OK == 0 {
        return Err(failed(base, "device did not keep DRIVER_OK"));
    }
    Ok(())
}

/// Whether transport `index` answered with the magic value at boot.
pub fn present(index: usize) -> bool {
    PRESENT
        .get(index)
        .is_some_and(|p| p.load(Ordering::Relaxed))
}

/// Interrupts of transport `index` that reported used buffers.
pub fn used_irqs(index: usize) -> u64 {
    USED_IRQS
        .get(index)
        .map_or(0, |c| c.load(Ordering::Relaxed))
}

/// Interrupts of transport `index` that reported a configuration change.
pub fn config_irqs(index: usize) -> u64 {
    CONFIG_IRQS
        .get(index)
        .map_or(0, |c| c.load(Ordering::Relaxed))
}

/// Interrupt on `gsi`: acknowledges whatever the devices on that line
/// report, so the (edge-triggered) line can fire again, counts the causes,
/// and lets the block driver re-read a changed configuration.
pub fn on_irq(gsi: u32) {
    for (i, dev) in devices().iter().enumerate() {
        if dev.irq != gsi || !present(i) {
            continue;
        }
        let status = read(dev.base, reg::INTERRUPT_STATUS);
        if status == 0 {
            continue;
        }
        write(dev.base, reg::INTERRUPT_ACK, status);
        if status & INT_USED_BUFFER != 0 {
            USED_IRQS[i].fetch_add(1, Ordering::Relaxed);
        }
        if status & INT_CONFIG != 0 {
            CONFIG_IRQS[i].fetch_add(1, Ordering::Relaxed);
            virtio_blk::on_config_change(i);
            virtio_net::on_config_change(i);
            virtio_balloon::on_config_change(i);
        }
    }
}
