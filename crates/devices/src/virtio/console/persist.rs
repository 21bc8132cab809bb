//! The console's snapshot state: the output buffered for the client (part of what the guest
//! wrote, so it is kept), the negotiated features and, while the driver runs, both queues'
//! positions. It can be taken at any time, the VM paused, without stopping the device: the
//! console thread holds the same lock while it moves bytes.
//!
//! A transmit chain half copied out when the snapshot is taken is saved as not yet taken
//! (`next_avail` one back) together with how many of its bytes are already in the buffer
//! (`tx_skip`): after a restore the device takes it again and skips those.

use super::buffer::OutputBuffer;
use super::{Console, ConsoleSocket, BUFFER_SIZE};
use crate::bus::lock;
use crate::virtio::queue_state::QueueSnapshot;
use crate::virtio::{ActivateError, Interrupt, VirtioDevice};
use crate::Persist;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleState {
    pub acked_features: u64,
    /// receiveq and transmitq, while the driver runs.
    pub queues: Option<Vec<QueueSnapshot>>,
    /// Buffered output, oldest first (at most [`BUFFER_SIZE`] bytes).
    pub output: Vec<u8>,
    /// Bytes of the next transmit chain already in `output`.
    pub tx_skip: u64,
}

/// What the guest's side needs to run again: the transport's memory, interrupt and queue
/// notifications (the same a driver's DRIVER_OK gives `activate`).
pub struct Activation {
    pub mem: GuestMemoryMmap,
    pub interrupt: Arc<Interrupt>,
    pub queue_evts: Vec<EventFd>,
}

pub struct ConsoleArgs {
    /// A new socket: clients are not part of a snapshot.
    pub socket: ConsoleSocket,
    /// Present when the saved device was running.
    pub activation: Option<Activation>,
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("console: {0} bytes of buffered output, more than the {BUFFER_SIZE}-byte buffer")]
    Output(usize),
    #[error("console: queue {index}: {source}")]
    Queue {
        index: usize,
        source: virtio_queue::Error,
    },
    #[error("console: the saved device was running but no activation was given")]
    NoActivation,
    #[error("console: {0}")]
    Activate(#[from] ActivateError),
    #[error("console: {0}")]
    Io(#[from] std::io::Error),
}

impl Persist for Console {
    type State = ConsoleState;
    type ConstructorArgs = ConsoleArgs;
    type Error = RestoreError;

    fn save(&self) -> ConsoleState {
        let st = lock(&self.shared.state);
        let mut tx_skip = st.tx_skip;
        let queues = st.active.as_ref().map(|a| {
            let mut tx = a.tx.state();
            if let Some(c) = &a.cursor {
                tx.next_avail = tx.next_avail.wrapping_sub(1);
                tx_skip = c.consumed();
            }
            vec![QueueSnapshot::from(a.rx.state()), QueueSnapshot::from(tx)]
        });
        ConsoleState {
            acked_features: self.acked_features,
            queues,
            output: st.output.to_vec(),
            tx_skip,
        }
    }

    fn restore(args: ConsoleArgs, state: &ConsoleState) -> Result<Self, RestoreError> {
        if state.output.len() > BUFFER_SIZE {
            return Err(RestoreError::Output(state.output.len()));
        }
        let queues = match (&state.queues, args.activation) {
            (None, _) => None,
            (Some(_), None) => return Err(RestoreError::NoActivation),
            (Some(qs), Some(act)) => {
                let queues = qs
                    .iter()
                    .enumerate()
                    .map(|(index, q)| {
                        Queue::try_from(q).map_err(|source| RestoreError::Queue { index, source })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Some((queues, act))
            }
        };
        let mut output = OutputBuffer::new(BUFFER_SIZE);
        output.push_overwriting(&state.output);
        let mut console = Console::with_state(args.socket, output, state.tx_skip)?;
        console.acked_features = state.acked_features;
        if let Some((queues, act)) = queues {
            console.activate(act.mem, act.interrupt, queues, act.queue_evts)?;
        }
        Ok(console)
    }
}
