//! The net device behind a real MMIO transport, driven the way Linux's driver does.

use super::test_utils::*;
use super::*;
use crate::bus::BusDevice;
use crate::virtio::test_transport::{features, probe, r, transport, w};
use crate::virtio::MmioTransport;
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EFD_NONBLOCK;

const STATUS: u64 = 0x70;
const INTERRUPT_STATUS: u64 = 0x60;
const INTERRUPT_ACK: u64 = 0x64;
const GENERATION: u64 = 0xfc;
const MAC: [u8; 6] = [0x0e, 0x90, 0xdf, 0x9f, 0xa8, 0x88];

fn config(t: &mut MmioTransport) -> ([u8; 6], u16) {
    let mut b = [0; 10];
    t.read(0x100, &mut b);
    (b[..6].try_into().unwrap(), u16::from_le_bytes([b[6], b[7]]))
}

/// A reset, then Linux's probe: every offered feature taken, then both queues, then DRIVER_OK.
fn start(t: &mut MmioTransport, rxq: &TestQueue<'_>, txq: &TestQueue<'_>) {
    w(t, STATUS, 0);
    probe(t, features, QUEUE_SIZE, &[rxq, txq]);
}

fn backend(name: &str) -> (NicBackend, std::fs::File) {
    let (tap, peer) = tap_pair(name);
    (NicBackend { tap, vhost: None }, peer)
}

#[test]
fn an_empty_slot_is_a_nic_with_its_mac_and_no_link() {
    let m = mem();
    let mut t = transport(&m, Net::new(0, MAC, None));
    assert_eq!(r(&mut t, 0x08), 1, "DeviceID: network card");
    let f = features(&mut t);
    assert_eq!(f, offered_features());
    assert_eq!(config(&mut t), (MAC, 0));
    let (b, _peer) = backend("boot");
    let mut t = transport(&m, Net::new(1, MAC, Some(b)));
    assert_eq!(config(&mut t), (MAC, 1), "a boot TAP: link up");
}

#[test]
fn plugging_raises_the_link_with_a_config_interrupt_and_traffic_flows() {
    let m = mem();
    let net = Net::new(0, MAC, None);
    let h = net.handle();
    let mut t = transport(&m, net);
    let rxq = TestQueue::new(&m, RXQ);
    let txq = TestQueue::new(&m, TXQ);
    start(&mut t, &rxq, &txq);
    assert!(eventually(|| thread_names().iter().any(|n| n == "net0")));
    let gen0 = r(&mut t, GENERATION);
    let (b, peer) = backend("hp0");
    h.attach(b, None).map_err(|(e, _)| e).unwrap();
    assert!(wait(t.interrupt().irqfd(), SECOND).is_some());
    assert_eq!(r(&mut t, INTERRUPT_STATUS) & 2, 2);
    w(&mut t, INTERRUPT_ACK, 2);
    assert_eq!(config(&mut t), (MAC, 1));
    assert_ne!(r(&mut t, GENERATION), gen0);
    assert_eq!(h.tap_name().as_deref(), Some("hp0"));
    // A frame out through the queue notification register.
    txq.tx_frame(0, &[(0x20_0000, &tap_frame(&[3; 64]))]);
    w(&mut t, 0x50, 1);
    assert_eq!(host_recv(&peer, SECOND).unwrap(), tap_frame(&[3; 64]));
    // And one in.
    rxq.rx_buffer(0, 0x30_0000, 2048);
    w(&mut t, 0x50, 0);
    host_send(&peer, &tap_frame(&[4; 64]));
    assert!(eventually(|| rxq.used_idx() == 1));
    assert_eq!(read_guest(&m, 0x30_0000 + 12, 64), vec![4; 64]);
    // Unplugged: the link goes down, the backend comes back.
    let back = h.detach().unwrap();
    assert_eq!(back.tap.name(), "hp0");
    assert_eq!(config(&mut t), (MAC, 0));
    assert!(h.tap_name().is_none());
    assert_eq!(h.detach().unwrap_err(), NetError::SlotEmpty(0));
}

#[test]
fn a_reset_stops_the_thread_and_keeps_the_tap_for_the_next_start() {
    let m = mem();
    let (b, peer) = backend("rs");
    let net = Net::new(3, MAC, Some(b));
    let h = net.handle();
    let mut t = transport(&m, net);
    let rxq = TestQueue::new(&m, RXQ);
    let txq = TestQueue::new(&m, TXQ);
    start(&mut t, &rxq, &txq);
    assert!(eventually(|| thread_names().iter().any(|n| n == "net3")));
    w(&mut t, STATUS, 0);
    assert!(!thread_names().iter().any(|n| n == "net3"));
    assert!(h.is_attached(), "the TAP stays in the slot");
    let rxq = TestQueue::new(&m, RXQ);
    let txq = TestQueue::new(&m, TXQ);
    start(&mut t, &rxq, &txq);
    txq.tx_frame(0, &[(0x20_0000, &tap_frame(&[5; 64]))]);
    w(&mut t, 0x50, 1);
    assert_eq!(host_recv(&peer, SECOND).unwrap(), tap_frame(&[5; 64]));
}

