//! Disk hot-plug as StratoVirt documents it: `blockdev-add` names an image (a node), then
//! `device_add` with the same id puts it into a slot (`addr` 0x0 is vda, 0x1 vdb, ...; `lun` N
//! is slot N+1); `device_del` takes it out. Every misuse is refused before anything changes.

use crate::virtio_slots::{BlockSlots, BLOCK_SLOTS};
use devices::virtio::block::BlockBackend;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Why a hot-plug request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HotplugError {
    /// QMP `DeviceNotFound`.
    #[error("{0}")]
    NotFound(String),
    /// QMP `GenericError`.
    #[error("{0}")]
    Invalid(String),
}

/// A node added by `blockdev-add` and not yet attached.
struct PendingNode {
    backend: BlockBackend,
    path: PathBuf,
}

#[derive(Default)]
struct State {
    pending: HashMap<String, PendingNode>,
    /// The device id in each slot.
    ids: [Option<String>; BLOCK_SLOTS],
    /// Nodes whose disk `device_del` closed: the QEMU-style clean-up `blockdev-del` of one
    /// succeeds (and forgets it), while the seeds' flow (`device_del` alone, then
    /// `blockdev-add` of the same node again) works too. The image is closed either way.
    released: HashSet<String>,
}

/// Hot-plug bookkeeping over the block slots.
pub struct BlockHotplug {
    slots: BlockSlots,
    state: Mutex<State>,
}

