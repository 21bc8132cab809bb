//! The console's snapshot state: the output buffered for the client (part of what the guest
//! wrote, so it is kept). The transport saves the registers and, through
//! [`VirtioDevice::save`](crate::virtio::VirtioDevice::save), the queues' positions; clients are
//! not part of a snapshot (a restored VM listens on a socket of its own).
//!
//! A save parks the console thread's queue work (it goes on serving the socket, which touches
//! no guest memory) until `resume_after_save`, so guest memory stays as the positions say. A
//! transmit chain half copied out when the snapshot is taken is saved as not yet taken (the
//! transmitq's `next_avail` one back) together with how many of its bytes are already in the
//! buffer (`tx_skip`): after a restore the device takes it again and skips those.

use super::buffer::OutputBuffer;
use super::worker::State;
use super::{Console, ConsoleSocket, BUFFER_SIZE};
use crate::bus::lock;
use crate::virtio::QueuePosition;
use crate::Persist;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleState {
    /// Buffered output, oldest first (at most [`BUFFER_SIZE`] bytes).
    pub output: Vec<u8>,
    /// Bytes of the next transmit chain already in `output` (or sent).
    pub tx_skip: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("console: {0} bytes of buffered output, more than the {BUFFER_SIZE}-byte buffer")]
    Output(usize),
    #[error("console: {0}")]
    Io(#[from] std::io::Error),
}

/// The state of `st`, and the queues' positions if the driver runs.
pub(super) fn save_state(st: &State) -> (ConsoleState, Vec<QueuePosition>) {
    let mut tx_skip = st.tx_skip;
    let positions = match &st.active {
        Some(a) => {
            let mut tx = QueuePosition::of(&a.tx);
            if let Some(c) = &a.cursor {
                tx.next_avail = tx.next_avail.wrapping_sub(1);
                tx_skip = c.consumed();
            }
            vec![QueuePosition::of(&a.rx), tx]
        }
        None => Vec::new(),
    };
    let state = ConsoleState {
        output: st.output.to_vec(),
        tx_skip,
    };
    (state, positions)
}

/// Puts a saved state into `st` (before the driver's queues come back).
pub(super) fn restore_state(st: &mut State, state: &ConsoleState) -> Result<(), RestoreError> {
    if state.output.len() > BUFFER_SIZE {
        return Err(RestoreError::Output(state.output.len()));
    }
    let mut output = OutputBuffer::new(BUFFER_SIZE);
    output.push_overwriting(&state.output);
    st.output = output;
    st.tx_skip = state.tx_skip;
    Ok(())
}

impl Persist for Console {
    type State = ConsoleState;
    /// A new socket: clients are not part of a snapshot.
    type ConstructorArgs = ConsoleSocket;
    type Error = RestoreError;

    fn save(&self) -> ConsoleState {
        save_state(&lock(&self.shared.state)).0
    }

    fn restore(socket: ConsoleSocket, state: &ConsoleState) -> Result<Self, RestoreError> {
        let console = Console::new(socket)?;
        console.restore_state(state)?;
        Ok(console)
    }
}
