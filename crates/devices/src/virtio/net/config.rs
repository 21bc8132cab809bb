//! The virtio-net configuration space (`struct virtio_net_config`, virtio 1.x 5.1.4), the
//! feature bits this device offers, and how the driver's choice becomes TAP offloads.
//!
//! Every NIC slot offers the same features whether or not a TAP is in it: a driver negotiates
//! once, when it starts the device (at boot, for a slot that is still empty), and a TAP plugged
//! in later must serve what was negotiated. So the offers are the ones every TAP accepts
//! (checksum, TSO for IPv4 and IPv6, ECN); UFO, which Linux TAPs only pretend to take since
//! 4.14, and USO, which needs a 6.2 host and guest, are not offered.

use super::tap::offload;
use crate::virtio::features::{bit, RING_EVENT_IDX, RING_INDIRECT_DESC, VERSION_1};
use virtio_bindings::virtio_net as vn;

/// Feature bits of virtio-net this device offers (bit numbers).
pub mod feature {
    use virtio_bindings::virtio_net as vn;
    pub const CSUM: u32 = vn::VIRTIO_NET_F_CSUM;
    pub const GUEST_CSUM: u32 = vn::VIRTIO_NET_F_GUEST_CSUM;
    pub const MAC: u32 = vn::VIRTIO_NET_F_MAC;
    pub const GUEST_TSO4: u32 = vn::VIRTIO_NET_F_GUEST_TSO4;
    pub const GUEST_TSO6: u32 = vn::VIRTIO_NET_F_GUEST_TSO6;
    pub const GUEST_ECN: u32 = vn::VIRTIO_NET_F_GUEST_ECN;
    pub const HOST_TSO4: u32 = vn::VIRTIO_NET_F_HOST_TSO4;
    pub const HOST_TSO6: u32 = vn::VIRTIO_NET_F_HOST_TSO6;
    pub const HOST_ECN: u32 = vn::VIRTIO_NET_F_HOST_ECN;
    pub const MRG_RXBUF: u32 = vn::VIRTIO_NET_F_MRG_RXBUF;
    pub const STATUS: u32 = vn::VIRTIO_NET_F_STATUS;
}

/// `status` bit: the link is up (a TAP is in the slot).
pub const LINK_UP: u16 = vn::VIRTIO_NET_S_LINK_UP as u16;

/// The features every NIC slot offers.
pub fn offered_features() -> u64 {
    bit(VERSION_1)
        | bit(RING_EVENT_IDX)
        | bit(RING_INDIRECT_DESC)
        | bit(feature::CSUM)
        | bit(feature::GUEST_CSUM)
        | bit(feature::MAC)
        | bit(feature::GUEST_TSO4)
        | bit(feature::GUEST_TSO6)
        | bit(feature::GUEST_ECN)
        | bit(feature::HOST_TSO4)
        | bit(feature::HOST_TSO6)
        | bit(feature::HOST_ECN)
        | bit(feature::MRG_RXBUF)
        | bit(feature::STATUS)
}

/// What the TAP may send towards a guest that accepted `acked`: partial checksums if it takes
/// them (GUEST_CSUM), and large TCP segments only then, as the spec ties GUEST_TSO* to it.
pub fn tap_offloads(acked: u64) -> u32 {
    let has = |f: u32| acked & bit(f) != 0;
    let mut flags = 0;
    if has(feature::GUEST_CSUM) {
        flags |= offload::CSUM;
        if has(feature::GUEST_TSO4) {
            flags |= offload::TSO4;
        }
        if has(feature::GUEST_TSO6) {
            flags |= offload::TSO6;
        }
        if has(feature::GUEST_ECN) && flags & (offload::TSO4 | offload::TSO6) != 0 {
            flags |= offload::TSO_ECN;
        }
    }
    flags
}

/// Whether the driver takes receive buffers in pieces (`num_buffers` in the header).
pub fn mergeable(acked: u64) -> bool {
    acked & bit(feature::MRG_RXBUF) != 0
}

/// Length of the configuration space: `mac`, `status`, `max_virtqueue_pairs` (1).
pub const CONFIG_LEN: usize = 10;

/// The configuration space for a NIC with `mac` whose link is up or down.
pub fn config_space(mac: [u8; 6], link_up: bool) -> [u8; CONFIG_LEN] {
    let mut c = [0u8; CONFIG_LEN];
    c[..6].copy_from_slice(&mac);
    let status = if link_up { LINK_UP } else { 0 };
    c[6..8].copy_from_slice(&status.to_le_bytes());
    c[8..10].copy_from_slice(&1u16.to_le_bytes());
    c
}

/// The usual colon form of a MAC address.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A random locally administered unicast MAC address, for a NIC given none.
pub fn random_mac() -> [u8; 6] {
    let mut mac = [0u8; 6];
    // SAFETY: getrandom writes at most `mac.len()` bytes into `mac`.
    let n = unsafe { libc::getrandom(mac.as_mut_ptr() as *mut libc::c_void, 6, 0) };
    if n != 6 {
        // No entropy source: the time and the pid still tell two VMs apart.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0) as u64
            ^ (u64::from(std::process::id()) << 24);
        mac.copy_from_slice(&t.to_le_bytes()[..6]);
    }
    mac[0] = (mac[0] & 0xfe) | 0x02;
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_spec() {
        let c = config_space([0x0e, 0x90, 0xdf, 0x9f, 0xa8, 0x88], true);
        assert_eq!(c, [0x0e, 0x90, 0xdf, 0x9f, 0xa8, 0x88, 1, 0, 1, 0]);
        assert_eq!(config_space([2; 6], false)[6..8], [0, 0]);
    }

    #[test]
    fn offers() {
        let f = offered_features();
        for b in [0, 1, 5, 7, 8, 9, 11, 12, 13, 15, 16, 28, 29, 32] {
            assert_ne!(f & (1 << b), 0, "bit {b}");
        }
        for b in [2, 10, 14, 17, 22, 34, 54, 55, 56] {
            assert_eq!(f & (1 << b), 0, "bit {b} is not offered");
        }
    }

    #[test]
    fn offloads_follow_the_guest_and_need_its_checksums() {
        let all = offered_features();
        assert_eq!(
            tap_offloads(all),
            offload::CSUM | offload::TSO4 | offload::TSO6 | offload::TSO_ECN
        );
        assert_eq!(tap_offloads(all & !bit(feature::GUEST_CSUM)), 0);
        assert_eq!(
            tap_offloads(bit(feature::GUEST_CSUM) | bit(feature::GUEST_TSO6)),
            offload::CSUM | offload::TSO6
        );
        assert_eq!(
            tap_offloads(bit(feature::GUEST_CSUM) | bit(feature::GUEST_ECN)),
            offload::CSUM,
            "ECN without TSO means nothing"
        );
        assert_eq!(tap_offloads(0), 0);
    }

    #[test]
    fn random_macs_are_local_unicast_and_differ() {
        let a = random_mac();
        let b = random_mac();
        assert_eq!(a[0] & 3, 2);
        assert_ne!(a, b);
        assert_eq!(
            format_mac(&[0x0e, 0x90, 0xdf, 0x9f, 0xa8, 0x88]),
            "0e:90:df:9f:a8:88"
        );
    }
}
