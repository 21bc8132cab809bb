//! virtio-blk's snapshot state. The image itself is not in the snapshot: a restore opens the
//! same image from the same configuration, and this state lets the machine check that it is
//! the same disk, with the configuration generation the driver last read.

use super::slot::Slot;
use super::SERIAL_LEN;
use crate::bus::lock;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The disk in a slot when the snapshot was taken.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockDiskState {
    pub path: PathBuf,
    pub read_only: bool,
    pub direct: bool,
    pub serial: String,
    /// Sectors.
    pub capacity: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockState {
    /// None for an empty slot.
    pub disk: Option<BlockDiskState>,
    pub config_generation: u32,
}

impl Slot {
    /// The slot's state; flushes the image first, so the snapshot and the disk agree.
    pub(super) fn save_state(&self) -> Result<BlockState, String> {
        let disk = lock(&self.disk);
        let disk_state = match disk.as_ref() {
            Some(d) => {
                d.backend
                    .flush()
                    .map_err(|e| format!("flushing {}: {e}", d.backend.path().display()))?;
                let end = d.serial.iter().position(|&b| b == 0).unwrap_or(SERIAL_LEN);
                Some(BlockDiskState {
                    path: d.backend.path().to_path_buf(),
                    read_only: d.backend.read_only(),
                    direct: d.backend.direct(),
                    serial: String::from_utf8_lossy(&d.serial[..end]).into_owned(),
                    capacity: d.backend.capacity(),
                })
            }
            None => None,
        };
        Ok(BlockState {
            disk: disk_state,
            config_generation: self.config().generation,
        })
    }
}
