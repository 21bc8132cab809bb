//! virtio-vsock (virtio 1.x section 5.10): stream sockets between the guest and the host, with
//! two backends.
//!
//! - **vhost-vsock** (the seeds' device): the host kernel (`/dev/vhost-vsock`) moves the
//!   packets; host programs use `AF_VSOCK` sockets and reach the guest at its CID.
//! - **userspace** (`uds-path=`): this process moves them, and the host side is a Unix socket
//!   with Firecracker's convention: a host program connects to it and sends
//!   `CONNECT <port>\n`, gets `OK <host port>\n` once the guest accepts, and the stream is the
//!   connection from then on; a guest connection to host port P goes to the listener at
//!   `<path>_P`. For hosts without the vhost_vsock module.
//!
//! Three queues: rx (host to guest), tx (guest to host), event (the transport reset a restored
//! device sends). Files: `packet.rs` (the header), `conn.rs` (one connection and its credit),
//! `muxer.rs` (the connections and the protocol rules), `backend.rs` (the Unix sockets),
//! `vhost.rs` (the kernel backend), `worker.rs` (the `vsock` thread), `config.rs`
//! (configuration space and features), `persist.rs` (snapshot state).
//!
//! Wiring it into a machine:
//! ```text
//! let backend = Backend::Unix(VsockSocket::bind(path)?);   // 0600; remove it on every exit
//! //   or Backend::Vhost(VhostVsock::open(VhostVsockSource::Open, cid)?)
//! let vsock = Vsock::new(cid, backend)?;                   // starts the `vsock` thread
//! slots.attach(vm, mem, mmio, SlotKind::Fixed, Box::new(vsock), SlotHandle::Fixed, None)?;
//! ```

mod backend;
mod config;
mod conn;
mod muxer;
pub mod packet;
mod persist;
#[cfg(test)]
mod test_utils;
mod vhost;
mod worker;

pub use backend::VsockSocket;
pub use config::{feature, offered_features};
pub use persist::{RestoreError, VsockState};
pub use vhost::{
    vhost_vsock_available, VhostVsock, VhostVsockError, VhostVsockSource, VHOST_VSOCK_PATH,
};
pub use worker::Backend;

use self::worker::{Active, Shared, State, WorkerHandle};
use super::{
    device_type, read_config_bytes, ActivateError, DeviceSnapshot, DeviceState, Interrupt,
    VirtioDevice,
};
use crate::bus::lock;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

/// Maximum (and offered) size of each queue.
pub const QUEUE_SIZE: u16 = 256;
/// Our receive buffer per connection (the `buf_alloc` the guest is told): the most guest
/// bytes one connection can leave in this process while its host program does not read.
pub const CONN_BUF: usize = 256 * 1024;
/// Most connections at once, host handshakes included (so the device holds at most
/// `MAX_CONNECTIONS * CONN_BUF` bytes for the guest).
pub const MAX_CONNECTIONS: usize = 256;
/// Largest payload of one packet (Linux's `VIRTIO_VSOCK_MAX_PKT_BUF_SIZE`).
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// How long a host program has for its `CONNECT` line, and the guest to accept it.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a connection finished on one side waits for the other before it is reset.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// The virtio-vsock device.
pub struct Vsock {
    guest_cid: u64,
    vhost: bool,
    features: u64,
    acked: u64,
    shared: Arc<Shared>,
    worker: Option<WorkerHandle>,
    queue_sizes: [u16; 3],
}

impl Vsock {
    /// A device for the guest at `guest_cid`; starts its thread.
    pub fn new(guest_cid: u64, backend: Backend) -> io::Result<Self> {
        let (vhost, features) = match &backend {
            Backend::Unix(_) => (false, config::offered_features()),
            Backend::Vhost(dev) => (
                true,
                config::vhost_offered_features(dev.features().map_err(io::Error::other)?),
            ),
        };
        let shared = Arc::new(Shared::new(
            "vsock",
            State {
                active: None,
                generation: 0,
                reset_event: false,
                paused: false,
                stop: false,
                connections: 0,
                next_port: muxer::FIRST_LOCAL_PORT,
                restore_port: None,
            },
        )?);
        let worker = WorkerHandle::spawn(shared.clone(), backend, guest_cid)?;
        Ok(Self {
            guest_cid,
            vhost,
            features,
            acked: 0,
            shared,
            worker: Some(worker),
            queue_sizes: [QUEUE_SIZE; 3],
        })
    }

    pub fn guest_cid(&self) -> u64 {
        self.guest_cid
    }

    /// Whether the host kernel moves the packets.
    pub fn is_vhost(&self) -> bool {
        self.vhost
    }

    /// Connections open now (userspace backend).
    pub fn connections(&self) -> usize {
        lock(&self.shared.state).connections
    }

    /// After a restore: the guest is told that the transport was reset (its connections are
    /// gone, and it reads its CID again) once its driver runs.
    pub fn restore_state(&self, state: &VsockState) -> Result<(), RestoreError> {
        persist::check(self, state)?;
        let mut st = lock(&self.shared.state);
        st.reset_event = true;
        st.restore_port = Some(state.next_port);
        drop(st);
        self.shared.wake();
        Ok(())
    }

    fn stop_queues(&mut self) {
        {
            let mut st = lock(&self.shared.state);
            st.active = None;
            st.paused = false;
        }
        self.shared.wake();
    }
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        device_type::VSOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn avail_features(&self) -> u64 {
        self.features
    }

    fn ack_features(&mut self, features: u64) {
        self.acked = features;
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&config::config_space(self.guest_cid), offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        log::debug!(
            "virtio-vsock: ignoring {}-byte config write at {offset} (the CID is read-only)",
            data.len()
        );
    }

    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        interrupt: Arc<Interrupt>,
        queues: Vec<Queue>,
        queue_evts: Vec<EventFd>,
    ) -> Result<(), ActivateError> {
        let (queues, evts) = super::take_queues::<3>(queues, queue_evts)?;
        {
            let mut st = lock(&self.shared.state);
            st.generation += 1;
            let generation = st.generation;
            st.active = Some(Active {
                mem: Arc::new(mem),
                interrupt,
                queues,
                evts,
                generation,
                acked: self.acked,
                broken: false,
                rejects: Default::default(),
            });
        }
        self.shared.wake();
        Ok(())
    }

    fn reset(&mut self) {
        self.stop_queues();
    }

    fn can_save(&self) -> Result<(), String> {
        if self.vhost {
            return Err(
                "a VM with vhost-vsock cannot be snapshotted (the host kernel holds its rings); use the userspace backend (uds-path=)".into(),
            );
        }
        Ok(())
    }

    fn save(&mut self) -> Result<DeviceSnapshot, String> {
        self.can_save()?;
        // The thread only touches the queues under this lock: from here on it leaves them
        // alone until `resume_after_save`. Every packet it took is complete.
        let mut st = lock(&self.shared.state);
        st.paused = true;
        let (state, queues) = persist::save_state(self, &st);
        Ok(DeviceSnapshot {
            device: DeviceState::Vsock(state),
            queues,
        })
    }

    fn resume_after_save(&mut self) {
        lock(&self.shared.state).paused = false;
        self.shared.wake();
    }
}

impl Drop for Vsock {
    fn drop(&mut self) {
        self.stop_queues();
        if let Some(mut w) = self.worker.take() {
            w.stop();
        }
    }
}

#[cfg(test)]
mod tests;
