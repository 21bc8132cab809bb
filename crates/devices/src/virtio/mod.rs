//! Virtio devices and the virtio-mmio transport (virtio 1.x, "modern" only).
//!
//! The pieces, from the guest inwards:
//! - [`MmioTransport`] (`mmio.rs`): the 0x1000-byte register window a vCPU thread reads and
//!   writes; it negotiates features, collects the queue layout and hands the queues to the device
//!   when the driver sets DRIVER_OK.
//! - [`Interrupt`] (`interrupt.rs`): the interrupt status register and the irqfd, shared by the
//!   transport (which the guest acknowledges through) and the device (which raises it).
//! - [`VirtioDevice`] (`device.rs`): what a device (block, console, and later net, balloon)
//!   implements to plug into the transport.
//! - [`block`]: virtio-blk on raw image files.
//! - [`console`]: virtio-console (port 0, the guest's hvc0) on a Unix socket.
//! - [`net`]: virtio-net on a TAP, in user space or through vhost-net.
//! - [`vhost`]: the in-kernel vhost data path, shared by vhost-net and vhost-vsock.
//! - [`vsock`]: virtio-vsock, through vhost-vsock or in user space over Unix sockets.
//!
//! Wiring one block slot into a machine (guest memory `mem`, window at `base`, GSI `irq`):
//! ```text
//! let backend = BlockBackend::open(path, read_only, direct)?;         // or None: empty slot
//! let block = Block::new(index, Some((backend, serial)));
//! let handle = block.handle();                                         // keep: hot-plug, flush
//! let irqfd = EventFd::new(EFD_NONBLOCK)?;   vm.register_irqfd(&irqfd, irq)
//! let transport = MmioTransport::new(mem.clone(), Box::new(block), irqfd)?;
//! for (i, evt) in transport.queue_evts().iter().enumerate() {
//!     vm.register_ioevent(evt, Mmio(base + MMIO_QUEUE_NOTIFY_OFFSET), i as u32)  // 4 bytes
//! }
//! mmio_bus.insert(Arc::new(Mutex::new(transport)), base, MMIO_WINDOW_SIZE)?;
//! cmdline.push(mmio_cmdline_entry(base, MMIO_WINDOW_SIZE, irq));
//! ```
//! The irqfd is registered with KVM *before* it is moved into the transport (only a
//! reference is needed for `KVM_IRQFD`); `transport.interrupt().irqfd()` gives it back.

pub mod balloon;
pub mod block;
mod cmdline;
pub mod console;
mod device;
pub(crate) mod device_thread;
pub(crate) mod faults;
mod interrupt;
mod mmio;
pub mod net;
pub mod pause;
pub mod persist;
#[cfg(test)]
pub(crate) mod test_queue;
#[cfg(test)]
pub(crate) mod test_transport;
#[cfg(test)]
pub(crate) mod test_wait;
pub mod vhost;
pub mod vsock;

pub use cmdline::mmio_cmdline_entry;
pub(crate) use device::take_queues;
pub use device::{read_config_bytes, ActivateError, VirtioDevice};
pub use interrupt::{Interrupt, InterruptKind};
pub use mmio::{MmioTransport, MMIO_QUEUE_NOTIFY_OFFSET, MMIO_WINDOW_SIZE};
pub use persist::{DeviceSnapshot, DeviceState, QueuePosition, TransportState};

/// Virtio device IDs (virtio 1.x section 5).
pub mod device_type {
    pub const NET: u32 = 1;
    pub const BLOCK: u32 = 2;
    pub const CONSOLE: u32 = 3;
    pub const BALLOON: u32 = 5;
    pub const VSOCK: u32 = 19;
}

/// Device status bits (virtio 1.x section 2.1).
pub mod status {
    pub const ACKNOWLEDGE: u32 = 1;
    pub const DRIVER: u32 = 2;
    pub const DRIVER_OK: u32 = 4;
    pub const FEATURES_OK: u32 = 8;
    pub const DEVICE_NEEDS_RESET: u32 = 0x40;
    pub const FAILED: u32 = 0x80;
}

/// Transport-level feature bits (virtio 1.x section 6), as bit numbers.
pub mod features {
    /// The driver can use indirect descriptors.
    pub const RING_INDIRECT_DESC: u32 = 28;
    /// `used_event` / `avail_event` notification suppression.
    pub const RING_EVENT_IDX: u32 = 29;
    /// Virtio 1.x ("modern") device; always offered by the MMIO transport.
    pub const VERSION_1: u32 = 32;
    /// Packed virtqueues (not supported by the transport).
    pub const RING_PACKED: u32 = 34;
    /// Extra data in queue notifications (not supported by the transport).
    pub const NOTIFICATION_DATA: u32 = 38;
    /// Per-queue reset (not supported by the transport).
    pub const RING_RESET: u32 = 40;

    /// The feature mask of bit `n`.
    pub const fn bit(n: u32) -> u64 {
        1u64 << n
    }
}
