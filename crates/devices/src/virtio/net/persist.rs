//! virtio-net's snapshot state: what the guest sees of the NIC (MAC, link, the configuration
//! generation it last read, whether its driver has read the MAC) and what is plugged in (the
//! TAP's name). The transport saves the negotiated features and the queues' positions (the
//! device's thread parks for it, see [`super::Net`]'s `save`).
//!
//! The TAP itself cannot be saved: a restore opens a TAP again from the configuration and must
//! get the one the snapshot names. A NIC whose frames move through vhost-net cannot be
//! snapshotted (the host kernel holds the rings' state), and a restore does not hand a ring to
//! vhost-net either.

use super::backend::NicBackend;
use super::slot::{ConfigState, NicSlot};
use super::Net;
use crate::persist::Persist;
use serde::{Deserialize, Serialize};

/// The state of one NIC slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetState {
    pub mac: [u8; 6],
    pub link_up: bool,
    pub generation: u32,
    /// The driver read the MAC (it negotiated since its last reset): a hot-plugged TAP cannot
    /// bring another one.
    pub mac_read: bool,
    /// The plugged TAP's interface name; None for an empty slot.
    pub tap: Option<String>,
}

impl NetState {
    pub(super) fn of(slot: &NicSlot) -> NetState {
        let c = slot.config();
        NetState {
            mac: c.mac,
            link_up: c.link_up,
            generation: c.generation,
            mac_read: c.mac_read,
            tap: c.tap,
        }
    }
}

/// Why a NIC slot could not be rebuilt from its state.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("eth{0}: a restored NIC cannot use vhost-net; give it with vhost=off")]
    Vhost(usize),
    #[error(
        "eth{index}: the snapshot has TAP {}, the configuration {}",
        name(want),
        name(got)
    )]
    WrongTap {
        index: usize,
        want: Option<String>,
        got: Option<String>,
    },
}

fn name(tap: &Option<String>) -> String {
    match tap {
        Some(t) => format!("'{t}'"),
        None => "none".to_string(),
    }
}

impl Persist for Net {
    type State = NetState;
    /// The slot's index, and the TAP the configuration gives it (opened again), if any.
    type ConstructorArgs = (usize, Option<NicBackend>);
    type Error = RestoreError;

    fn save(&self) -> NetState {
        NetState::of(&self.slot)
    }

    fn restore(
        (index, backend): (usize, Option<NicBackend>),
        state: &NetState,
    ) -> Result<Self, RestoreError> {
        if backend.as_ref().is_some_and(|b| b.vhost.is_some()) {
            return Err(RestoreError::Vhost(index));
        }
        let got = backend.as_ref().map(|b| b.tap.name().to_string());
        if got != state.tap {
            return Err(RestoreError::WrongTap {
                index,
                want: state.tap.clone(),
                got,
            });
        }
        let net = Net::new(index, state.mac, backend);
        net.slot.restore_config(ConfigState {
            mac: state.mac,
            link_up: state.link_up,
            generation: state.generation,
            mac_read: state.mac_read,
            acked: 0,
            tap: state.tap.clone(),
            vhost: false,
        });
        Ok(net)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::net::test_utils::tap_pair;
    use crate::virtio::VirtioDevice;

    #[test]
    fn state_round_trips_through_json() {
        let (tap, _peer) = tap_pair("tap7");
        let backend = NicBackend { tap, vhost: None };
        let mut net = Net::new(1, [0x0e, 0x90, 0xdf, 0x9f, 0xa8, 0x88], Some(backend));
        net.ack_features(0x1_0001_8023);
        let state = Persist::save(&net);
        assert_eq!(
            state,
            NetState {
                mac: [0x0e, 0x90, 0xdf, 0x9f, 0xa8, 0x88],
                link_up: true,
                generation: 0,
                mac_read: true,
                tap: Some("tap7".into()),
            }
        );
        let text = serde_json::to_string(&state).unwrap();
        let back: NetState = serde_json::from_str(&text).unwrap();
        assert_eq!(back, state);
        let (tap, _peer) = tap_pair("tap7");
        let restored = Net::restore((1, Some(NicBackend { tap, vhost: None })), &back).unwrap();
        assert_eq!(Persist::save(&restored), state);
        assert_eq!(restored.handle().index(), 1);
        // The MAC rule of hot-plug holds across a restore.
        assert!(restored.handle().state().mac_read);
    }

    #[test]
    fn an_empty_slot_keeps_its_mac_and_generation() {
        let net = Net::new(0, [2, 0, 0, 0, 0, 1], None);
        let mut state = Persist::save(&net);
        state.generation = 5;
        let restored = Net::restore((0, None), &state).unwrap();
        assert_eq!(restored.config_generation(), 5);
        assert_eq!(restored.handle().mac(), [2, 0, 0, 0, 0, 1]);
        assert!(!restored.handle().is_attached());
    }

    #[test]
    fn a_different_tap_is_refused() {
        let mut state = Persist::save(&Net::new(0, [2, 0, 0, 0, 0, 1], None));
        state.tap = Some("tap0".into());
        let e = Net::restore((0, None), &state).err().unwrap();
        assert_eq!(
            e.to_string(),
            "eth0: the snapshot has TAP 'tap0', the configuration none"
        );
        let (tap, _peer) = tap_pair("tap1");
        let e = Net::restore((0, Some(NicBackend { tap, vhost: None })), &state)
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "eth0: the snapshot has TAP 'tap0', the configuration 'tap1'"
        );
    }
}
