//! Hot-plug as StratoVirt documents it, one mechanism for disks and NICs: a backend is opened
//! first (`blockdev-add` names an image, `netdev_add` a TAP), then `device_add` with the same
//! id puts it into a slot of its kind (`addr` 0x0 is vda or eth0, 0x1 vdb or eth1, ...; for
//! disks `lun` N is slot N+1); `device_del` takes it out. Ids are unique across the VM. Every
//! misuse is refused before anything changes.

use crate::slots::{Slot, SlotKind, SlotTable, DISK_SLOTS, NIC_SLOTS};
use devices::virtio::block::{BlockBackend, BlockHandle};
use devices::virtio::net::{
    identity_of as tap_identity, NetHandle, NicBackend, Tap, TapSource, VhostSource, VHOST_REQUIRED,
};
use std::collections::{HashMap, HashSet};
use std::path::Path;
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

/// A device's handle in its slot: hot-plug and flushing work through it while the guest runs.
#[derive(Clone)]
pub enum SlotHandle {
    Disk(BlockHandle),
    Nic(NetHandle),
    /// A device that is not hot-pluggable (console, vsock, balloon).
    Fixed,
}

/// A backend opened by `blockdev-add` or `netdev_add`, waiting for its `device_add`.
pub enum Backend {
    Disk(BlockBackend),
    Nic(NicBackend),
}

impl Backend {
    fn kind(&self) -> SlotKind {
        match self {
            Backend::Disk(_) => SlotKind::Disk,
            Backend::Nic(_) => SlotKind::Nic,
        }
    }
}

/// What `device_add` says about a device besides its id and slot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceProps {
    /// A NIC's MAC address.
    pub mac: Option<[u8; 6]>,
}

/// The ids of a device present from boot: its own and its backend's (a disk's node, a NIC's
/// netdev), which QMP's `device_del` and `blockdev-del` / `netdev_del` name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootDevice {
    pub device: String,
    pub backend: String,
}

impl BootDevice {
    /// A device whose backend has the same id (every disk, most NICs).
    pub fn same(id: &str) -> Self {
        BootDevice {
            device: id.to_string(),
            backend: id.to_string(),
        }
    }
}

impl SlotHandle {
    pub fn is_attached(&self) -> bool {
        match self {
            SlotHandle::Disk(h) => h.is_attached(),
            SlotHandle::Nic(h) => h.is_attached(),
            SlotHandle::Fixed => true,
        }
    }

    /// What the attached backend is, to refuse the same one twice: a disk's image path, a
    /// NIC's TAP.
    fn identity(&self) -> Option<String> {
        match self {
            SlotHandle::Disk(h) => h.path().map(|p| identity_of(&p)),
            SlotHandle::Nic(h) => h.tap_name().map(|n| tap_identity(&n)),
            SlotHandle::Fixed => None,
        }
    }

    /// Plugs `backend` in; on failure, says why and gives the backend back if it is whole.
    fn attach(
        &self,
        backend: Backend,
        id: &str,
        props: &DeviceProps,
    ) -> Result<(), (String, Option<Backend>)> {
        match (self, backend) {
            (SlotHandle::Disk(h), Backend::Disk(b)) => {
                h.attach(b, id).map_err(|e| (e.to_string(), None))
            }
            (SlotHandle::Nic(h), Backend::Nic(b)) => h
                .attach(b, props.mac)
                .map_err(|(e, back)| (e.to_string(), back.map(Backend::Nic))),
            (SlotHandle::Fixed, b) => Err(("this slot is not hot-pluggable".into(), Some(b))),
            (_, b) => Err(("this backend does not fit this slot".into(), Some(b))),
        }
    }

    fn detach(&self) -> Result<(), String> {
        match self {
            SlotHandle::Disk(h) => h.detach().map_err(|e| e.to_string()),
            // Dropping the backend closes the TAP (and the vhost device).
            SlotHandle::Nic(h) => h.detach().map(drop).map_err(|e| e.to_string()),
            SlotHandle::Fixed => Err("this device cannot be removed".into()),
        }
    }

