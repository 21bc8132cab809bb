//! QEMU's ISA pvpanic device: one port (0x505) through which a guest tells the host it
//! panicked. A read answers the events the device supports; a write reports them. The
//! device only records what was reported and wakes the event loop, which pauses the VM and
//! tells QMP (`GUEST_PANICKED`): a vCPU thread cannot wait for itself to park.

use crate::bus::BusDevice;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use vmm_sys_util::eventfd::EventFd;

/// The port QEMU's `-device pvpanic` uses by default.
pub const PVPANIC_PORT: u64 = 0x505;
/// The guest panicked.
pub const PVPANIC_PANICKED: u8 = 1 << 0;
/// The guest loaded a crash kernel (kdump) and runs on.
pub const PVPANIC_CRASH_LOADED: u8 = 1 << 1;
/// Every event this device supports: what a read of the port answers.
pub const PVPANIC_EVENTS: u8 = PVPANIC_PANICKED | PVPANIC_CRASH_LOADED;

/// Panic reports waiting for the event loop, from pvpanic or KVM (a `KVM_SYSTEM_EVENT_CRASH`).
pub struct PanicNotifier {
    pending: AtomicU8,
    /// Readable while reports are pending.
    pub evt: EventFd,
}

impl PanicNotifier {
    pub fn new() -> std::io::Result<Self> {
        Ok(PanicNotifier {
            pending: AtomicU8::new(0),
            evt: EventFd::new(libc::EFD_NONBLOCK)?,
        })
    }

    /// Records `events` (the pvpanic bits) and wakes the event loop.
    pub fn report(&self, events: u8) {
        let events = events & PVPANIC_EVENTS;
        if events == 0 {
            return;
        }
        self.pending.fetch_or(events, Ordering::AcqRel);
        if let Err(e) = self.evt.write(1) {
            log::error!("pvpanic: cannot wake the event loop: {e}");
        }
    }

    /// The events reported since the last call (clears the eventfd too).
    pub fn take(&self) -> u8 {
        let _ = self.evt.read();
        self.pending.swap(0, Ordering::AcqRel)
    }
}

/// The device on the port I/O bus.
pub struct PvPanic {
    notifier: Arc<PanicNotifier>,
}

impl PvPanic {
    pub fn new(notifier: Arc<PanicNotifier>) -> Self {
        PvPanic { notifier }
    }
}

impl BusDevice for PvPanic {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if offset == 0 {
            if let Some(b) = data.first_mut() {
                *b = PVPANIC_EVENTS;
            }
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (0, Some(&events)) = (offset, data.first()) {
            self.notifier.report(events);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_answers_the_supported_events() {
        let n = Arc::new(PanicNotifier::new().unwrap());
        let mut d = PvPanic::new(n);
        let mut b = [0xffu8; 1];
        d.read(0, &mut b);
        assert_eq!(b, [PVPANIC_EVENTS]);
    }

    #[test]
    fn writes_are_recorded_until_taken() {
        let n = Arc::new(PanicNotifier::new().unwrap());
        let mut d = PvPanic::new(n.clone());
        assert_eq!(n.take(), 0);
        d.write(0, &[0]);
        d.write(0, &[0xfc]);
        assert!(n.evt.read().is_err(), "no event bit: nothing to wake for");
        d.write(0, &[PVPANIC_PANICKED]);
        d.write(0, &[PVPANIC_CRASH_LOADED | 0x80]);
        assert_eq!(n.take(), PVPANIC_PANICKED | PVPANIC_CRASH_LOADED);
        assert_eq!(n.take(), 0);
        assert!(n.evt.read().is_err(), "take drained the eventfd");
    }
}
