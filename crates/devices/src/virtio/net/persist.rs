//! Snapshot state of a NIC slot: what the guest sees (MAC, link, negotiated features), what is
//! plugged in (the TAP's name), and where the device's thread left the queues.
//!
//! A snapshot is taken with the VM paused. The TAP itself cannot be saved: restoring takes a TAP
//! opened again by name (the snapshot names it) and must get the same one. A VM whose NIC
//! moves frames through vhost-net cannot be snapshotted (the kernel holds the rings' state);
//! [`NetState::vhost`] says so, for the snapshot code to refuse it.

use super::backend::NicBackend;
use super::slot::ConfigState;
use super::{Net, NetHandle};
use crate::persist::Persist;
use serde::{Deserialize, Serialize};

/// A queue's next avail and next used index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuePosition {
    pub next_avail: u16,
    pub next_used: u16,
}

/// The state of one NIC slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetState {
    /// The slot's index (eth0 is 0).
    pub index: usize,
    pub mac: [u8; 6],
    pub link_up: bool,
    pub generation: u32,
    /// The features the driver accepted (0: it has not negotiated since the last reset).
    pub acked_features: u64,
    /// The plugged TAP's interface name.
    pub tap: Option<String>,
    /// The rings are served by the host kernel: such a NIC cannot be saved.
    pub vhost: bool,
    /// Receive, then transmit.
    pub queues: [QueuePosition; 2],
}

impl NetState {
    /// The state of the slot `handle` names, now.
    pub fn of(handle: &NetHandle) -> NetState {
        let c = handle.state();
        let [rx, tx] = handle.queue_positions();
        let pos = |(next_avail, next_used)| QueuePosition {
            next_avail,
            next_used,
        };
        NetState {
            index: handle.index(),
            mac: c.mac,
            link_up: c.link_up,
            generation: c.generation,
            acked_features: c.acked,
            tap: c.tap,
            vhost: c.vhost,
            queues: [pos(rx), pos(tx)],
        }
    }
}

/// Why a NIC slot could not be rebuilt.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("NIC slot {0}: the snapshot holds vhost-net state, which cannot be restored")]
    Vhost(usize),
    #[error("NIC slot {index}: the snapshot had TAP {want:?}, the restore gives {got:?}")]
    WrongTap {
        index: usize,
        want: Option<String>,
        got: Option<String>,
    },
}

impl Persist for Net {
    type State = NetState;
    /// The TAP named by the state, opened again (None for an empty slot).
    type ConstructorArgs = Option<NicBackend>;
    type Error = RestoreError;

    fn save(&self) -> NetState {
        NetState::of(&self.handle())
    }

    fn restore(backend: Option<NicBackend>, state: &NetState) -> Result<Self, RestoreError> {
        if state.vhost || backend.as_ref().is_some_and(|b| b.vhost.is_some()) {
            return Err(RestoreError::Vhost(state.index));
        }
        let got = backend.as_ref().map(|b| b.tap.name().to_string());
        if got != state.tap {
            return Err(RestoreError::WrongTap {
                index: state.index,
                want: state.tap.clone(),
                got,
            });
        }
        let net = Net::new(state.index, state.mac, backend);
        net.slot.restore_config(ConfigState {
            mac: state.mac,
            link_up: state.link_up,
            generation: state.generation,
            mac_read: state.acked_features != 0,
            acked: state.acked_features,
            tap: state.tap.clone(),
            vhost: false,
        });
        for (p, q) in net.slot.positions.iter().zip(state.queues) {
            p.store(q.next_avail, q.next_used);
        }
        Ok(net)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::VirtioDevice;

    #[test]
    fn state_round_trips_through_json() {
        let mut net = Net::new(1, [0x0e, 0x90, 0xdf, 0x9f, 0xa8, 0x88], None);
        net.ack_features(0x1_0001_8023);
        net.slot.positions[0].store(17, 15);
        net.slot.positions[1].store(300, 299);
        let state = net.save();
        assert_eq!(state.index, 1);
        assert!(!state.link_up && state.tap.is_none() && !state.vhost);
        assert_eq!(
            state.queues,
            [
                QueuePosition {
                    next_avail: 17,
                    next_used: 15
                },
                QueuePosition {
                    next_avail: 300,
                    next_used: 299
                }
            ]
        );
        let text = serde_json::to_string(&state).unwrap();
        let back: NetState = serde_json::from_str(&text).unwrap();
        assert_eq!(back, state);
        let restored = Net::restore(None, &back).unwrap();
        assert_eq!(restored.save(), state);
        let c = restored.handle().state();
        assert!(c.mac_read, "a driver that negotiated has read the MAC");
        assert_eq!(c.acked, 0x1_0001_8023);
    }

    #[test]
    fn vhost_state_and_a_different_tap_are_refused() {
        let mut state = Net::new(0, [2, 0, 0, 0, 0, 1], None).save();
        state.vhost = true;
        assert!(matches!(
            Net::restore(None, &state),
            Err(RestoreError::Vhost(0))
        ));
        state.vhost = false;
        state.tap = Some("tap0".into());
        let e = Net::restore(None, &state).err().unwrap();
        assert_eq!(
            e.to_string(),
            "NIC slot 0: the snapshot had TAP Some(\"tap0\"), the restore gives None"
        );
    }
}
