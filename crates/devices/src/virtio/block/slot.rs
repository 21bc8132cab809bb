//! A disk slot: the disk (if any) behind one virtio-blk device, shared by the vCPU thread
//! (configuration reads), the device's worker thread (I/O) and the QMP thread (hot-plug).
//!
//! Locks: `disk` is held by the worker for the length of one request and by attach/detach
//! while they swap the disk, so a swap never happens in the middle of a request. `config` is
//! held only to copy or update a few words; it never waits on I/O. Order: `disk`, then
//! `config`, then `interrupt`.

use super::backend::{BlockBackend, BlockError};
use super::SERIAL_LEN;
use crate::bus::lock;
use crate::virtio::{Interrupt, InterruptKind};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// An attached disk image and its serial number.
#[derive(Debug)]
pub struct Disk {
    pub backend: BlockBackend,
    /// The GET_ID answer: the serial, NUL-padded (no terminator at 20 bytes).
    pub serial: [u8; SERIAL_LEN],
}

impl Disk {
    pub fn new(backend: BlockBackend, serial: &str) -> Self {
        let mut id = [0u8; SERIAL_LEN];
        let n = serial.len().min(SERIAL_LEN);
        id[..n].copy_from_slice(&serial.as_bytes()[..n]);
        Self {
            backend,
            serial: id,
        }
    }
}

/// What the configuration space and the offered features show.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConfigState {
    /// Capacity in sectors (0 for an empty slot).
    pub capacity: u64,
    pub read_only: bool,
    /// Bumped on every change, for the ConfigGeneration register.
    pub generation: u32,
}

pub struct Slot {
    pub index: usize,
    pub disk: Mutex<Option<Disk>>,
    config: Mutex<ConfigState>,
    /// The running device's interrupt, for config-change notifications; `None` while the
    /// driver has not started the device.
    interrupt: Mutex<Option<Arc<Interrupt>>>,
}

impl Slot {
    pub fn new(index: usize, disk: Option<Disk>) -> Self {
        let config = ConfigState {
            capacity: disk.as_ref().map_or(0, |d| d.backend.capacity()),
            read_only: disk.as_ref().is_some_and(|d| d.backend.read_only()),
            generation: 0,
        };
        Self {
            index,
            disk: Mutex::new(disk),
            config: Mutex::new(config),
            interrupt: Mutex::new(None),
        }
    }

    pub fn config(&self) -> ConfigState {
        *lock(&self.config)
    }

    /// The configuration generation a snapshot recorded.
    pub fn set_generation(&self, generation: u32) {
        lock(&self.config).generation = generation;
    }

    pub fn set_interrupt(&self, interrupt: Option<Arc<Interrupt>>) {
        *lock(&self.interrupt) = interrupt;
    }

    /// Publishes the disk now in the slot (called with `disk` locked) and tells the driver.
    fn publish(&self, disk: Option<&Disk>) {
        {
            let mut c = lock(&self.config);
            c.capacity = disk.map_or(0, |d| d.backend.capacity());
            c.read_only = disk.is_some_and(|d| d.backend.read_only());
            c.generation = c.generation.wrapping_add(1);
        }
        if let Some(irq) = lock(&self.interrupt).as_ref() {
            if let Err(e) = irq.trigger(InterruptKind::ConfigChange) {
                log::error!("virtio-blk {}: cannot raise config-change: {e}", self.index);
            }
        }
    }
}

/// A handle on a virtio-blk device's disk slot, for the machine and the QMP thread: hot-plug
/// and flushing work through it while the guest runs. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct BlockHandle {
    pub(super) slot: Arc<Slot>,
}

impl BlockHandle {
    /// The slot index given to [`super::Block::new`].
    pub fn index(&self) -> usize {
        self.slot.index
    }

    /// Puts `backend` in the empty slot, with `serial` as its GET_ID answer (truncated to
    /// 20 bytes). The guest sees the new capacity through a config-change interrupt.
    pub fn attach(&self, backend: BlockBackend, serial: &str) -> Result<(), BlockError> {
        let mut disk = lock(&self.slot.disk);
        if disk.is_some() {
            return Err(BlockError::SlotBusy(self.slot.index));
        }
        *disk = Some(Disk::new(backend, serial));
        self.slot.publish(disk.as_ref());
        Ok(())
    }

    /// Empties the slot (capacity 0 for the guest, every request fails with IOERR) after any
    /// request in progress has finished, then flushes and closes the image. The slot is empty
    /// even when the flush fails.
    pub fn detach(&self) -> Result<(), BlockError> {
        let old = {
            let mut disk = lock(&self.slot.disk);
            let old = disk.take().ok_or(BlockError::SlotEmpty(self.slot.index))?;
            self.slot.publish(None);
            old
        };
        old.backend.flush().map_err(|source| BlockError::Flush {
            path: old.backend.path().to_path_buf(),
            source,
        })
    }

    /// Makes every write the guest has seen completed durable (`fdatasync`); nothing to do for
    /// an empty slot. Call at VMM exit.
    pub fn flush(&self) -> Result<(), BlockError> {
        match lock(&self.slot.disk).as_ref() {
            Some(d) => d.backend.flush().map_err(|source| BlockError::Flush {
                path: d.backend.path().to_path_buf(),
                source,
            }),
            None => Ok(()),
        }
    }

    /// Whether a disk is attached.
    pub fn is_attached(&self) -> bool {
        lock(&self.slot.disk).is_some()
    }

    /// The attached image's path.
    pub fn path(&self) -> Option<PathBuf> {
        lock(&self.slot.disk)
            .as_ref()
            .map(|d| d.backend.path().to_path_buf())
    }

    /// Capacity in sectors as the guest sees it (0 when empty).
    pub fn capacity(&self) -> u64 {
        self.slot.config().capacity
    }
}
