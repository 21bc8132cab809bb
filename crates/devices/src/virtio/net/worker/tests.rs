use super::super::config::offered_features;
use super::super::test_utils::*;
use super::*;
use std::time::{Duration, Instant};
use virtio_queue::desc::split::Descriptor;

struct Rig {
    handle: WorkerHandle,
    kicks: [EventFd; 2],
    interrupt: Arc<Interrupt>,
    slot: Arc<NicSlot>,
}

fn start(
    m: &GuestMemoryMmap,
    queues: [Queue; 2],
    backend: Option<NicBackend>,
    acked: u64,
    index: usize,
) -> Rig {
    let kicks = [
        EventFd::new(EFD_NONBLOCK).unwrap(),
        EventFd::new(EFD_NONBLOCK).unwrap(),
    ];
    let interrupt = Arc::new(Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()));
    let slot = Arc::new(NicSlot::new(index, [2, 0, 0, 0, 0, 1], None));
    let worker = Worker {
        mem: m.clone(),
        queues,
        evts: [kicks[0].try_clone().unwrap(), kicks[1].try_clone().unwrap()],
        interrupt: interrupt.clone(),
        acked,
        backend,
        slot: slot.clone(),
    };
    Rig {
        handle: WorkerHandle::spawn(format!("net-t{index}"), worker).unwrap(),
        kicks,
        interrupt,
        slot,
    }
}

fn backend(name: &str) -> (NicBackend, std::fs::File) {
    let (tap, peer) = tap_pair(name);
    (NicBackend { tap, vhost: None }, peer)
}

fn wait_used(vq: &TestQueue<'_>, n: usize) -> bool {
    eventually(|| vq.used().len() >= n)
}

#[test]
fn frames_go_out_to_the_tap_with_one_interrupt_per_batch() {
    let m = mem();
    let rxq = TestQueue::new(&m, RXQ);
    let txq = TestQueue::new(&m, TXQ);
    let (b, peer) = backend("t0");
    let hdr = [0u8; 12];
    let frames: Vec<Vec<u8>> = (0..5)
        .map(|i| payload(i, 60 + usize::from(i) * 100))
        .collect();
    for (i, f) in frames.iter().enumerate() {
        let at = 0x20_0000 + i as u64 * 0x1000;
        // The header in a descriptor of its own, the frame in one or two more.
        let (a, b2) = f.split_at(f.len() / 3);
        txq.tx_frame(
            (i * 3) as u16,
            &[(at, &hdr[..]), (at + 0x100, a), (at + 0x800, b2)],
        );
    }
    let rig = start(
        &m,
        [rxq.create_queue(), txq.create_queue()],
        Some(b),
        offered_features(),
        0,
    );
    for f in &frames {
        let got = host_recv(&peer, SECOND).expect("a frame on the TAP");
        assert_eq!(&got[..12], &hdr);
        assert_eq!(&got[12..], &f[..]);
    }
    assert!(wait_used(&txq, 5));
    assert!(txq.used().iter().all(|&(_, len)| len == 0));
    assert!(wait(rig.interrupt.irqfd(), SECOND).is_some());
    assert_eq!(rig.slot.stats.tx_frames.load(Ordering::Relaxed), 5);
    drop(rig.handle);
}

#[test]
fn received_frames_wait_for_buffers_and_none_is_lost() {
    let m = mem();
    let rxq = TestQueue::new(&m, RXQ);
    let txq = TestQueue::new(&m, TXQ);
    let (b, peer) = backend("t1");
    rxq.rx_buffer(0, 0x20_0000, 2048);
    rxq.rx_buffer(1, 0x20_1000, 2048);
    let rig = start(
        &m,
        [rxq.create_queue(), txq.create_queue()],
        Some(b),
        offered_features(),
        1,
    );
    let frames: Vec<Vec<u8>> = (0..6).map(|i| payload(i, 100 + usize::from(i))).collect();
    for f in &frames {
        host_send(&peer, &tap_frame(f));
    }
    assert!(wait_used(&rxq, 2));
    // The guest is slow: no more buffers for a while, and nothing is taken meanwhile.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(rxq.used().len(), 2);
    assert_eq!(rig.slot.stats.rx_dropped.load(Ordering::Relaxed), 0);
    for i in 2..6u16 {
        rxq.rx_buffer(i, 0x20_0000 + u64::from(i) * 0x1000, 2048);
    }
    rig.kicks[RX].write(1).unwrap();
    assert!(wait_used(&rxq, 6));
    for (i, f) in frames.iter().enumerate() {
        let at = 0x20_0000 + i as u64 * 0x1000;
        assert_eq!(read_guest(&m, at + 12, f.len()), *f, "frame {i}");
        assert_eq!(read_guest(&m, at + 10, 2), [1, 0], "num_buffers");
    }
    assert_eq!(rig.slot.stats.rx_frames.load(Ordering::Relaxed), 6);
    assert!(rig.interrupt.status() & 1 == 1);
    drop(rig.handle);
}