    /// Makes what the guest wrote durable (disks); nothing to do for other devices.
    pub fn flush(&self) -> Result<(), String> {
        match self {
            SlotHandle::Disk(h) => h.flush().map_err(|e| e.to_string()),
            SlotHandle::Nic(_) | SlotHandle::Fixed => Ok(()),
        }
    }
}

/// The words QMP errors use for each kind.
struct Words {
    noun: &'static str,
    plural: &'static str,
    limit: usize,
    /// The command that opens a backend, and what it calls the id.
    add_cmd: &'static str,
    key: &'static str,
}

fn words(kind: SlotKind) -> Words {
    match kind {
        SlotKind::Disk => Words {
            noun: "disk",
            plural: "disks",
            limit: DISK_SLOTS,
            add_cmd: "blockdev-add",
            key: "node-name",
        },
        SlotKind::Nic | SlotKind::Fixed => Words {
            noun: "NIC",
            plural: "NICs",
            limit: NIC_SLOTS,
            add_cmd: "netdev_add",
            key: "id",
        },
    }
}

/// The guest's name for slot `kind_index` of `kind`: vda, vdb, ... or eth0, eth1.
fn guest_name(kind: SlotKind, kind_index: usize) -> String {
    match kind {
        SlotKind::Disk => format!("vd{}", (b'a' + kind_index as u8) as char),
        _ => format!("eth{kind_index}"),
    }
}

