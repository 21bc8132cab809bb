//! Snapshot state of virtio devices: the transport's registers (`TransportState`, saved by
//! [`super::MmioTransport::save`]) around each device's own state ([`DeviceState`], one variant
//! per kind of device, whose contents live in that device's `persist.rs`).

use serde::{Deserialize, Serialize};
use virtio_queue::{Queue, QueueT};

/// Where a queue's device side stands: the next chain to take, the next used slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuePosition {
    pub next_avail: u16,
    pub next_used: u16,
}

impl QueuePosition {
    pub fn of(q: &Queue) -> Self {
        QueuePosition {
            next_avail: q.next_avail(),
            next_used: q.next_used(),
        }
    }

    pub fn apply(&self, q: &mut Queue) {
        q.set_next_avail(self.next_avail);
        q.set_next_used(self.next_used);
    }
}

/// A device's own state, by kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DeviceState {
    Block(super::block::BlockState),
    Console(super::console::ConsoleState),
}

/// What a device gives a snapshot: its state and, while started, its queues' positions (with
/// every request it took from them completed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSnapshot {
    pub device: DeviceState,
    pub queues: Vec<QueuePosition>,
}

/// The driver's view of one queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueConfigState {
    pub max_size: u16,
    pub size: u16,
    pub ready: bool,
    pub desc: u64,
    pub driver: u64,
    pub device: u64,
}

/// A virtio-mmio transport and the device behind it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransportState {
    pub device_type: u32,
    pub status: u32,
    pub acked_features: u64,
    pub device_features_sel: u32,
    pub driver_features_sel: u32,
    pub queue_sel: u32,
    pub queues: Vec<QueueConfigState>,
    /// The queues' positions, when the device was started.
    pub positions: Vec<QueuePosition>,
    pub activated: bool,
    pub interrupt_status: u32,
    pub needs_reset: bool,
    pub device: DeviceState,
}