#[test]
fn an_empty_slot_drops_what_the_guest_sends_and_takes_a_tap_while_running() {
    let m = mem();
    let rxq = TestQueue::new(&m, RXQ);
    let txq = TestQueue::new(&m, TXQ);
    let rig = start(
        &m,
        [rxq.create_queue(), txq.create_queue()],
        None,
        offered_features(),
        2,
    );
    txq.tx_frame(0, &[(0x20_0000, &tap_frame(&[7; 60]))]);
    rig.kicks[TX].write(1).unwrap();
    assert!(wait_used(&txq, 1), "taken even with no cable");
    assert_eq!(rig.slot.stats.tx_dropped.load(Ordering::Relaxed), 1);
    // Plugged in: frames flow both ways.
    let (b, peer) = backend("t2");
    rig.handle.attach(b).map_err(|(_, e)| e).unwrap();
    txq.tx_frame(1, &[(0x20_1000, &tap_frame(&[8; 70]))]);
    rig.kicks[TX].write(1).unwrap();
    assert_eq!(host_recv(&peer, SECOND).unwrap(), tap_frame(&[8; 70]));
    rxq.rx_buffer(0, 0x21_0000, 2048);
    rig.kicks[RX].write(1).unwrap();
    host_send(&peer, &tap_frame(&[9; 80]));
    assert!(wait_used(&rxq, 1));
    assert_eq!(read_guest(&m, 0x21_0000 + 12, 80), vec![9; 80]);
    // A second TAP is refused and comes back.
    let (b2, _peer2) = backend("t2b");
    let (back, why) = rig.handle.attach(b2).unwrap_err();
    assert_eq!(back.unwrap().tap.name(), "t2b");
    assert!(why.contains("already holds"), "{why}");
    // Unplugged: the backend comes back, the guest's frames are dropped again.
    let b = rig.handle.detach().expect("the backend");
    assert_eq!(b.tap.name(), "t2");
    assert!(rig.handle.detach().is_none());
    txq.tx_frame(2, &[(0x20_2000, &tap_frame(&[10; 60]))]);
    rig.kicks[TX].write(1).unwrap();
    assert!(wait_used(&txq, 3));
    assert!(host_recv(&peer, Duration::from_millis(100)).is_none());
    drop(rig.handle);
}

#[test]
fn a_broken_ring_marks_the_device_needing_reset_and_the_other_queue_runs() {
    let m = mem();
    let rxq = TestQueue::new(&m, RXQ);
    let txq = TestQueue::new(&m, TXQ);
    let (b, peer) = backend("t3");
    let rig = start(
        &m,
        [rxq.create_queue(), txq.create_queue()],
        Some(b),
        offered_features(),
        3,
    );
    // A transmit chain naming a descriptor past the table.
    txq.push_avail(QSIZE + 1);
    rig.kicks[TX].write(1).unwrap();
    assert!(eventually(|| rig.interrupt.needs_reset()));
    // Receiving still works.
    rxq.rx_buffer(0, 0x20_0000, 2048);
    host_send(&peer, &tap_frame(&[1; 64]));
    rig.kicks[RX].write(1).unwrap();
    assert!(wait_used(&rxq, 1));
    drop(rig.handle);
}

#[test]
fn bad_chains_fail_alone_on_both_queues() {
    let m = mem();
    let rxq = TestQueue::new(&m, RXQ);
    let txq = TestQueue::new(&m, TXQ);
    let (b, peer) = backend("t4");
    // Transmit: device-writable, outside memory, a loop, zero length, too big, then a good one.
    txq.set_desc(0, Descriptor::new(0x20_0000, 100, WRITE, 0));
    txq.push_avail(0);
    txq.set_desc(1, Descriptor::new(1 << 40, 100, 0, 0));
    txq.push_avail(1);
    txq.set_desc(2, Descriptor::new(0x20_0000, 100, NEXT, 3));
    txq.set_desc(3, Descriptor::new(0x20_0000, 100, NEXT, 2));
    txq.push_avail(2);
    txq.set_desc(4, Descriptor::new(0x20_0000, 0, 0, 0));
    txq.push_avail(4);
    txq.set_desc(5, Descriptor::new(0x20_0000, 70000, 0, 0));
    txq.push_avail(5);
    txq.tx_frame(6, &[(0x30_0000, &tap_frame(&[5; 100]))]);
    // Receive: one buffer too small for the header, then a good one.
    rxq.rx_buffer(0, 0x40_0000, 8);
    rxq.rx_buffer(1, 0x40_1000, 2048);
    host_send(&peer, &tap_frame(&[6; 90]));
    let rig = start(
        &m,
        [rxq.create_queue(), txq.create_queue()],
        Some(b),
        offered_features(),
        4,
    );
    assert_eq!(host_recv(&peer, SECOND).unwrap(), tap_frame(&[5; 100]));
    assert!(
        host_recv(&peer, Duration::from_millis(50)).is_none(),
        "only the good frame"
    );
    assert!(wait_used(&txq, 6));
    assert!(wait_used(&rxq, 2));
    assert_eq!(rxq.used(), vec![(0, 0), (1, 102)]);
    assert_eq!(read_guest(&m, 0x40_1000 + 12, 90), vec![6; 90]);
    assert!(!rig.interrupt.needs_reset());
    assert_eq!(rig.slot.stats.tx_errors.load(Ordering::Relaxed), 5);
    assert_eq!(rig.slot.stats.rx_errors.load(Ordering::Relaxed), 1);
    drop(rig.handle);
}

