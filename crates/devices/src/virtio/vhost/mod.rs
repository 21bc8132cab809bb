//! In-kernel vhost data paths (`/dev/vhost-net`, `/dev/vhost-vsock`), one piece for every vhost
//! device, on the rust-vmm `vhost` crate's kernel backend (`vhost::vhost_kern`).
//!
//! A [`VhostDevice`] is one open vhost file. A device model opens it (or takes a descriptor it
//! was given) when its backend is created, on a thread that may open files; everything after
//! is ioctls, done by the device's own thread:
//!
//! ```text
//! let mut dev = VhostDevice::open(Path::new("/dev/vhost-net"))?;   // or VhostDevice::from_fd
//! let offered = dev.features()?;                                    // VHOST_GET_FEATURES
//! dev.start(&mem, acked & offered, &[Vring { index: 0, queue: &rx, kick, call, err }, ...])?;
//! //   SET_OWNER, SET_FEATURES, SET_MEM_TABLE, then per vring SET_VRING_NUM / _BASE / _ADDR /
//! //   _KICK / _CALL / _ERR; the device-specific ioctl (VHOST_NET_SET_BACKEND,
//! //   VHOST_VSOCK_SET_GUEST_CID + SET_RUNNING) follows, on `dev` (it is `AsRawFd`).
//! //   ... the kernel serves the rings ...
//! //   the device-specific stop first (SET_BACKEND -1, SET_RUNNING 0), then:
//! let positions = dev.stop(2)?;   // GET_VRING_BASE per vring (the next avail index), RESET_OWNER
//! ```
//!
//! Kick and call: the kick eventfds are the transport's queue eventfds, which KVM signals as
//! ioeventfds on QueueNotify writes, so a guest notification reaches the kernel worker without
//! leaving KVM. The call eventfd is the device's irqfd ([`super::Interrupt::irqfd`]), so the
//! kernel raises the guest interrupt itself; the device marks its [`super::Interrupt`] with
//! `set_kernel_data_path(true)` meanwhile (virtio-mmio's InterruptStatus must say "used
//! buffer" for Linux to look at the rings). The err eventfds are signalled when the kernel finds
//! a ring it cannot use (a bad descriptor); the device's thread watches them and marks the
//! device DEVICE_NEEDS_RESET.
//!
//! Queue positions move between user space and the kernel without loss: `start` takes each
//! queue's next avail index, `stop` gives it back, and the used index is in guest memory, so a
//! device can hand its rings to the kernel and take them back while the guest runs.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use vhost::vhost_kern::VhostKernBackend;
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Address, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

/// Feature bits that describe the rings and the transport rather than the device: what a
/// vhost backend is told of the driver's choice (the device's own features, such as checksum
/// offloads, are not the kernel worker's business).
pub const RING_FEATURES: u64 = (1 << super::features::RING_INDIRECT_DESC)
    | (1 << super::features::RING_EVENT_IDX)
    | (1 << super::features::VERSION_1);

/// Why a vhost operation failed.
#[derive(Debug, thiserror::Error)]
pub enum VhostError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("descriptor {fd} is not a vhost device: {reason}")]
    NotVhost { fd: RawFd, reason: String },
    #[error("vhost {op}: {source}")]
    Ioctl {
        op: &'static str,
        source: vhost::Error,
    },
    #[error("the guest uses features 0x{missing:x} the vhost backend does not have")]
    Features { missing: u64 },
    #[error("vring {index}: {reason}")]
    Vring { index: usize, reason: String },
}

fn ioctl(op: &'static str) -> impl FnOnce(vhost::Error) -> VhostError {
    move |source| VhostError::Ioctl { op, source }
}

/// One vring handed to the kernel.
pub struct Vring<'a> {
    /// The queue's index in the device.
    pub index: usize,
    /// Its layout and next avail index.
    pub queue: &'a Queue,
    /// Signalled by the guest's notifications (the transport's queue eventfd).
    pub kick: &'a EventFd,
    /// Signalled by the kernel for used buffers (the device's irqfd).
    pub call: &'a EventFd,
    /// Signalled by the kernel when it cannot use the ring.
    pub err: &'a EventFd,
}

/// One open vhost device file, and the guest memory it is bound to while it runs.
pub struct VhostDevice {
    file: File,
    /// Guest memory, for `vhost::vhost_kern` to turn ring addresses into host addresses; empty
    /// until `start`.
    mem: Arc<GuestMemoryMmap>,
    owned: bool,
}

impl std::fmt::Debug for VhostDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VhostDevice")
            .field("fd", &self.file.as_raw_fd())
            .field("running", &self.owned)
            .finish()
    }
}

