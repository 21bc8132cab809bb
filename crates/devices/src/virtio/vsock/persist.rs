//! The device's snapshot state: its CID and backend. Connections are not part of a snapshot
//! (their host ends belong to the saved process): a restored device tells the guest that the
//! transport was reset (VIRTIO_VSOCK_EVENT_TRANSPORT_RESET on the event queue, as Firecracker
//! and upstream StratoVirt do), so guest sockets see their connections reset and new ones
//! work. The transport saves the registers and, through
//! [`VirtioDevice::save`](crate::virtio::VirtioDevice::save), the queues' positions.

use super::worker::{State, EVT, RX, TX};
use super::{Backend, Vsock};
use crate::bus::lock;
use crate::virtio::QueuePosition;
use crate::Persist;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VsockState {
    pub guest_cid: u64,
    /// The userspace backend (false: vhost-vsock).
    pub userspace: bool,
    /// The host port the next host-initiated connection gets: a restored device goes on from
    /// there, so a new connection never has the ports of one the guest may still hold.
    pub next_port: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("vsock: the snapshot's guest has CID {snapshot}, the configuration {configured}")]
    Cid { snapshot: u64, configured: u64 },
    #[error("vsock: the snapshot used the {snapshot} backend, the configuration {configured}")]
    Backend {
        snapshot: &'static str,
        configured: &'static str,
    },
    #[error("vsock: {0}")]
    Io(#[from] std::io::Error),
}

fn backend_name(userspace: bool) -> &'static str {
    if userspace {
        "userspace (uds-path)"
    } else {
        "vhost-vsock"
    }
}

/// The state of `dev`, and the queues' positions if the driver runs.
pub(super) fn save_state(dev: &Vsock, st: &State) -> (VsockState, Vec<QueuePosition>) {
    let positions = match &st.active {
        Some(a) => [RX, TX, EVT]
            .iter()
            .map(|&i| QueuePosition::of(&a.queues[i]))
            .collect(),
        None => Vec::new(),
    };
    // `st` is the locked state: built here, not through `Persist::save`, which locks it.
    let state = VsockState {
        guest_cid: dev.guest_cid,
        userspace: !dev.vhost,
        next_port: st.next_port,
    };
    (state, positions)
}

/// Whether a saved state fits the device configured now.
pub(super) fn check(dev: &Vsock, state: &VsockState) -> Result<(), RestoreError> {
    if state.guest_cid != dev.guest_cid {
        return Err(RestoreError::Cid {
            snapshot: state.guest_cid,
            configured: dev.guest_cid,
        });
    }
    if state.userspace == dev.vhost {
        return Err(RestoreError::Backend {
            snapshot: backend_name(state.userspace),
            configured: backend_name(!dev.vhost),
        });
    }
    Ok(())
}

impl Persist for Vsock {
    type State = VsockState;
    /// The (cid, backend) configured now: a restored VM has its own socket.
    type ConstructorArgs = (u64, Backend);
    type Error = RestoreError;

    fn save(&self) -> VsockState {
        VsockState {
            guest_cid: self.guest_cid,
            userspace: !self.vhost,
            next_port: lock(&self.shared.state).next_port,
        }
    }

    fn restore((cid, backend): (u64, Backend), state: &VsockState) -> Result<Self, RestoreError> {
        let dev = Vsock::new(cid, backend)?;
        dev.restore_state(state)?;
        Ok(dev)
    }
}
