//! virtio-blk (virtio 1.x section 5.2) on raw disk images.
//!
//! A [`Block`] is a disk slot: it may hold a disk ([`BlockBackend`]) or be empty (capacity 0,
//! every request fails with IOERR). The machine keeps a [`BlockHandle`] to attach and detach
//! disks while the guest runs (QMP hot-plug) and to flush at exit. One worker thread per
//! started device (`blk<index>`) serves the single request queue.
//!
//! Files: `backend.rs` (the image file), `request.rs` (chain parsing), `execute.rs` (doing a
//! request), `worker.rs` (the thread), `slot.rs` (shared disk state and the handle),
//! `config.rs` (configuration space and features).

mod aligned;
mod backend;
mod config;
mod execute;
mod image_lock;
mod persist;
mod request;
mod slot;
#[cfg(test)]
mod test_utils;
mod worker;

pub use backend::{BlockBackend, BlockError};
pub use config::offered_features;
pub use persist::{BlockDiskState, BlockState};
pub use request::{parse, ParseError, Rejected, Request, RequestType, Segment};
pub use slot::BlockHandle;

use self::slot::{Disk, Slot};
use self::worker::{Worker, WorkerHandle};
use super::{
    device_type, read_config_bytes, take_queues, ActivateError, DeviceSnapshot, DeviceState,
    Interrupt, VirtioDevice,
};
use std::sync::Arc;
use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

/// Bytes per sector, the unit of capacity and request offsets.
pub const SECTOR_SIZE: u64 = 512;
/// Maximum (and offered) size of the request queue.
pub const QUEUE_SIZE: u16 = 256;
/// Length of the GET_ID answer.
pub const SERIAL_LEN: usize = 20;
/// Largest DISCARD / WRITE_ZEROES range, in sectors.
const MAX_DISCARD_SECTORS: u32 = 0x3f_ffff;
/// Size of the bounce buffer: data moves in chunks of at most this many bytes.
const IO_CHUNK: usize = 256 * 1024;

/// A virtio-blk device (one disk slot).
pub struct Block {
    slot: Arc<Slot>,
    queue_sizes: [u16; 1],
    worker: Option<WorkerHandle>,
}

impl Block {
    /// A device for slot `index` (its worker thread is called `blk<index>`), holding `disk`
    /// (the image and its serial) or empty.
    pub fn new(index: usize, disk: Option<(BlockBackend, &str)>) -> Self {
        let disk = disk.map(|(backend, serial)| Disk::new(backend, serial));
        Self {
            slot: Arc::new(Slot::new(index, disk)),
            queue_sizes: [QUEUE_SIZE],
            worker: None,
        }
    }

    /// The handle for hot-plug and flushing; usable from any thread.
    pub fn handle(&self) -> BlockHandle {
        BlockHandle {
            slot: self.slot.clone(),
        }
    }

    fn stop_worker(&mut self) {
        self.slot.set_interrupt(None);
        if let Some(mut w) = self.worker.take() {
            w.stop();
        }
    }

    /// Restores what a snapshot recorded beyond the disk itself (which the machine reopened
    /// from the configuration): the configuration generation the driver last read.
    pub fn restore_state(&self, state: &BlockState) {
        self.slot.set_generation(state.config_generation);
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        device_type::BLOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn avail_features(&self) -> u64 {
        offered_features(self.slot.config().read_only)
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let space = config::config_space(self.slot.config().capacity);
        read_config_bytes(&space, offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        log::debug!(
            "virtio-blk {}: ignoring {}-byte config write at {offset}",
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
        let ([queue], [queue_evt]) = take_queues(queues, queue_evts)?;
        let worker = Worker {
            mem,
            queue,
            queue_evt,
            interrupt: interrupt.clone(),
            slot: self.slot.clone(),
        };
        let name = format!("blk{}", self.slot.index);
        self.worker = Some(WorkerHandle::spawn(name, worker).map_err(ActivateError::Thread)?);
        self.slot.set_interrupt(Some(interrupt));
        Ok(())
    }

    fn reset(&mut self) {
        self.stop_worker();
    }

    fn can_save(&self) -> Result<(), String> {
        Ok(())
    }

    fn save(&mut self) -> Result<DeviceSnapshot, String> {
        // The worker completes the request in progress and parks; the rest stay in the ring.
        let queues = match &self.worker {
            Some(w) => vec![w.park()?],
            None => Vec::new(),
        };
        Ok(DeviceSnapshot {
            device: DeviceState::Block(self.slot.save_state()?),
            queues,
        })
    }

    fn resume_after_save(&mut self) {
        if let Some(w) = &self.worker {
            w.release();
        }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        self.stop_worker();
    }
}

#[cfg(test)]
mod tests;