#[test]
fn the_thread_is_named_and_stops_promptly_giving_its_backend_back() {
    let m = mem();
    let rxq = TestQueue::new(&m, RXQ);
    let txq = TestQueue::new(&m, TXQ);
    let (b, _peer) = backend("t5");
    let mut rig = start(
        &m,
        [rxq.create_queue(), txq.create_queue()],
        Some(b),
        offered_features(),
        5,
    );
    assert!(eventually(|| thread_names().iter().any(|n| n == "net-t5")));
    let t = Instant::now();
    let b = rig.handle.stop().expect("the backend comes back");
    assert_eq!(b.tap.name(), "t5");
    assert!(t.elapsed() < Duration::from_secs(1));
    assert!(!thread_names().iter().any(|n| n == "net-t5"));
}

#[test]
fn a_parked_thread_reports_its_queues_and_takes_nothing_until_released() {
    let m = mem();
    let rxq = TestQueue::new(&m, RXQ);
    let txq = TestQueue::new(&m, TXQ);
    let (b, peer) = backend("t7");
    rxq.rx_buffer(0, 0x40_0000, 2048);
    let first = payload(1, 100);
    txq.tx_frame(0, &[(0x20_0000, &tap_frame(&first))]);
    let rig = start(
        &m,
        [rxq.create_queue(), txq.create_queue()],
        Some(b),
        offered_features(),
        7,
    );
    assert_eq!(host_recv(&peer, SECOND), Some(tap_frame(&first)));
    assert!(wait_used(&txq, 1));
    let at = rig.handle.park().unwrap();
    let pos = |next_avail, next_used| QueuePosition {
        next_avail,
        next_used,
    };
    assert_eq!(at, vec![pos(0, 0), pos(1, 1)]);
    // While parked: a frame from the host waits in the TAP, the guest's next frame in the ring.
    host_send(&peer, &tap_frame(&payload(2, 80)));
    txq.tx_frame(1, &[(0x20_1000, &tap_frame(&payload(3, 90)))]);
    rig.kicks[TX].write(1).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(txq.used().len(), 1);
    assert!(rxq.used().is_empty());
    assert!(host_recv(&peer, Duration::from_millis(10)).is_none());
    assert_eq!(
        rig.handle.park().unwrap(),
        at,
        "parking again changes nothing"
    );
    rig.handle.release();
    assert_eq!(host_recv(&peer, SECOND), Some(tap_frame(&payload(3, 90))));
    assert!(wait_used(&txq, 2));
    assert!(wait_used(&rxq, 1));
    assert_eq!(rxq.used(), vec![(0, 92)]);
    drop(rig.handle);
}

#[test]
fn a_full_tap_makes_the_guest_wait_and_loses_nothing() {
    use std::os::fd::AsRawFd;
    let m = mem();
    let rxq = TestQueue::new(&m, RXQ);
    let txq = TestQueue::new(&m, TXQ);
    let (tap, peer) = tap_pair("t6");
    let small: libc::c_int = 4096;
    // SAFETY: sets an int socket option on a socket we own.
    unsafe {
        libc::setsockopt(
            tap.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            &small as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    let frames: Vec<Vec<u8>> = (0..QSIZE)
        .map(|i| tap_frame(&payload(i as u8, 1000)))
        .collect();
    for (i, f) in frames.iter().enumerate() {
        txq.tx_frame(i as u16, &[(0x20_0000 + i as u64 * 0x1000, f)]);
    }
    let rig = start(
        &m,
        [rxq.create_queue(), txq.create_queue()],
        Some(NicBackend { tap, vhost: None }),
        offered_features(),
        6,
    );
    // The host side reads nothing for a while: the TAP fills, the rest of the frames wait.
    std::thread::sleep(Duration::from_millis(200));
    let taken = txq.used().len();
    assert!(
        taken < usize::from(QSIZE),
        "{taken} frames taken by a full TAP"
    );
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(host_recv(&peer, SECOND).as_ref(), Some(f), "frame {i}");
    }
    assert!(wait_used(&txq, QSIZE as usize));
    assert_eq!(rig.slot.stats.tx_dropped.load(Ordering::Relaxed), 0);
    assert_eq!(
        rig.slot.stats.tx_frames.load(Ordering::Relaxed),
        u64::from(QSIZE)
    );
    drop(rig.handle);
}
