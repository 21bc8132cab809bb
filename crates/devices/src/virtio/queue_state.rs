//! A virtqueue's position and layout as plain data, for snapshots: what `virtio_queue`'s
//! `QueueState` holds, with serde. Restoring checks it like a driver's setup.

use serde::{Deserialize, Serialize};
use virtio_queue::{Queue, QueueState};

/// One queue of a running device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSnapshot {
    pub max_size: u16,
    pub size: u16,
    pub ready: bool,
    pub desc_table: u64,
    pub avail_ring: u64,
    pub used_ring: u64,
    /// Where the device goes on in the driver ring and the device ring.
    pub next_avail: u16,
    pub next_used: u16,
    pub event_idx: bool,
}

impl From<QueueState> for QueueSnapshot {
    fn from(s: QueueState) -> Self {
        Self {
            max_size: s.max_size,
            size: s.size,
            ready: s.ready,
            desc_table: s.desc_table,
            avail_ring: s.avail_ring,
            used_ring: s.used_ring,
            next_avail: s.next_avail,
            next_used: s.next_used,
            event_idx: s.event_idx_enabled,
        }
    }
}

impl TryFrom<&QueueSnapshot> for Queue {
    type Error = virtio_queue::Error;

    fn try_from(s: &QueueSnapshot) -> Result<Self, Self::Error> {
        Queue::try_from(QueueState {
            max_size: s.max_size,
            next_avail: s.next_avail,
            next_used: s.next_used,
            event_idx_enabled: s.event_idx,
            size: s.size,
            ready: s.ready,
            desc_table: s.desc_table,
            avail_ring: s.avail_ring,
            used_ring: s.used_ring,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtio_queue::QueueT;
    use vm_memory::GuestAddress;

    #[test]
    fn a_queue_round_trips() {
        let mut q = Queue::new(64).unwrap();
        q.set_size(32);
        q.try_set_desc_table_address(GuestAddress(0x1000)).unwrap();
        q.try_set_avail_ring_address(GuestAddress(0x2000)).unwrap();
        q.try_set_used_ring_address(GuestAddress(0x3000)).unwrap();
        q.set_ready(true);
        q.set_event_idx(true);
        q.set_next_avail(7);
        q.set_next_used(5);
        let snap = QueueSnapshot::from(q.state());
        let json = serde_json::to_string(&snap).unwrap();
        let back: QueueSnapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, snap);
        let r = Queue::try_from(&back).unwrap();
        assert_eq!(r.state(), q.state());
        let bad = QueueSnapshot { size: 33, ..snap };
        assert!(Queue::try_from(&bad).is_err(), "not a power of two");
    }
}