/// Canonical form of an image path, to tell whether two names are the same file.
fn same_file_key(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

impl BlockHotplug {
    /// `boot_ids` are the ids of the boot disks, slot by slot.
    pub fn new(slots: BlockSlots, boot_ids: &[String]) -> Self {
        let mut state = State::default();
        for (i, id) in boot_ids.iter().take(BLOCK_SLOTS).enumerate() {
            state.ids[i] = Some(id.clone());
        }
        BlockHotplug {
            slots,
            state: Mutex::new(state),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn in_use(&self, state: &State, key: &Path) -> Option<String> {
        let attached = self
            .slots
            .slots
            .iter()
            .filter_map(|s| s.path())
            .any(|p| same_file_key(&p) == key);
        let pending = state
            .pending
            .values()
            .any(|n| same_file_key(&n.path) == key);
        (attached || pending).then(|| key.display().to_string())
    }

    /// `blockdev-add`: opens the image and keeps it under `node_name`.
    pub fn add_node(
        &self,
        node_name: &str,
        filename: &Path,
        read_only: bool,
        direct: bool,
    ) -> Result<(), HotplugError> {
        if node_name.is_empty() {
            return Err(HotplugError::Invalid("node-name must not be empty".into()));
        }
        let mut st = self.lock();
        if st.pending.contains_key(node_name) || st.ids.iter().flatten().any(|i| i == node_name) {
            return Err(HotplugError::Invalid(format!(
                "node-name '{node_name}' is already in use"
            )));
        }
        let key = same_file_key(filename);
        if let Some(p) = self.in_use(&st, &key) {
            return Err(HotplugError::Invalid(format!(
                "image {p} is already in use by this VM (the root file system image cannot be plugged again)"
            )));
        }
        let backend = BlockBackend::open(filename, read_only, direct)
            .map_err(|e| HotplugError::Invalid(e.to_string()))?;
        st.released.remove(node_name);
        st.pending.insert(
            node_name.to_string(),
            PendingNode {
                backend,
                path: filename.to_path_buf(),
            },
        );
        log::info!("blockdev-add: node {node_name} = {}", filename.display());
        Ok(())
    }

    /// `blockdev-del` for a node that was added but never attached.
    pub fn del_node(&self, node_name: &str) -> Result<(), HotplugError> {
        let mut st = self.lock();
        if st.pending.remove(node_name).is_some() {
            log::info!("blockdev-del: node {node_name} closed");
            return Ok(());
        }
        if st.released.remove(node_name) {
            log::info!("blockdev-del: node {node_name} (already closed by device_del)");
            return Ok(());
        }
        if st.ids.iter().flatten().any(|i| i == node_name) {
            return Err(HotplugError::Invalid(format!(
                "node '{node_name}' is attached to a device; device_del it first"
            )));
        }
        Err(HotplugError::NotFound(format!(
            "Cannot find block device node '{node_name}'"
        )))
    }

    /// `device_add` of a virtio-blk-mmio device `id` (backed by node `drive`, which defaults to
    /// `id` and must equal it) into `slot`.
    pub fn attach(&self, id: &str, drive: Option<&str>, slot: usize) -> Result<(), HotplugError> {
        if let Some(d) = drive {
            if d != id {
                return Err(HotplugError::Invalid(format!(
                    "the node-name of blockdev-add ('{d}') must equal the id of device_add ('{id}')"
                )));
            }
        }
        if slot >= BLOCK_SLOTS {
            return Err(HotplugError::Invalid(format!(
                "addr 0x{slot:x} is out of range: a VM has at most {BLOCK_SLOTS} disks (0x0-0x{:x})",
                BLOCK_SLOTS - 1
            )));
        }
        let mut st = self.lock();
        if st.ids.iter().flatten().any(|i| i == id) {
            return Err(HotplugError::Invalid(format!(
                "Duplicate ID '{id}' for device"
            )));
        }
        if !st.pending.contains_key(id) {
            let why = if st.released.contains(id) {
                " (device_del closed its image)"
            } else {
                ""
            };
            return Err(HotplugError::Invalid(format!(
                "no block node '{id}'{why}: run blockdev-add with node-name '{id}' first"
            )));
        }
        let handle = &self.slots.slots[slot];
        if handle.is_attached() || st.ids[slot].is_some() {
            let holder = st.ids[slot].clone().unwrap_or_default();
            return Err(HotplugError::Invalid(format!(
                "addr 0x{slot:x} (vd{}) already holds disk '{holder}'",
                (b'a' + slot as u8) as char
            )));
        }
        let node = st.pending.remove(id).expect("checked above");
        let path = node.path.clone();
        if let Err(e) = handle.attach(node.backend, id) {
            return Err(HotplugError::Invalid(e.to_string()));
        }
        st.ids[slot] = Some(id.to_string());
        log::info!("device_add: disk {id} ({}) in slot {slot}", path.display());
        Ok(())
    }

    /// `device_del`: takes disk `id` out of its slot. Returns false if no disk has that id.
    pub fn detach(&self, id: &str) -> Result<bool, HotplugError> {
        let mut st = self.lock();
        let Some(slot) = st.ids.iter().position(|i| i.as_deref() == Some(id)) else {
            return Ok(false);
        };
        self.slots.slots[slot]
            .detach()
            .map_err(|e| HotplugError::Invalid(e.to_string()))?;
        st.ids[slot] = None;
        st.released.insert(id.to_string());
        log::info!("device_del: disk {id} removed from slot {slot}, its image closed");
        Ok(true)
    }
}

/// Slot for `addr` ("0x1", "1") or `lun` (N -> slot N+1), as the seeds define them.
pub fn slot_from_addr(addr: Option<&str>, lun: Option<u64>) -> Result<usize, HotplugError> {
    match (addr, lun) {
        (Some(_), Some(_)) => Err(HotplugError::Invalid(
            "give either addr or lun, not both".into(),
        )),
        (Some(a), None) => {
            let t = a.trim();
            let v = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                Some(h) => u64::from_str_radix(h, 16),
                None => t.parse::<u64>(),
            };
            v.map(|v| v as usize).map_err(|_| {
                HotplugError::Invalid(format!("addr '{a}' is not a number such as 0x1"))
            })
        }
        (None, Some(l)) => Ok(l as usize + 1),
        (None, None) => Err(HotplugError::Invalid("Parameter 'addr' is missing".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_and_lun_map_to_slots() {
        assert_eq!(slot_from_addr(Some("0x0"), None), Ok(0));
        assert_eq!(slot_from_addr(Some("0x1"), None), Ok(1));
        assert_eq!(slot_from_addr(Some("5"), None), Ok(5));
        assert_eq!(slot_from_addr(None, Some(0)), Ok(1), "lun 0 is vdb");
        assert!(slot_from_addr(Some("zz"), None).is_err());
        assert!(slot_from_addr(None, None).is_err());
        assert!(slot_from_addr(Some("0x1"), Some(1)).is_err());
    }

    fn image(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("sv-hotplug-{}-{name}", std::process::id()));
        std::fs::write(&p, vec![0u8; 4096]).unwrap();
        p
    }

    fn hotplug(boot: &[&str]) -> BlockHotplug {
        use devices::virtio::block::Block;
        let blocks: Vec<Block> = (0..BLOCK_SLOTS).map(|i| Block::new(i, None)).collect();
        let slots = BlockSlots {
            slots: blocks.iter().map(|b| b.handle()).collect(),
        };
        std::mem::forget(blocks);
        let ids: Vec<String> = boot.iter().map(|s| s.to_string()).collect();
        BlockHotplug::new(slots, &ids)
    }

    #[test]
    fn add_attach_detach_cycle_and_misuse() {
        let hp = hotplug(&[]);
        let img = image("a");
        let img2 = image("b");
        assert!(hp
            .attach("drive-0", None, 1)
            .unwrap_err()
            .to_string()
            .contains("blockdev-add"));
        hp.add_node("drive-0", &img, false, false).unwrap();
        let e = hp.add_node("drive-0", &img2, false, false).unwrap_err();
        assert!(e.to_string().contains("already in use"), "{e}");
        let e = hp.add_node("other", &img, false, false).unwrap_err();
        assert!(e.to_string().contains("already in use by this VM"), "{e}");
        assert!(
            hp.attach("drive-0", Some("x"), 1).is_err(),
            "node-name must equal id"
        );
        assert!(hp
            .attach("drive-0", None, 6)
            .unwrap_err()
            .to_string()
            .contains("at most 6"));
        hp.attach("drive-0", None, 1).unwrap();
        assert!(hp.slots.slots[1].is_attached());
        hp.add_node("drive-1", &img2, false, false).unwrap();
        let e = hp.attach("drive-1", None, 1).unwrap_err();
        assert!(
            e.to_string().contains("already holds disk 'drive-0'"),
            "{e}"
        );
        let e = hp.attach("drive-0", None, 2).unwrap_err();
        assert!(e.to_string().contains("Duplicate ID"), "{e}");
        assert!(
            hp.del_node("drive-0").is_err(),
            "attached nodes are not blockdev-del'd"
        );
        hp.del_node("drive-1").unwrap();
        assert!(matches!(
            hp.del_node("drive-1"),
            Err(HotplugError::NotFound(_))
        ));
        assert_eq!(hp.detach("drive-0"), Ok(true));
        assert!(!hp.slots.slots[1].is_attached());
        assert_eq!(hp.detach("drive-0"), Ok(false));
        let e = hp.attach("drive-0", None, 1).unwrap_err();
        assert!(e.to_string().contains("device_del closed its image"), "{e}");
        // The seeds' flow: the image is free again, the same node can be added again.
        hp.add_node("drive-0", &img, true, false).unwrap();
        hp.attach("drive-0", None, 1).unwrap();
        // QEMU's flow: device_del, then blockdev-del of the same node succeeds, once.
        assert_eq!(hp.detach("drive-0"), Ok(true));
        hp.del_node("drive-0").unwrap();
        assert!(matches!(
            hp.del_node("drive-0"),
            Err(HotplugError::NotFound(_))
        ));
        hp.add_node("drive-0", &img, false, false).unwrap();
        for p in [img, img2] {
            std::fs::remove_file(p).unwrap();
        }
    }

    #[test]
    fn missing_image_is_named() {
        let hp = hotplug(&["rootfs"]);
        let e = hp
            .add_node("d", Path::new("/nonexistent/img"), false, false)
            .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/img"));
        assert!(
            hp.add_node("rootfs", Path::new("/x"), false, false)
                .is_err(),
            "boot ids taken"
        );
    }
}
