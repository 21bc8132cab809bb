//! The vhost-vsock backend: the host kernel (`/dev/vhost-vsock`, module vhost_vsock) moves the
//! packets of the rx and tx queues; this process keeps the event queue. The rings go to the
//! kernel through the shared vhost plumbing ([`crate::virtio::vhost`]); what is vsock's own is
//! the guest CID, claimed when the device is created (so a CID another VM holds is refused
//! before the VM starts), and starting and stopping the kernel's worker.

use crate::virtio::vhost::{VhostDevice, VhostError};
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use vhost::vhost_kern::vhost_binding::{VHOST_VSOCK_SET_GUEST_CID, VHOST_VSOCK_SET_RUNNING};
use vmm_sys_util::ioctl::ioctl_with_ref;

/// The vhost-vsock device node.
pub const VHOST_VSOCK_PATH: &str = "/dev/vhost-vsock";

/// Why vhost-vsock could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum VhostVsockError {
    #[error(
        "vhost-vsock: {VHOST_VSOCK_PATH} is missing (load the vhost_vsock module, or use the userspace backend: uds-path=<socket> on the -device, \"uds_path\" in JSON)"
    )]
    Missing,
    #[error("vhost-vsock: {0}")]
    Vhost(#[from] VhostError),
    #[error("vhost-vsock: guest-cid {0} is already used by another VM on this host")]
    CidInUse(u64),
    #[error("vhost-vsock: VHOST_VSOCK_SET_GUEST_CID {0}: {1}")]
    SetCid(u64, io::Error),
}

/// Where the vhost-vsock device comes from.
#[derive(Debug)]
pub enum VhostVsockSource {
    /// Open `/dev/vhost-vsock`.
    Open,
    /// An open `/dev/vhost-vsock` the process was given (`vhostfd=`).
    Fd(OwnedFd),
}

/// An open vhost-vsock device holding the guest's CID.
#[derive(Debug)]
pub struct VhostVsock {
    pub(super) dev: VhostDevice,
}

impl VhostVsock {
    /// Opens the device and claims `cid` for this VM.
    pub fn open(src: VhostVsockSource, cid: u64) -> Result<Self, VhostVsockError> {
        let dev = match src {
            VhostVsockSource::Open => {
                VhostDevice::open(Path::new(VHOST_VSOCK_PATH)).map_err(|e| match e {
                    VhostError::Open { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                        VhostVsockError::Missing
                    }
                    other => VhostVsockError::Vhost(other),
                })?
            }
            VhostVsockSource::Fd(fd) => VhostDevice::from_fd(fd)?,
        };
        // SAFETY: VHOST_VSOCK_SET_GUEST_CID reads the u64 we pass.
        let r = unsafe { ioctl_with_ref(&dev, VHOST_VSOCK_SET_GUEST_CID(), &cid) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return Err(if e.raw_os_error() == Some(libc::EADDRINUSE) {
                VhostVsockError::CidInUse(cid)
            } else {
                VhostVsockError::SetCid(cid, e)
            });
        }
        Ok(VhostVsock { dev })
    }

    /// What the kernel backend can do.
    pub fn features(&self) -> Result<u64, VhostError> {
        self.dev.features()
    }

    /// VHOST_VSOCK_SET_RUNNING: the kernel serves the rings (after `start`) or stops.
    pub(super) fn set_running(&self, on: bool) -> io::Result<()> {
        let v: libc::c_int = on.into();
        // SAFETY: VHOST_VSOCK_SET_RUNNING reads the int we pass.
        let r = unsafe { ioctl_with_ref(&self.dev, VHOST_VSOCK_SET_RUNNING(), &v) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

/// Whether this host has vhost-vsock (for an early, clear refusal).
pub fn vhost_vsock_available() -> Result<(), VhostVsockError> {
    match std::fs::metadata(VHOST_VSOCK_PATH) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(VhostVsockError::Missing),
        Err(e) => Err(VhostVsockError::Vhost(VhostError::Open {
            path: VHOST_VSOCK_PATH.into(),
            source: e,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_descriptor_that_is_not_vhost_is_refused() {
        let f = std::fs::File::open("/dev/null").unwrap();
        let e = VhostVsock::open(VhostVsockSource::Fd(OwnedFd::from(f)), 3).unwrap_err();
        assert!(e.to_string().contains("is not a vhost device"), "{e}");
    }

    #[test]
    fn the_missing_module_is_named_with_the_alternative() {
        if Path::new(VHOST_VSOCK_PATH).exists() {
            return;
        }
        let e = VhostVsock::open(VhostVsockSource::Open, 3).unwrap_err();
        assert!(e.to_string().contains("load the vhost_vsock module"), "{e}");
        assert!(e.to_string().contains("uds-path=<socket>"), "{e}");
        assert!(vhost_vsock_available().is_err());
    }
}
