//! What a virtio device implements to sit behind the MMIO transport.

use super::Interrupt;
use std::sync::Arc;
use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

/// Why a device could not start.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error("expected {expected} queues, got {got}")]
    QueueCount { expected: usize, got: usize },
    #[error("queue {index}: {reason}")]
    Queue { index: usize, reason: String },
    #[error("cannot start the device worker thread: {0}")]
    Thread(std::io::Error),
    #[error("cannot duplicate an eventfd: {0}")]
    EventFd(std::io::Error),
    #[error("{0}")]
    Other(String),
}

/// A virtio device behind a transport.
///
/// The transport calls these from the vCPU thread that handles the MMIO exit (with the
/// transport's lock held), so none of them may block for long.
///
/// Life cycle: the driver negotiates features (`avail_features`, `ack_features`), sets up
/// queues, then sets DRIVER_OK, upon which the transport calls `activate` once with every
/// queue. A device reset (the driver writes 0 to Status) calls `reset`, which must stop
/// everything `activate` started; after it the device can be activated again.
pub trait VirtioDevice: Send {
    /// The virtio device ID ([`super::device_type`]).
    fn device_type(&self) -> u32;

    /// The maximum size of each queue; the length is the number of queues. Sizes must be
    /// powers of two.
    fn queue_max_sizes(&self) -> &[u16];

    /// The feature bits the device offers (the transport adds VERSION_1).
    fn avail_features(&self) -> u64;

    /// How many of the queues (the first ones) the driver uses with the features it accepted:
    /// the transport starts the device with just those. A device whose queues depend on
    /// features (the balloon's statistics and reporting queues) says so; the default is all.
    fn queues_in_use(&self, _acked_features: u64) -> usize {
        self.queue_max_sizes().len()
    }

    /// The features the driver accepted (a subset of the offered ones), given once the driver
    /// sets FEATURES_OK and before `activate`.
    fn ack_features(&mut self, _features: u64) {}

    /// Reads the device configuration space at `offset`; bytes past its end read as zero.
    fn read_config(&self, offset: u64, data: &mut [u8]);

    /// Writes the device configuration space; read-only fields ignore writes.
    fn write_config(&mut self, offset: u64, data: &[u8]);

    /// The ConfigGeneration register: changes whenever the configuration space changes other
    /// than by a driver write.
    fn config_generation(&self) -> u32 {
        0
    }

    /// Starts the device. `queues` (the first [`VirtioDevice::queues_in_use`] of them) are ready
    /// and valid (checked against `mem`), with EVENT_IDX already set when negotiated;
    /// `queue_evts[i]` is signalled when the driver notifies queue `i`; `interrupt` raises the
    /// device's interrupt.
    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        interrupt: Arc<Interrupt>,
        queues: Vec<Queue>,
        queue_evts: Vec<EventFd>,
    ) -> Result<(), ActivateError>;

    /// Stops what `activate` started (joining worker threads) and forgets the queues.
    fn reset(&mut self);

    /// Snapshot, with the VM paused: the device's state and, if started, its queues' positions
    /// with every request it took from them completed. From then on the device takes nothing
    /// from its queues until [`VirtioDevice::resume_after_save`], so guest memory stays as the
    /// positions say while the snapshot is written. A device that cannot be saved says why.
    fn save(&mut self) -> Result<super::DeviceSnapshot, String> {
        self.can_save()?;
        Err(format!(
            "virtio device type {} has no snapshot state",
            self.device_type()
        ))
    }

    /// After a snapshot (written or failed): the device serves its queues again.
    fn resume_after_save(&mut self) {}

    /// Whether the device can be part of a snapshot (asked before anything is paused or
    /// written); the reason if not.
    fn can_save(&self) -> Result<(), String> {
        Err(format!(
            "a VM with a virtio device of type {} cannot be snapshotted",
            self.device_type()
        ))
    }
}

/// The queues and eventfds `activate` got, as arrays of the `N` a device with a fixed set of
/// queues needs; a [`ActivateError::QueueCount`] unless there are `N` of each.
pub(crate) fn take_queues<const N: usize>(
    queues: Vec<Queue>,
    queue_evts: Vec<EventFd>,
) -> Result<([Queue; N], [EventFd; N]), ActivateError> {
    let got = queues.len().min(queue_evts.len());
    match (
        <[Queue; N]>::try_from(queues),
        <[EventFd; N]>::try_from(queue_evts),
    ) {
        (Ok(queues), Ok(evts)) => Ok((queues, evts)),
        _ => Err(ActivateError::QueueCount { expected: N, got }),
    }
}

/// Copies the part of a configuration space image at `offset` into `data`; bytes past the end
/// of `space` read as zero. Any offset and length are fine.
pub fn read_config_bytes(space: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let Ok(start) = usize::try_from(offset) else {
        return;
    };
    if let Some(src) = space.get(start..) {
        let n = src.len().min(data.len());
        data[..n].copy_from_slice(&src[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_bytes_any_window() {
        let space = [1u8, 2, 3, 4];
        let mut d = [9u8; 3];
        read_config_bytes(&space, 2, &mut d);
        assert_eq!(d, [3, 4, 0]);
        read_config_bytes(&space, 4, &mut d);
        assert_eq!(d, [0, 0, 0]);
        read_config_bytes(&space, u64::MAX, &mut d);
        assert_eq!(d, [0, 0, 0]);
        read_config_bytes(&space, 0, &mut []);
    }

    #[test]
    fn take_queues_wants_exactly_n_of_each() {
        use virtio_queue::QueueT;
        let q = || Queue::new(16).unwrap();
        let e = || EventFd::new(0).unwrap();
        let (qs, es) = take_queues::<2>(vec![q(), q()], vec![e(), e()]).unwrap();
        assert_eq!((qs.len(), es.len()), (2, 2));
        for (queues, evts, got) in [(1, 2, 1), (2, 1, 1), (3, 3, 3)] {
            let r = take_queues::<2>(
                (0..queues).map(|_| q()).collect(),
                (0..evts).map(|_| e()).collect(),
            );
            assert!(
                matches!(r, Err(ActivateError::QueueCount { expected: 2, got: g }) if g == got)
            );
        }
    }
}
