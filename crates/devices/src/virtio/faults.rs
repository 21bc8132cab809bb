//! What a device thread does when the driver misbehaves, the same in every device.
//!
//! - A bad buffer is refused and logged: at warning level the first [`LOUD_REJECTS`] times
//!   after an activation, at debug level after that, so a hostile guest cannot flood the log.
//! - A queue the driver broke itself (an avail index out of range, a used ring that cannot be
//!   written) is logged once and sets DEVICE_NEEDS_RESET; the device then leaves it alone until
//!   the driver resets the device.

use super::Interrupt;
use std::fmt::Display;

/// Refused buffers logged at warning level per activation; later ones go to debug.
pub const LOUD_REJECTS: u32 = 8;

/// The buffers refused since the activation.
#[derive(Debug, Default)]
pub struct Rejects(u32);

impl Rejects {
    /// Logs one refused buffer: `what` names the device and the buffer, `why` says what was
    /// wrong with it.
    pub fn log(&mut self, what: &dyn Display, why: &dyn Display) {
        self.0 = self.0.saturating_add(1);
        if self.0 <= LOUD_REJECTS {
            log::warn!("{what}: {why}");
        } else {
            log::debug!("{what}: {why}");
        }
    }

    /// How many were refused.
    #[cfg(test)]
    pub fn count(&self) -> u32 {
        self.0
    }
}

/// Marks a queue broken, once: the first time logs `device`, `queue` (which one the driver
/// broke) and `why`, and sets DEVICE_NEEDS_RESET through `interrupt` (none while the device
/// is not active). True if it was not broken before.
pub fn mark_broken(
    broken: &mut bool,
    interrupt: Option<&Interrupt>,
    device: &dyn Display,
    queue: &str,
    why: &dyn Display,
) -> bool {
    if *broken {
        return false;
    }
    log::error!("{device}: the driver broke {queue} ({why}); device needs reset");
    *broken = true;
    if let Some(i) = interrupt {
        i.set_needs_reset();
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_count_past_the_loud_ones_without_overflowing() {
        let mut r = Rejects::default();
        for _ in 0..LOUD_REJECTS + 3 {
            r.log(&"virtio-test: bad buffer", &"too short");
        }
        assert_eq!(r.count(), LOUD_REJECTS + 3);
        r.0 = u32::MAX;
        r.log(&"virtio-test: bad buffer", &"too short");
        assert_eq!(r.count(), u32::MAX);
    }

    #[test]
    fn a_queue_is_marked_broken_once() {
        let mut broken = false;
        assert!(mark_broken(
            &mut broken,
            None,
            &"virtio-test",
            "a queue",
            &"bad index"
        ));
        assert!(broken);
        assert!(!mark_broken(
            &mut broken,
            None,
            &"virtio-test",
            "a queue",
            &"again"
        ));
    }
}
