//! virtio-net (virtio 1.x section 5.1) on a TAP, in user space or through vhost-net.
//!
//! A [`Net`] is a NIC slot: it may hold a backend ([`NicBackend`]: a TAP, and `/dev/vhost-net`
//! for `vhost=on`) or be empty (link down). The machine keeps a [`NetHandle`] to plug and
//! unplug TAPs while the guest runs (QMP hot-plug). One thread per started device (`net<index>`)
//! serves the receive and transmit queues, or watches the host kernel serve them.
//!
//! What a Linux guest sees: both NIC slots exist from boot, so its driver probes `eth0` and
//! `eth1` at boot whether or not a TAP is in them, each with its MAC (the configured one, else a
//! random locally administered address, logged) and with the link down while the slot is empty.
//! Plugging a TAP in raises the link (STATUS, through a configuration interrupt), unplugging
//! lowers it; the driver keeps running through both, no reset is needed, and it keeps the MAC
//! it read at probe (see docs/net.md).
//!
//! Files: `tap.rs` (the TAP), `backend.rs` (opening TAP and vhost device), `rx.rs` and `tx.rs`
//! (frames into and out of the queues), `worker.rs` (the thread), `slot.rs` (shared state and
//! the handle), `config.rs` (configuration space and features), `persist.rs` (snapshot state).

mod backend;
mod config;
mod persist;
mod rx;
mod slot;
mod tap;
#[cfg(test)]
mod test_utils;
mod tx;
mod worker;

pub use backend::{
    identity_of, vhost_net_available, BackendError, NicBackend, TapSource, VhostSource,
    VHOST_NET_PATH,
};
pub use config::{format_mac, offered_features, random_mac};
pub use persist::{NetState, RestoreError};
pub use rx::{BadChain, RxOutcome};
pub use slot::{ConfigState, NetError, NetHandle, Stats};
pub use tap::{Tap, TapError, VNET_HDR_LEN};
pub use tx::TxError;

use self::slot::NicSlot;
use self::worker::{Worker, WorkerHandle};
use super::{
    device_type, read_config_bytes, take_queues, ActivateError, DeviceSnapshot, DeviceState,
    Interrupt, VirtioDevice,
};
use crate::bus::lock;
use std::sync::Arc;
use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

/// Maximum (and offered) size of each queue.
pub const QUEUE_SIZE: u16 = 256;
/// The ring features a vhost-net backend must support to serve any NIC (what every NIC slot
/// offers a driver).
pub const VHOST_REQUIRED: u64 =
    crate::virtio::vhost::RING_FEATURES | (1 << config::feature::MRG_RXBUF);

/// A virtio-net device (one NIC slot).
pub struct Net {
    slot: Arc<NicSlot>,
    queue_sizes: [u16; 2],
}

impl Net {
    /// A device for slot `index` (its thread is called `net<index>`, the guest names it
    /// `eth<index>`) with `mac`, holding `backend` or empty.
    pub fn new(index: usize, mac: [u8; 6], backend: Option<NicBackend>) -> Self {
        Self {
            slot: Arc::new(NicSlot::new(index, mac, backend)),
            queue_sizes: [QUEUE_SIZE; 2],
        }
    }

    /// The handle for hot-plug; usable from any thread.
    pub fn handle(&self) -> NetHandle {
        NetHandle {
            slot: self.slot.clone(),
        }
    }

    fn stop_worker(&mut self) {
        let mut inner = lock(&self.slot.inner);
        self.slot.set_interrupt(None);
        if let Some(mut w) = inner.worker.take() {
            let backend = w.stop();
            if backend.is_some() {
                inner.backend = backend;
            }
        }
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        device_type::NET
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn avail_features(&self) -> u64 {
        offered_features()
    }

    fn ack_features(&mut self, features: u64) {
        self.slot.set_acked(features);
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let c = self.slot.config();
        read_config_bytes(&config::config_space(c.mac, c.link_up), offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        // The MAC is the device's (VIRTIO_NET_F_MAC); nothing else is writable.
        log::debug!(
            "virtio-net {}: ignoring {}-byte config write at {offset}",
            self.slot.index,
            data.len()
        );
    }

    fn config_generation(&self) -> u32 {
        self.slot.config().generation
    }

    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        interrupt: Arc<Interrupt>,
        queues: Vec<Queue>,
        queue_evts: Vec<EventFd>,
    ) -> Result<(), ActivateError> {
        self.stop_worker();
        let (queues, evts) = take_queues::<2>(queues, queue_evts)?;
        let mut inner = lock(&self.slot.inner);
        let worker = Worker {
            mem,
            queues,
            evts,
            interrupt: interrupt.clone(),
            acked: self.slot.config().acked,
            backend: inner.backend.take(),
            slot: self.slot.clone(),
        };
        let name = format!("net{}", self.slot.index);
        match WorkerHandle::spawn(name, worker) {
            Ok(w) => inner.worker = Some(w),
            Err(e) => {
                // The backend went with the thread that could not start: the slot is empty.
                self.slot.clear_backend();
                return Err(ActivateError::Thread(e));
            }
        }
        self.slot.set_interrupt(Some(interrupt));
        Ok(())
    }

    fn reset(&mut self) {
        self.stop_worker();
        self.slot.clear_negotiation();
    }

    fn can_save(&self) -> Result<(), String> {
        if self.slot.config().vhost {
            return Err(format!(
                "a VM with vhost-net (eth{}) cannot be snapshotted",
                self.slot.index
            ));
        }
        Ok(())
    }

    fn save(&mut self) -> Result<DeviceSnapshot, String> {
        self.can_save()?;
        // The thread finishes the frame in progress and parks; the rest stay in the rings.
        let queues = match lock(&self.slot.inner).worker.as_ref() {
            Some(w) => w.park()?,
            None => Vec::new(),
        };
        Ok(DeviceSnapshot {
            device: DeviceState::Net(persist::NetState::of(&self.slot)),
            queues,
        })
    }

    fn resume_after_save(&mut self) {
        if let Some(w) = lock(&self.slot.inner).worker.as_ref() {
            w.release();
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.stop_worker();
    }
}

#[cfg(test)]
mod tests;