impl VhostDevice {
    /// Opens a vhost device node (`/dev/vhost-net`, `/dev/vhost-vsock`).
    pub fn open(path: &Path) -> Result<Self, VhostError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(path)
            .map_err(|source| VhostError::Open {
                path: path.display().to_string(),
                source,
            })?;
        Ok(Self::wrap(file))
    }

    /// Takes an open vhost device descriptor (`vhostfd=`), checking that it is one: it must
    /// answer VHOST_GET_FEATURES.
    pub fn from_fd(fd: OwnedFd) -> Result<Self, VhostError> {
        let raw = fd.as_raw_fd();
        // SAFETY: `fd` is an open descriptor we own; the File takes it over.
        let dev = Self::wrap(unsafe { File::from_raw_fd(fd.into_raw_fd()) });
        dev.features().map_err(|e| VhostError::NotVhost {
            fd: raw,
            reason: e.to_string(),
        })?;
        Ok(dev)
    }

    fn wrap(file: File) -> Self {
        VhostDevice {
            file,
            mem: Arc::new(GuestMemoryMmap::default()),
            owned: false,
        }
    }

    /// What the kernel backend can do (VHOST_GET_FEATURES).
    pub fn features(&self) -> Result<u64, VhostError> {
        self.get_features().map_err(ioctl("GET_FEATURES"))
    }

    /// Whether the kernel serves rings for this device now.
    pub fn is_running(&self) -> bool {
        self.owned
    }

    /// Hands the rings to the kernel: owner, `features` (which the backend must have), the
    /// guest memory table, then every vring at its queue's next avail index. On failure the
    /// device is reset again (nothing of the attempt stays).
    pub fn start(
        &mut self,
        mem: &GuestMemoryMmap,
        features: u64,
        vrings: &[Vring<'_>],
    ) -> Result<(), VhostError> {
        let missing = features & !self.features()?;
        if missing != 0 {
            return Err(VhostError::Features { missing });
        }
        self.mem = Arc::new(mem.clone());
        let r = self.try_start(mem, features, vrings);
        if r.is_err() && self.owned {
            if let Err(e) = self.reset_owner() {
                log::error!("vhost: cannot reset after a failed start: {e}");
            }
            self.owned = false;
        }
        r
    }

    fn try_start(
        &mut self,
        mem: &GuestMemoryMmap,
        features: u64,
        vrings: &[Vring<'_>],
    ) -> Result<(), VhostError> {
        self.set_owner().map_err(ioctl("SET_OWNER"))?;
        self.owned = true;
        self.set_features(features).map_err(ioctl("SET_FEATURES"))?;
        let regions: Vec<VhostUserMemoryRegionInfo> = mem
            .iter()
            .map(|r| VhostUserMemoryRegionInfo {
                guest_phys_addr: r.start_addr().raw_value(),
                memory_size: r.len(),
                userspace_addr: r.as_ptr() as u64,
                mmap_offset: 0,
                mmap_handle: -1,
            })
            .collect();
        self.set_mem_table(&regions)
            .map_err(ioctl("SET_MEM_TABLE"))?;
        for v in vrings {
            let q = v.queue;
            let bad = |reason: String| VhostError::Vring {
                index: v.index,
                reason,
            };
            if !q.ready() {
                return Err(bad("not ready".into()));
            }
            self.set_vring_num(v.index, q.size())
                .map_err(ioctl("SET_VRING_NUM"))?;
            self.set_vring_base(v.index, q.next_avail())
                .map_err(ioctl("SET_VRING_BASE"))?;
            let config = VringConfigData {
                queue_max_size: q.max_size(),
                queue_size: q.size(),
                flags: 0,
                desc_table_addr: q.desc_table(),
                used_ring_addr: q.used_ring(),
                avail_ring_addr: q.avail_ring(),
                log_addr: None,
            };
            self.set_vring_addr(v.index, &config)
                .map_err(|e| bad(format!("rings outside guest memory ({e})")))?;
            self.set_vring_kick(v.index, v.kick)
                .map_err(ioctl("SET_VRING_KICK"))?;
            self.set_vring_call(v.index, v.call)
                .map_err(ioctl("SET_VRING_CALL"))?;
            self.set_vring_err(v.index, v.err)
                .map_err(ioctl("SET_VRING_ERR"))?;
        }
        Ok(())
    }

    /// Takes the rings back from the kernel after the device-specific stop: returns each
    /// vring's next avail index (in vring order, `count` of them) and resets the device, which
    /// frees the kernel worker and forgets the memory table. A device that is not running
    /// returns nothing.
    pub fn stop(&mut self, count: usize) -> Result<Vec<u16>, VhostError> {
        if !self.owned {
            return Ok(Vec::new());
        }
        let mut positions = Vec::with_capacity(count);
        let mut first_err = None;
        for index in 0..count {
            match self.get_vring_base(index) {
                // The index is 16 bits wide; the kernel keeps it in the low half.
                Ok(base) => positions.push(base as u16),
                Err(e) => {
                    first_err.get_or_insert(ioctl("GET_VRING_BASE")(e));
                    positions.push(0);
                }
            }
        }
        let reset = self.reset_owner().map_err(ioctl("RESET_OWNER"));
        self.owned = false;
        self.mem = Arc::new(GuestMemoryMmap::default());
        match (first_err, reset) {
            (Some(e), _) | (None, Err(e)) => Err(e),
            (None, Ok(())) => Ok(positions),
        }
    }
}

impl Drop for VhostDevice {
    fn drop(&mut self) {
        // Closing the file stops the kernel worker too; resetting first keeps the order of
        // events the same whoever drops it.
        if self.owned {
            let _ = self.reset_owner();
        }
    }
}

impl AsRawFd for VhostDevice {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl VhostKernBackend for VhostDevice {
    type AS = Arc<GuestMemoryMmap>;

    fn mem(&self) -> &Self::AS {
        &self.mem
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_device_node_is_named() {
        let e = VhostDevice::open(Path::new("/nonexistent/vhost-net")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot open /nonexistent/vhost-net: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn a_descriptor_that_is_not_vhost_is_refused() {
        let f = std::fs::File::open("/dev/null").unwrap();
        let raw = f.as_raw_fd();
        let e = VhostDevice::from_fd(OwnedFd::from(f)).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("descriptor {raw} is not a vhost device: ")),
            "{e}"
        );
    }

    #[test]
    fn a_device_that_never_started_stops_with_nothing() {
        let f = std::fs::File::open("/dev/null").unwrap();
        let mut d = VhostDevice::wrap(f);
        assert!(!d.is_running());
        assert_eq!(d.stop(2).unwrap(), Vec::<u16>::new());
    }

    #[test]
    fn ring_features_are_the_transport_bits() {
        assert_eq!(RING_FEATURES, (1 << 28) | (1 << 29) | (1 << 32));
    }
}
