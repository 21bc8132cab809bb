//! virtio-console (virtio 1.x section 5.3) on a Unix socket: port 0 only, the guest's `hvc0`.
//!
//! The guest's output (transmitq, queue 1) goes to the client connected to the socket and the
//! client's input to the guest (receiveq, queue 0), so a shell on `hvc0` can be used from the
//! host. One client at a time: a new one replaces the current one (see `backend.rs`). Between
//! the two sits an output buffer of [`BUFFER_SIZE`] bytes (`buffer.rs`): while a client is
//! connected a slow one makes the guest wait, and nothing is lost; while nobody is, the guest
//! never waits and the buffer keeps the last output for the next client. Input is read from
//! the client only into buffers the guest gave, so the client waits for a slow guest.
//!
//! Files: `backend.rs` (the socket and its clients), `chains.rs` (checking the guest's buffers
//! and copying through them), `buffer.rs` (the output buffer), `worker.rs` (the `console`
//! thread), `config.rs` (configuration space and features), `persist.rs` (snapshot state).
//!
//! Wiring it into a machine:
//! ```text
//! let socket = ConsoleSocket::bind(path)?;       // 0600; the path must not exist
//! let file = socket.file();                      // remove it on every exit path
//! let console = Console::new(socket)?;           // starts the `console` thread
//! slots.attach(vm, mem, mmio, SlotKind::Fixed, Box::new(console), SlotHandle::Fixed)?;
//! ```

mod backend;
mod buffer;
pub(crate) mod chains;
mod config;
mod persist;
#[cfg(test)]
pub(crate) mod test_utils;
mod worker;

pub use backend::{ConsoleSocket, GRACE};
pub use config::{feature, offered_features};
pub use persist::{ConsoleState, RestoreError};

use self::buffer::OutputBuffer;
use self::worker::{Active, Shared, State, WorkerHandle};
use super::{
    device_type, read_config_bytes, take_queues, ActivateError, DeviceSnapshot, DeviceState,
    Interrupt, VirtioDevice,
};
use crate::bus::lock;
use std::io;
use std::sync::Arc;
use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

/// Maximum (and offered) size of each queue.
pub const QUEUE_SIZE: u16 = 256;
/// Size of the output buffer: what a slow client can leave unread in the VMM, and how much of
/// the last output waits for a client while none is connected.
pub const BUFFER_SIZE: usize = 64 * 1024;

/// The virtio-console device.
pub struct Console {
    shared: Arc<Shared>,
    worker: Option<WorkerHandle>,
    queue_sizes: [u16; 2],
}

impl Console {
    /// A console serving `socket`; starts its thread.
    pub fn new(socket: ConsoleSocket) -> io::Result<Self> {
        let shared = Arc::new(Shared::new(
            "console",
            State {
                active: None,
                output: OutputBuffer::new(BUFFER_SIZE),
                tx_skip: 0,
                paused: false,
                stop: false,
            },
        )?);
        let worker = WorkerHandle::spawn(shared.clone(), socket)?;
        Ok(Self {
            shared,
            worker: Some(worker),
            queue_sizes: [QUEUE_SIZE; 2],
        })
    }

    /// Puts back what a snapshot saved (the buffered output), before the transport starts the
    /// device again at the saved queue positions.
    pub fn restore_state(&self, state: &ConsoleState) -> Result<(), RestoreError> {
        persist::restore_state(&mut lock(&self.shared.state), state)
    }

    /// Bytes of output waiting in the buffer (for a slow client or the next one).
    pub fn buffered(&self) -> usize {
        lock(&self.shared.state).output.len()
    }

    fn stop_queues(&mut self) {
        {
            let mut st = lock(&self.shared.state);
            st.active = None;
            st.tx_skip = 0;
            st.paused = false;
        }
        self.shared.wake();
    }
}

impl VirtioDevice for Console {
    fn device_type(&self) -> u32 {
        device_type::CONSOLE
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn avail_features(&self) -> u64 {
        config::offered_features()
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&config::config_space(), offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        // emerg_wr is only writable with VIRTIO_CONSOLE_F_EMERG_WRITE, which is not offered.
        log::debug!(
            "virtio-console: ignoring {}-byte config write at {offset}",
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
        let ([rx, tx], [rx_evt, tx_evt]) = take_queues(queues, queue_evts)?;
        lock(&self.shared.state).active = Some(Active {
            mem: Arc::new(mem),
            interrupt,
            rx,
            tx,
            rx_evt,
            tx_evt,
            cursor: None,
            broken: false,
            rejects: Default::default(),
        });
        self.shared.wake();
        Ok(())
    }

    fn reset(&mut self) {
        self.stop_queues();
    }

    fn can_save(&self) -> Result<(), String> {
        Ok(())
    }

    fn save(&mut self) -> Result<DeviceSnapshot, String> {
        // The thread only touches the queues under this lock: from here on it leaves them alone
        // until `resume_after_save`.
        let mut st = lock(&self.shared.state);
        st.paused = true;
        let (state, queues) = persist::save_state(&st);
        Ok(DeviceSnapshot {
            device: DeviceState::Console(state),
            queues,
        })
    }

    fn resume_after_save(&mut self) {
        lock(&self.shared.state).paused = false;
        self.shared.wake();
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.stop_queues();
        if let Some(mut w) = self.worker.take() {
            w.stop();
        }
    }
}

#[cfg(test)]
mod tests;