#[test]
fn a_new_mac_is_taken_only_before_the_driver_has_read_the_old_one() {
    let m = mem();
    let net = Net::new(1, MAC, None);
    let h = net.handle();
    let mut t = transport(&m, net);
    let other = [0x0e, 0, 0, 0, 0, 7];
    // Before any driver: the guest will read the new MAC when it probes.
    let (b, _p1) = backend("m1");
    h.attach(b, Some(other)).map_err(|(e, _)| e).unwrap();
    assert_eq!(config(&mut t).0, other);
    drop(h.detach().unwrap());
    let rxq = TestQueue::new(&m, RXQ);
    let txq = TestQueue::new(&m, TXQ);
    start(&mut t, &rxq, &txq);
    let (b, _p2) = backend("m2");
    let (e, back) = h.attach(b, Some(MAC)).unwrap_err();
    assert_eq!(
        e,
        NetError::MacFixed {
            index: 1,
            now: "0e:00:00:00:00:07".into()
        }
    );
    assert_eq!(back.unwrap().tap.name(), "m2", "the TAP comes back");
    assert!(!h.is_attached(), "nothing changed");
    let (b, _p3) = backend("m3");
    h.attach(b, Some(other)).map_err(|(e, _)| e).unwrap();
    let (b, _p4) = backend("m4");
    assert_eq!(h.attach(b, None).unwrap_err().0, NetError::SlotBusy(1));
    assert_eq!(h.tap_name().as_deref(), Some("m3"));
    // After a reset the driver reads the MAC again.
    drop(h.detach().unwrap());
    w(&mut t, STATUS, 0);
    let (b, _p5) = backend("m5");
    h.attach(b, Some(MAC)).map_err(|(e, _)| e).unwrap();
    assert_eq!(config(&mut t).0, MAC);
}

#[test]
fn the_guest_memory_of_a_frame_is_what_the_tap_gets() {
    // A frame split into many small descriptors, and one in an indirect table.
    let m = mem();
    let (b, peer) = backend("iv");
    let net = Net::new(0, MAC, Some(b));
    let mut t = transport(&m, net);
    let rxq = TestQueue::new(&m, RXQ);
    let txq = TestQueue::new(&m, TXQ);
    start(&mut t, &rxq, &txq);
    let frame = tap_frame(&payload(11, 1400));
    let parts: Vec<(u64, &[u8])> = frame
        .chunks(100)
        .enumerate()
        .map(|(i, c)| (0x20_0000 + i as u64 * 0x200, c))
        .collect();
    assert_eq!(parts.len(), 15);
    txq.tx_frame(0, &parts);
    w(&mut t, 0x50, 1);
    assert_eq!(host_recv(&peer, SECOND).unwrap(), frame);
    // Indirect: the chain is one descriptor pointing at a table of three.
    let table = 0x50_0000u64;
    let bufs = [
        (0x51_0000u64, &frame[..12]),
        (0x52_0000, &frame[12..700]),
        (0x53_0000, &frame[700..]),
    ];
    for (i, (addr, bytes)) in bufs.iter().enumerate() {
        m.write_slice(bytes, GuestAddress(*addr)).unwrap();
        let flags = if i < 2 { NEXT } else { 0 };
        let d =
            virtio_queue::desc::RawDescriptor::from(virtio_queue::desc::split::Descriptor::new(
                *addr,
                bytes.len() as u32,
                flags,
                i as u16 + 1,
            ));
        m.write_obj(d, GuestAddress(table + 16 * i as u64)).unwrap();
    }
    txq.set_desc(
        15,
        virtio_queue::desc::split::Descriptor::new(table, 48, 4, 0),
    );
    txq.push_avail(15);
    w(&mut t, 0x50, 1);
    assert_eq!(host_recv(&peer, SECOND).unwrap(), frame);
}

#[test]
fn a_snapshot_through_the_transport_restores_a_nic_that_goes_on_where_it_was() {
    let m = mem();
    let (b, peer) = backend("snap0");
    let mut t = transport(&m, Net::new(0, MAC, Some(b)));
    let rxq = TestQueue::new(&m, RXQ);
    let txq = TestQueue::new(&m, TXQ);
    start(&mut t, &rxq, &txq);
    txq.tx_frame(0, &[(0x20_0000, &tap_frame(&[5; 64]))]);
    w(&mut t, 0x50, 1);
    assert_eq!(host_recv(&peer, SECOND).unwrap(), tap_frame(&[5; 64]));
    assert!(eventually(|| txq.used_idx() == 1));
    let state = t.save().unwrap();
    t.resume_after_save();
    assert_eq!(state.positions.len(), 2);
    assert_eq!(state.positions[1].next_avail, 1);
    let DeviceState::Net(n) = &state.device else {
        panic!("not a NIC: {:?}", state.device)
    };
    assert_eq!(n.tap.as_deref(), Some("snap0"));
    assert!(n.link_up && n.mac_read);
    drop(t);

    // The restored NIC takes the next frame from where the first stopped.
    let (b, peer) = backend("snap0");
    let net = <Net as crate::Persist>::restore((0, Some(b)), n).unwrap();
    let mut t = MmioTransport::restore(
        m.clone(),
        Box::new(net),
        EventFd::new(EFD_NONBLOCK).unwrap(),
        &state,
    )
    .unwrap();
    assert!(t.is_activated());
    assert_eq!(config(&mut t), (MAC, 1));
    txq.tx_frame(1, &[(0x20_1000, &tap_frame(&[6; 64]))]);
    w(&mut t, 0x50, 1);
    assert_eq!(host_recv(&peer, SECOND).unwrap(), tap_frame(&[6; 64]));
    assert!(eventually(|| txq.used_idx() == 2));
    assert_eq!(txq.used(), vec![(0, 0), (1, 0)]);
}

#[test]
fn a_nic_on_vhost_net_refuses_a_snapshot() {
    let net = Net::new(1, MAC, None);
    net.slot.restore_config(ConfigState {
        mac: MAC,
        link_up: true,
        tap: Some("tap1".into()),
        vhost: true,
        ..Default::default()
    });
    assert_eq!(
        net.can_save().unwrap_err(),
        "a VM with vhost-net (eth1) cannot be snapshotted"
    );
    assert!(Net::new(1, MAC, None).can_save().is_ok());
}