/// Canonical form of an image path, to tell whether two names are the same file.
fn identity_of(p: &Path) -> String {
    std::fs::canonicalize(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}

/// A backend waiting for `device_add`.
struct Pending {
    backend: Backend,
    identity: String,
}

#[derive(Default)]
struct State {
    pending: HashMap<String, Pending>,
    /// The device id in each slot, by transport index.
    ids: Vec<Option<String>>,
    /// The id of the backend in each slot (equal to the device's, but for a NIC given both at
    /// boot).
    backend_ids: Vec<Option<String>>,
    /// Backends whose device `device_del` removed: the QEMU-style clean-up (`blockdev-del`,
    /// `netdev_del`) of one succeeds (and forgets it), while the seeds' flow (`device_del`
    /// alone, then the same backend added again) works too. The backend is closed either way.
    released: HashSet<String>,
}

impl State {
    fn id_in_use(&self, id: &str) -> bool {
        self.pending.contains_key(id)
            || self.ids.iter().flatten().any(|i| i == id)
            || self.backend_ids.iter().flatten().any(|i| i == id)
    }
}

/// Hot-plug bookkeeping over a VM's slot table.
pub struct Hotplug {
    table: SlotTable,
    state: Mutex<State>,
}

impl Hotplug {
    /// `boot[i]` is the device in transport `i` from boot (None for an empty slot).
    pub fn new(table: SlotTable, boot: &[Option<BootDevice>]) -> Self {
        let mut ids = vec![None; table.slots().len()];
        let mut backend_ids = vec![None; table.slots().len()];
        for (i, b) in boot.iter().enumerate().take(ids.len()) {
            ids[i] = b.as_ref().map(|b| b.device.clone());
            // A fixed device's backend (the console's socket) is not QMP's to remove.
            if table.slots()[i].kind != SlotKind::Fixed {
                backend_ids[i] = b.as_ref().map(|b| b.backend.clone());
            }
        }
        Hotplug {
            table,
            state: Mutex::new(State {
                ids,
                backend_ids,
                ..Default::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The id of the device in each slot now, by transport index.
    pub fn slot_ids(&self) -> Vec<Option<String>> {
        self.lock().ids.clone()
    }

    fn identity_in_use(&self, state: &State, identity: &str) -> bool {
        self.table
            .slots()
            .iter()
            .any(|s| s.handle.identity().as_deref() == Some(identity))
            || state.pending.values().any(|n| n.identity == identity)
    }

    /// Opens a backend of `kind` under `id` (`blockdev-add`, `netdev_add`). `identity` names
    /// what it uses (an image's canonical path, a TAP's name), so it cannot be used twice;
    /// `open` runs only when every check has passed.
    pub fn add_backend(
        &self,
        kind: SlotKind,
        id: &str,
        identity: String,
        open: impl FnOnce() -> Result<Backend, String>,
    ) -> Result<(), HotplugError> {
        let w = words(kind);
        if id.is_empty() {
            return Err(HotplugError::Invalid(format!(
                "{} must not be empty",
                w.key
            )));
        }
        let mut st = self.lock();
        if st.id_in_use(id) {
            return Err(HotplugError::Invalid(format!(
                "{} '{id}' is already in use",
                w.key
            )));
        }
        if self.identity_in_use(&st, &identity) {
            return Err(HotplugError::Invalid(match kind {
                SlotKind::Disk => format!(
                    "image {identity} is already in use by this VM (the root file system image cannot be plugged again)"
                ),
                _ => format!("{identity} is already in use by this VM"),
            }));
        }
        let backend = open().map_err(HotplugError::Invalid)?;
        debug_assert_eq!(backend.kind(), kind);
        st.released.remove(id);
        st.pending
            .insert(id.to_string(), Pending { backend, identity });
        Ok(())
    }

    /// `blockdev-add`: opens the image and keeps it under `node_name`.
    pub fn add_node(
        &self,
        node_name: &str,
        filename: &Path,
        read_only: bool,
        direct: bool,
    ) -> Result<(), HotplugError> {
        self.add_backend(SlotKind::Disk, node_name, identity_of(filename), || {
            BlockBackend::open(filename, read_only, direct)
                .map(Backend::Disk)
                .map_err(|e| e.to_string())
        })?;
        log::info!("blockdev-add: node {node_name} = {}", filename.display());
        Ok(())
    }

    /// `netdev_add`: opens the TAP (by name or as a passed descriptor, which is taken over only
    /// on success) and, for `vhost=on`, the vhost device, and keeps them under `id`.
    pub fn add_netdev(
        &self,
        id: &str,
        tap: TapSource,
        vhost: Option<VhostSource>,
    ) -> Result<(), HotplugError> {
        let name = match &tap {
            TapSource::Name(n) => n.clone(),
            TapSource::Fd(fd) => {
                Tap::name_of_fd(*fd).map_err(|e| HotplugError::Invalid(e.to_string()))?
            }
        };
        let with_vhost = vhost.is_some();
        self.add_backend(SlotKind::Nic, id, tap_identity(&name), || {
            NicBackend::open(&tap, vhost, VHOST_REQUIRED)
                .map(Backend::Nic)
                .map_err(|e| e.to_string())
        })?;
        log::info!(
            "netdev_add: {id} = TAP {name}{}",
            if with_vhost { " (vhost-net)" } else { "" }
        );
        Ok(())
    }

    /// Closes a backend of `kind` that was added but never attached (`blockdev-del`,
    /// `netdev_del`).
    pub fn del_backend(&self, kind: SlotKind, id: &str) -> Result<(), HotplugError> {
        let w = words(kind);
        let mut st = self.lock();
        if st.pending.get(id).is_some_and(|p| p.backend.kind() == kind) {
            st.pending.remove(id);
            log::info!("{}: {id} closed", del_cmd(kind));
            return Ok(());
        }
        if st.released.remove(id) {
            log::info!("{}: {id} (already closed by device_del)", del_cmd(kind));
            return Ok(());
        }
        if st.backend_ids.iter().flatten().any(|i| i == id) {
            return Err(HotplugError::Invalid(format!(
                "{} '{id}' is attached to a device; device_del it first",
                if kind == SlotKind::Disk {
                    "node"
                } else {
                    "netdev"
                }
            )));
        }
        Err(HotplugError::NotFound(match kind {
            SlotKind::Disk => format!("Cannot find block device node '{id}'"),
            _ => format!("Cannot find {} '{id}'", w.noun),
        }))
    }

    /// `blockdev-del` for a node that was added but never attached.
    pub fn del_node(&self, node_name: &str) -> Result<(), HotplugError> {
        self.del_backend(SlotKind::Disk, node_name)
    }

    /// `device_add` of a device `id` of `kind` (backed by the backend named `backend`, which
    /// defaults to `id` and must equal it) into slot `kind_index` of its kind.
    pub fn attach(
        &self,
        kind: SlotKind,
        id: &str,
        backend: Option<&str>,
        kind_index: usize,
        props: &DeviceProps,
    ) -> Result<(), HotplugError> {
        let w = words(kind);
        if let Some(b) = backend {
            if b != id {
                return Err(HotplugError::Invalid(format!(
                    "the {} of {} ('{b}') must equal the id of device_add ('{id}')",
                    w.key, w.add_cmd
                )));
            }
        }
        let Some(slot) = self.table.get(kind, kind_index) else {
            return Err(HotplugError::Invalid(format!(
                "addr 0x{kind_index:x} is out of range: a VM has at most {} {} (0x0-0x{:x})",
                w.limit,
                w.plural,
                w.limit - 1
            )));
        };
        let mut st = self.lock();
        if st.ids.iter().flatten().any(|i| i == id) {
            return Err(HotplugError::Invalid(format!(
                "Duplicate ID '{id}' for device"
            )));
        }
        if !st.pending.get(id).is_some_and(|p| p.backend.kind() == kind) {
            let why = match (st.released.contains(id), kind) {
                (false, _) => "",
                (true, SlotKind::Disk) => " (device_del closed its image)",
                (true, _) => " (device_del closed it)",
            };
            let what = if kind == SlotKind::Disk {
                "block node"
            } else {
                "netdev"
            };
            return Err(HotplugError::Invalid(format!(
                "no {what} '{id}'{why}: run {} with {} '{id}' first",
                w.add_cmd, w.key
            )));
        }
        if slot.handle.is_attached() || st.ids[slot.index].is_some() {
            let holder = st.ids[slot.index].clone().unwrap_or_default();
            return Err(HotplugError::Invalid(format!(
                "addr 0x{kind_index:x} ({}) already holds {} '{holder}'",
                guest_name(kind, kind_index),
                w.noun
            )));
        }
        let node = st.pending.remove(id).expect("checked above");
        let identity = node.identity.clone();
        if let Err((e, back)) = slot.handle.attach(node.backend, id, props) {
            // A refusal changes nothing: a backend that came back waits again.
            if let Some(backend) = back {
                st.pending
                    .insert(id.to_string(), Pending { backend, identity });
            }
            return Err(HotplugError::Invalid(e));
        }
        st.ids[slot.index] = Some(id.to_string());
        st.backend_ids[slot.index] = Some(id.to_string());
        log::info!(
            "device_add: {} {id} ({identity}) in slot {kind_index}",
            w.noun
        );
        Ok(())
    }

    /// `device_del`: takes device `id` out of its slot. Returns its kind, or None if no
    /// hot-pluggable device has that id.
    pub fn detach(&self, id: &str) -> Result<Option<SlotKind>, HotplugError> {
        let mut st = self.lock();
        let Some(index) = st.ids.iter().position(|i| i.as_deref() == Some(id)) else {
            return Ok(None);
        };
        let slot: &Slot = &self.table.slots()[index];
        if slot.kind == SlotKind::Fixed {
            return Err(HotplugError::Invalid(format!(
                "device '{id}' cannot be removed while the VM runs"
            )));
        }
        slot.handle.detach().map_err(HotplugError::Invalid)?;
        st.ids[index] = None;
        let backend = st.backend_ids[index]
            .take()
            .unwrap_or_else(|| id.to_string());
        st.released.insert(backend);
        log::info!(
            "device_del: {} {id} removed from slot {}, its backend closed",
            words(slot.kind).noun,
            slot.kind_index
        );
        Ok(Some(slot.kind))
    }
}

fn del_cmd(kind: SlotKind) -> &'static str {
    match kind {
        SlotKind::Disk => "blockdev-del",
        _ => "netdev_del",
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
    use std::path::PathBuf;

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

    /// Six empty disk slots (no VM: the handles are enough), the first `boot.len()` named.
    fn hotplug(boot: &[&str]) -> Hotplug {
        use devices::virtio::block::Block;
        let blocks: Vec<Block> = (0..DISK_SLOTS).map(|i| Block::new(i, None)).collect();
        let table = SlotTable::for_tests(
            blocks
                .iter()
                .map(|b| (SlotKind::Disk, SlotHandle::Disk(b.handle())))
                .collect(),
        );
        std::mem::forget(blocks);
        let ids: Vec<Option<BootDevice>> = boot.iter().map(|s| Some(BootDevice::same(s))).collect();
        Hotplug::new(table, &ids)
    }

    fn attached(hp: &Hotplug, slot: usize) -> bool {
        hp.table.slots()[slot].handle.is_attached()
    }

    #[test]
    fn add_attach_detach_cycle_and_misuse() {
        let hp = hotplug(&[]);
        let img = image("a");
        let img2 = image("b");
        assert!(hp
            .attach(SlotKind::Disk, "drive-0", None, 1, &DeviceProps::default())
            .unwrap_err()
            .to_string()
            .contains("blockdev-add"));
        hp.add_node("drive-0", &img, false, false).unwrap();
        let e = hp.add_node("drive-0", &img2, false, false).unwrap_err();
        assert!(e.to_string().contains("already in use"), "{e}");
        let e = hp.add_node("other", &img, false, false).unwrap_err();
        assert!(e.to_string().contains("already in use by this VM"), "{e}");
        assert!(
            hp.attach(
                SlotKind::Disk,
                "drive-0",
                Some("x"),
                1,
                &DeviceProps::default()
            )
            .is_err(),
            "node-name must equal id"
        );
        assert!(hp
            .attach(SlotKind::Disk, "drive-0", None, 6, &DeviceProps::default())
            .unwrap_err()
            .to_string()
            .contains("at most 6"));
        hp.attach(SlotKind::Disk, "drive-0", None, 1, &DeviceProps::default())
            .unwrap();
        assert!(attached(&hp, 1));
        hp.add_node("drive-1", &img2, false, false).unwrap();
        let e = hp
            .attach(SlotKind::Disk, "drive-1", None, 1, &DeviceProps::default())
            .unwrap_err();
        assert!(
            e.to_string().contains("already holds disk 'drive-0'"),
            "{e}"
        );
        let e = hp
            .attach(SlotKind::Disk, "drive-0", None, 2, &DeviceProps::default())
            .unwrap_err();
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
        assert_eq!(hp.detach("drive-0"), Ok(Some(SlotKind::Disk)));
        assert!(!attached(&hp, 1));
        assert_eq!(hp.detach("drive-0"), Ok(None));
        let e = hp
            .attach(SlotKind::Disk, "drive-0", None, 1, &DeviceProps::default())
            .unwrap_err();
        assert!(e.to_string().contains("device_del closed its image"), "{e}");
        // The seeds' flow: the image is free again, the same node can be added again.
        hp.add_node("drive-0", &img, true, false).unwrap();
        hp.attach(SlotKind::Disk, "drive-0", None, 1, &DeviceProps::default())
            .unwrap();
        // QEMU's flow: device_del, then blockdev-del of the same node succeeds, once.
        assert_eq!(hp.detach("drive-0"), Ok(Some(SlotKind::Disk)));
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

    #[test]
    fn a_fixed_device_keeps_its_id_but_has_no_backend_qmp_can_remove() {
        let table = SlotTable::for_tests(vec![(SlotKind::Fixed, SlotHandle::Fixed)]);
        let hp = Hotplug::new(table, &[Some(BootDevice::same("con0"))]);
        assert!(hp
            .detach("con0")
            .unwrap_err()
            .to_string()
            .contains("cannot be removed"));
        let e = hp.del_backend(SlotKind::Nic, "con0").unwrap_err();
        assert!(matches!(e, HotplugError::NotFound(_)), "{e}");
        // The id stays taken: no hot-plugged device can use it.
        assert!(hp.lock().id_in_use("con0"));
    }
}
