//! The interrupt of one virtio-mmio device: the InterruptStatus register and the irqfd that
//! raises the guest interrupt line, shared by the transport and the device's worker thread.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use vmm_sys_util::eventfd::EventFd;

/// Why the device interrupts the guest (the bits of InterruptStatus).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterruptKind {
    /// The device put buffers in a used ring (bit 0).
    UsedBuffer,
    /// The device configuration space changed (bit 1).
    ConfigChange,
}

impl InterruptKind {
    /// The InterruptStatus bit of this kind.
    pub fn bit(self) -> u32 {
        match self {
            InterruptKind::UsedBuffer => 1,
            InterruptKind::ConfigChange => 2,
        }
    }
}

/// InterruptStatus plus the irqfd registered with KVM for the device's GSI.
///
/// It also carries the device-side half of the status register, DEVICE_NEEDS_RESET, which a
/// worker thread sets when the driver broke a queue.
///
/// A device whose queues a host kernel serves (vhost) has that kernel write the irqfd directly,
/// with no user-space hop to set the used-buffer bit first. Linux's virtio-mmio interrupt
/// handler looks at the rings only when it reads that bit, so while such a data path runs
/// ([`Interrupt::set_kernel_data_path`]) InterruptStatus always reports it: every interrupt then
/// makes the driver check its used rings, which is what a vhost interrupt means.
#[derive(Debug)]
pub struct Interrupt {
    status: AtomicU32,
    needs_reset: AtomicBool,
    kernel_data_path: AtomicBool,
    irqfd: EventFd,
}

impl Interrupt {
    /// Wraps `irqfd`, the eventfd the machine registered as the irqfd of this device's GSI.
    pub fn new(irqfd: EventFd) -> Self {
        Self {
            status: AtomicU32::new(0),
            needs_reset: AtomicBool::new(false),
            kernel_data_path: AtomicBool::new(false),
            irqfd,
        }
    }

    /// Sets the status bit of `kind` and raises the interrupt line.
    pub fn trigger(&self, kind: InterruptKind) -> io::Result<()> {
        self.status.fetch_or(kind.bit(), Ordering::SeqCst);
        self.irqfd.write(1)
    }

    /// The current InterruptStatus register.
    pub fn status(&self) -> u32 {
        let kernel = if self.kernel_data_path.load(Ordering::SeqCst) {
            InterruptKind::UsedBuffer.bit()
        } else {
            0
        };
        self.status.load(Ordering::SeqCst) | kernel
    }

    /// Whether a host kernel (vhost) writes the irqfd for used buffers: InterruptStatus then
    /// reports the used-buffer bit on every read (see the type's documentation).
    pub fn set_kernel_data_path(&self, on: bool) {
        self.kernel_data_path.store(on, Ordering::SeqCst);
    }

    /// InterruptACK: clears the bits the driver acknowledges.
    pub fn ack(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::SeqCst);
    }

    /// Sets InterruptStatus and DEVICE_NEEDS_RESET as a snapshot had them, raising nothing.
    pub fn restore(&self, status: u32, needs_reset: bool) {
        self.status.store(status, Ordering::SeqCst);
        self.needs_reset.store(needs_reset, Ordering::SeqCst);
    }

    /// The irqfd (for the machine to register with KVM, or for tests to watch).
    pub fn irqfd(&self) -> &EventFd {
        &self.irqfd
    }

    /// Marks the device as needing a reset (DEVICE_NEEDS_RESET in the status register) and, as
    /// virtio 1.x 2.1.2 asks, tells the driver with a configuration change interrupt.
    pub fn set_needs_reset(&self) {
        if !self.needs_reset.swap(true, Ordering::SeqCst) {
            if let Err(e) = self.trigger(InterruptKind::ConfigChange) {
                log::error!("virtio: cannot raise the config-change interrupt: {e}");
            }
        }
    }

    /// Whether DEVICE_NEEDS_RESET is set.
    pub fn needs_reset(&self) -> bool {
        self.needs_reset.load(Ordering::SeqCst)
    }

    /// Back to the state after power-on (device reset).
    pub(crate) fn reset(&self) {
        self.status.store(0, Ordering::SeqCst);
        self.needs_reset.store(false, Ordering::SeqCst);
        self.kernel_data_path.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    #[test]
    fn trigger_sets_bits_and_signals() {
        let irq = Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap());
        assert_eq!(irq.status(), 0);
        irq.trigger(InterruptKind::UsedBuffer).unwrap();
        irq.trigger(InterruptKind::ConfigChange).unwrap();
        assert_eq!(irq.status(), 3);
        assert_eq!(irq.irqfd().read().unwrap(), 2);
        irq.ack(1);
        assert_eq!(irq.status(), 2);
        irq.ack(0xffff_fff0);
        assert_eq!(irq.status(), 2);
        irq.ack(2);
        assert_eq!(irq.status(), 0);
    }

    #[test]
    fn needs_reset_signals_once_and_resets() {
        let irq = Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap());
        irq.set_needs_reset();
        irq.set_needs_reset();
        assert!(irq.needs_reset());
        assert_eq!(irq.status(), 2);
        assert_eq!(irq.irqfd().read().unwrap(), 1);
        irq.reset();
        assert!(!irq.needs_reset());
        assert_eq!(irq.status(), 0);
    }

    #[test]
    fn a_kernel_data_path_always_reports_used_buffers() {
        let irq = Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap());
        irq.set_kernel_data_path(true);
        assert_eq!(irq.status(), 1);
        irq.ack(1);
        assert_eq!(irq.status(), 1, "acknowledged, and reported again");
        irq.trigger(InterruptKind::ConfigChange).unwrap();
        assert_eq!(irq.status(), 3);
        irq.ack(2);
        irq.set_kernel_data_path(false);
        assert_eq!(irq.status(), 0);
        irq.set_kernel_data_path(true);
        irq.reset();
        assert_eq!(irq.status(), 0, "a device reset ends it");
    }
}
