//! What a NIC slot holds while it is plugged: its TAP and, for `vhost=on`, the open
//! `/dev/vhost-net` that moves the frames in the host kernel instead of in this process.
//!
//! A backend is opened where files may be opened (at start, or by `netdev_add` on the QMP
//! thread) and then only used with ioctls and reads and writes by the device's thread.

use super::tap::{Tap, TapError};
use crate::virtio::vhost::{VhostDevice, VhostError};
use std::os::fd::{OwnedFd, RawFd};
use std::path::Path;

/// The vhost-net device node.
pub const VHOST_NET_PATH: &str = "/dev/vhost-net";

/// Where the TAP comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TapSource {
    /// An existing TAP interface, by name (`ifname=`).
    Name(String),
    /// An attached TAP queue descriptor the process was given (`fd=`, `fds=`, `getfd`).
    Fd(RawFd),
}

/// Where the vhost device comes from when `vhost=on`.
#[derive(Debug)]
pub enum VhostSource {
    /// Open `/dev/vhost-net`.
    Open,
    /// A descriptor of an open `/dev/vhost-net` (`vhostfd=`).
    Fd(OwnedFd),
}

/// Why a NIC backend could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Tap(#[from] TapError),
    #[error(
        "vhost=on: {VHOST_NET_PATH} is missing: {0} (load the vhost_net module, or use vhost=off)"
    )]
    NoVhostNet(std::io::Error),
    #[error("vhost=on: {0}")]
    Vhost(VhostError),
    #[error("vhost=on: {VHOST_NET_PATH} lacks features 0x{0:x} this device needs")]
    VhostFeatures(u64),
}

/// A plugged NIC's host side.
#[derive(Debug)]
pub struct NicBackend {
    pub tap: Tap,
    /// Present with `vhost=on`.
    pub vhost: Option<VhostDevice>,
}

impl NicBackend {
    /// Opens the TAP (and the vhost device) as configured. `required` are the ring features a
    /// vhost backend must support (those every NIC offers).
    pub fn open(
        tap: &TapSource,
        vhost: Option<VhostSource>,
        required: u64,
    ) -> Result<Self, BackendError> {
        let vhost = match vhost {
            None => None,
            Some(src) => Some(open_vhost(src, required)?),
        };
        let tap = match tap {
            TapSource::Name(name) => Tap::open_named(name)?,
            TapSource::Fd(fd) => Tap::from_fd(*fd)?,
        };
        Ok(NicBackend { tap, vhost })
    }

    /// What the backend uses, so that it is not plugged twice: the TAP's interface name.
    pub fn identity(&self) -> String {
        identity_of(self.tap.name())
    }
}

/// The identity of TAP `name` (see [`NicBackend::identity`]).
pub fn identity_of(name: &str) -> String {
    format!("TAP {name}")
}

fn open_vhost(src: VhostSource, required: u64) -> Result<VhostDevice, BackendError> {
    let dev = match src {
        VhostSource::Open => VhostDevice::open(Path::new(VHOST_NET_PATH)).map_err(|e| match e {
            VhostError::Open { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                BackendError::NoVhostNet(source)
            }
            other => BackendError::Vhost(other),
        })?,
        VhostSource::Fd(fd) => VhostDevice::from_fd(fd).map_err(BackendError::Vhost)?,
    };
    let missing = required & !dev.features().map_err(BackendError::Vhost)?;
    if missing != 0 {
        return Err(BackendError::VhostFeatures(missing));
    }
    Ok(dev)
}

/// Whether this host can give a NIC `vhost=on` (for an early, clear refusal).
pub fn vhost_net_available() -> Result<(), BackendError> {
    match std::fs::metadata(VHOST_NET_PATH) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(BackendError::NoVhostNet(e)),
        Err(e) => Err(BackendError::Vhost(VhostError::Open {
            path: VHOST_NET_PATH.into(),
            source: e,
        })),
    }
}
