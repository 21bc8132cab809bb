//! The console driven the way a guest driver and a host client do: mock queues in guest
//! memory on one side, Unix socket clients on the other.

use super::test_utils::*;
use super::*;
use crate::bus::BusDevice;
use crate::virtio::MmioTransport;
use crate::Persist;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;
use virtio_queue::desc::split::Descriptor;
use vmm_sys_util::eventfd::EFD_NONBLOCK;

/// A console with both queues running: `rx` and `tx` are the guest's view of them.
struct Rig<'a> {
    console: Console,
    path: PathBuf,
    rx: TestQueue<'a>,
    tx: TestQueue<'a>,
    rx_kick: EventFd,
    tx_kick: EventFd,
    interrupt: Arc<Interrupt>,
}

fn rig<'a>(m: &'a Arc<GuestMemoryMmap>, name: &str) -> Rig<'a> {
    let path = socket_path(name);
    let console = Console::new(ConsoleSocket::bind(&path).unwrap()).unwrap();
    start(console, path, m)
}

fn start<'a>(console: Console, path: PathBuf, m: &'a Arc<GuestMemoryMmap>) -> Rig<'a> {
    let (rx, tx) = (TestQueue::new(m, RX_RING), TestQueue::new(m, TX_RING));
    let mut r = Rig {
        console,
        path,
        rx,
        tx,
        rx_kick: EventFd::new(EFD_NONBLOCK).unwrap(),
        tx_kick: EventFd::new(EFD_NONBLOCK).unwrap(),
        interrupt: Arc::new(Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap())),
    };
    r.activate(m);
    r
}

/// Guest addresses of output and input buffers: 4 KiB apart, one per descriptor index.
fn out_buf(i: u16) -> u64 {
    0x10_0000 + u64::from(i) * 0x1000
}

fn in_buf(i: u16) -> u64 {
    0x20_0000 + u64::from(i) * 0x1000
}

impl<'a> Rig<'a> {
    /// The driver starts the device with new, empty queues (DRIVER_OK).
    fn activate(&mut self, m: &'a Arc<GuestMemoryMmap>) {
        self.rx = TestQueue::new(m, RX_RING);
        self.tx = TestQueue::new(m, TX_RING);
        self.rx_kick = EventFd::new(EFD_NONBLOCK).unwrap();
        self.tx_kick = EventFd::new(EFD_NONBLOCK).unwrap();
        self.interrupt = Arc::new(Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()));
        let evts = vec![
            self.rx_kick.try_clone().unwrap(),
            self.tx_kick.try_clone().unwrap(),
        ];
        let queues = vec![self.rx.create_queue(), self.tx.create_queue()];
        self.console
            .activate((**m).clone(), self.interrupt.clone(), queues, evts)
            .unwrap();
    }

    /// The guest writes `data` as one chain at descriptor `head`, and notifies.
    fn write(&self, m: &GuestMemoryMmap, head: u16, data: &[u8]) {
        put_data(m, out_buf(head), data);
        self.tx
            .chain(head, &[(out_buf(head), data.len() as u32, false)]);
        self.tx_kick.write(1).unwrap();
    }

    /// The guest gives receive buffers of `len` bytes at descriptors `heads`, and notifies.
    fn give(&self, heads: std::ops::Range<u16>, len: u32) {
        for h in heads {
            self.rx.chain(h, &[(in_buf(h), len, true)]);
        }
        self.rx_kick.write(1).unwrap();
    }

    fn client(&self) -> UnixStream {
        let c = connect(&self.path);
        // The console thread takes the connection at its next turn.
        std::thread::sleep(Duration::from_millis(20));
        c
    }
}

#[test]
fn output_reaches_the_client_and_input_the_guest() {
    let m = Arc::new(mem());
    let r = rig(&m, "both-ways");
    let mut c = r.client();
    r.write(&m, 0, b"hello ");
    // Two buffers in one chain.
    put_data(&m, out_buf(1), b"wor");
    put_data(&m, out_buf(2), b"ld\n");
    r.tx.chain(1, &[(out_buf(1), 3, false), (out_buf(2), 3, false)]);
    r.tx_kick.write(1).unwrap();
    assert_eq!(read_n(&mut c, 12), b"hello world\n");
    assert!(eventually(|| r.tx.used() == vec![(0, 0), (1, 0)]));
    assert!(
        wait(r.interrupt.irqfd(), SECOND).is_some(),
        "used-buffer interrupt"
    );

    r.give(0..2, 4);
    send(&mut c, b"ls -l\n");
    assert!(eventually(|| r.rx.used().len() == 2));
    assert_eq!(r.rx.used(), vec![(0, 4), (1, 2)]);
    assert_eq!(read_guest(&m, in_buf(0), 4), b"ls -");
    assert_eq!(read_guest(&m, in_buf(1), 2), b"l\n");
    assert!(!r.interrupt.needs_reset());
}

#[test]
fn input_waits_for_the_guest_s_buffers() {
    let m = Arc::new(mem());
    let r = rig(&m, "input-waits");
    let mut c = r.client();
    let data = pattern(10_000, 3);
    send(&mut c, &data);
    std::thread::sleep(Duration::from_millis(50));
    assert!(r.rx.used().is_empty(), "nothing is taken without a buffer");
    let mut got = Vec::new();
    // The guest gives one 4 KiB buffer at a time, as it finishes with the last.
    for i in 0..3u16 {
        r.give(i..i + 1, 4096);
        assert!(eventually(|| r.rx.used().len() == usize::from(i) + 1));
        let (_, len) = r.rx.used()[usize::from(i)];
        got.extend(read_guest(&m, in_buf(i), len as usize));
    }
    assert_eq!(got, data);
}

#[test]
fn with_nobody_connected_the_guest_never_waits_and_the_last_output_is_kept() {
    let m = Arc::new(mem());
    let r = rig(&m, "backlog");
    // 16 chains of 4 KiB, then 40 more bytes: 64 KiB + 40 in all, with no client.
    let all: Vec<u8> = pattern(16 * 4096 + 40, 9);
    for h in 0..16u16 {
        let at = usize::from(h) * 4096;
        r.write(&m, h, &all[at..at + 4096]);
        assert!(eventually(|| r.tx.used().len() == usize::from(h) + 1));
    }
    r.write(&m, 0, &all[16 * 4096..]);
    assert!(eventually(|| r.tx.used().len() == 17));
    assert_eq!(r.console.buffered(), BUFFER_SIZE);
    // The next client gets the last 64 KiB: the first 40 bytes were pushed out.
    let mut c = connect(&r.path);
    assert_eq!(read_n(&mut c, BUFFER_SIZE), &all[40..]);
    assert_eq!(read_n(&mut c, 1), b"", "nothing more");
}

#[test]
fn a_huge_chain_with_nobody_connected_costs_one_buffer() {
    let m = Arc::new(mem());
    let r = rig(&m, "huge-unread");
    // 1 MiB in one descriptor: only its last 64 KiB are copied.
    let data = pattern(1 << 20, 1);
    put_data(&m, 0x20_0000, &data);
    r.tx.chain(0, &[(0x20_0000, 1 << 20, false)]);
    r.tx_kick.write(1).unwrap();
    assert!(eventually(|| r.tx.used() == vec![(0, 0)]));
    let mut c = connect(&r.path);
    assert_eq!(
        read_n(&mut c, BUFFER_SIZE),
        &data[data.len() - BUFFER_SIZE..]
    );
}

#[test]
fn a_slow_client_makes_the_guest_wait_and_loses_nothing() {
    let m = Arc::new(mem());
    let r = rig(&m, "slow");
    let mut c = r.client();
    // 16 chains of 64 KiB (1 MiB) against a client that does not read yet.
    let all = pattern(16 << 16, 5);
    put_data(&m, 0x10_0000, &all);
    for h in 0..16u16 {
        let at = 0x10_0000 + u64::from(h) * 0x1_0000;
        r.tx.chain(h, &[(at, 0x1_0000, false)]);
    }
    r.tx_kick.write(1).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let taken = r.tx.used().len();
    assert!(taken < 16, "the guest waits: {taken} of 16 chains taken");
    assert!(r.console.buffered() <= BUFFER_SIZE);
    // Reading a little at a time gets every byte, in order.
    c.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 8192];
    while got.len() < all.len() {
        let n = std::io::Read::read(&mut c, &mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
        std::thread::sleep(Duration::from_micros(200));
    }
    assert!(got == all, "every byte, in order");
    assert!(eventually(|| r.tx.used().len() == 16));
}

#[test]
fn a_new_client_replaces_the_old_one_and_the_stream_goes_on() {
    let m = Arc::new(mem());
    let r = rig(&m, "replace");
    let mut a = r.client();
    r.write(&m, 0, b"first ");
    assert_eq!(read_n(&mut a, 6), b"first ");
    // A connection that leaves at once (a liveness probe) replaces nobody.
    drop(UnixStream::connect(&r.path).unwrap());
    std::thread::sleep(GRACE * 2);
    r.write(&m, 1, b"still a ");
    assert_eq!(read_n(&mut a, 8), b"still a ");
    // A client that stays takes over after the grace period.
    let mut b = connect(&r.path);
    std::thread::sleep(GRACE * 2);
    r.write(&m, 2, b"then b");
    assert_eq!(read_to_end(&mut a), b"", "the old client's stream ends");
    assert_eq!(read_n(&mut b, 6), b"then b");
    // Its input reaches the guest.
    r.give(0..1, 16);
    send(&mut b, b"x");
    assert!(eventually(|| r.rx.used() == vec![(0, 1)]));
}

#[test]
fn a_replaced_client_and_its_successor_share_the_stream_without_a_gap() {
    let m = Arc::new(mem());
    let r = rig(&m, "handover");
    let all = pattern(16 << 16, 7);
    put_data(&m, 0x10_0000, &all);
    let mut a = r.client();
    let writer = {
        let path = r.path.clone();
        std::thread::spawn(move || {
            // b connects while the output flows.
            std::thread::sleep(Duration::from_millis(30));
            let mut b = connect(&path);
            read_n(&mut b, 16 << 16)
        })
    };
    for h in 0..16u16 {
        let at = 0x10_0000 + u64::from(h) * 0x1_0000;
        r.tx.chain(h, &[(at, 0x1_0000, false)]);
    }
    r.tx_kick.write(1).unwrap();
    // a reads slowly until its stream ends.
    let mut from_a = Vec::new();
    let mut buf = vec![0u8; 4096];
    a.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    loop {
        match std::io::Read::read(&mut a, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => from_a.extend_from_slice(&buf[..n]),
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let from_b = writer.join().unwrap();
    assert!(!from_a.is_empty() && !from_b.is_empty());
    let mut joined = from_a.clone();
    joined.extend_from_slice(&from_b);
    assert_eq!(
        joined.len(),
        all.len(),
        "a got {}, b {}",
        from_a.len(),
        from_b.len()
    );
    assert!(joined == all, "a's bytes then b's are the stream");
}

#[test]
fn the_successor_of_a_client_that_stopped_reading_gets_the_rest() {
    let m = Arc::new(mem());
    let r = rig(&m, "handover-stuck");
    let all = pattern(16 << 16, 8);
    put_data(&m, 0x10_0000, &all);
    // a never reads: its socket and the output buffer fill up, the guest waits.
    let mut a = r.client();
    for h in 0..16u16 {
        let at = 0x10_0000 + u64::from(h) * 0x1_0000;
        r.tx.chain(h, &[(at, 0x1_0000, false)]);
    }
    r.tx_kick.write(1).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(r.tx.used().len() < 16);
    // b takes over (reading all the time) and gets everything a did not: the buffer, then
    // the rest of the chains.
    let path = r.path.clone();
    let total = all.len();
    // How much a got, once a's stream has ended.
    let a_len = Arc::new(std::sync::atomic::AtomicUsize::new(usize::MAX));
    let a_len2 = a_len.clone();
    let b = std::thread::spawn(move || {
        let mut b = connect(&path);
        let mut got = Vec::new();
        let mut buf = vec![0u8; 1 << 20];
        let until = std::time::Instant::now() + SECOND;
        let left = |got: usize| match a_len2.load(std::sync::atomic::Ordering::SeqCst) {
            usize::MAX => true,
            a => got + a < total,
        };
        while left(got.len()) && std::time::Instant::now() < until {
            if let Ok(n) = std::io::Read::read(&mut b, &mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
        }
        got
    });
    std::thread::sleep(GRACE * 2);
    let from_a = read_to_end(&mut a);
    a_len.store(from_a.len(), std::sync::atomic::Ordering::SeqCst);
    let from_b = b.join().unwrap();
    assert_eq!(from_a.len() + from_b.len(), all.len());
    assert!([from_a, from_b].concat() == all);
    assert!(eventually(|| r.tx.used().len() == 16));
}

#[test]
fn a_client_that_stops_sending_still_reads() {
    let m = Arc::new(mem());
    let r = rig(&m, "half-closed");
    let mut c = r.client();
    r.give(0..1, 16);
    send(&mut c, b"bye");
    c.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(eventually(|| r.rx.used() == vec![(0, 3)]));
    r.write(&m, 0, b"output after");
    assert_eq!(read_n(&mut c, 12), b"output after");
}

#[test]
fn bad_output_chains_fail_alone() {
    let m = Arc::new(mem());
    let r = rig(&m, "bad-tx");
    let mut c = r.client();
    let ok = put_data(&m, out_buf(0), b"ok");
    // A device-writable buffer, a buffer outside memory, one wrapping past 2^64, a loop.
    r.tx.chain(0, &[(ok, 2, true)]);
    r.tx.chain(1, &[(ok, 2, false), (1 << 46, 8, false)]);
    r.tx.chain(3, &[(u64::MAX - 1, 8, false)]);
    r.tx.set_desc(4, Descriptor::new(ok, 2, 1, 4));
    r.tx.push_avail(4);
    // Then a good one.
    r.write(&m, 5, b"good");
    assert_eq!(read_n(&mut c, 4), b"good", "nothing of the bad chains");
    assert!(eventually(|| r.tx.used().len() == 5));
    assert_eq!(r.tx.used(), vec![(0, 0), (1, 0), (3, 0), (4, 0), (5, 0)]);
    assert!(!r.interrupt.needs_reset());
}

#[test]
fn bad_input_chains_fail_alone_and_keep_the_input() {
    let m = Arc::new(mem());
    let r = rig(&m, "bad-rx");
    let mut c = r.client();
    send(&mut c, b"keep");
    // A device-readable buffer and one outside memory: returned empty.
    r.rx.chain(0, &[(in_buf(0), 8, false)]);
    r.rx.chain(1, &[(1 << 46, 8, true)]);
    r.rx.chain(2, &[(in_buf(2), 8, true)]);
    r.rx_kick.write(1).unwrap();
    assert!(eventually(|| r.rx.used().len() == 3));
    assert_eq!(r.rx.used(), vec![(0, 0), (1, 0), (2, 4)]);
    assert_eq!(read_guest(&m, in_buf(2), 4), b"keep");
    assert!(!r.interrupt.needs_reset());
}

#[test]
fn a_broken_ring_needs_a_reset_and_a_reset_keeps_the_client() {
    let m = Arc::new(mem());
    let mut r = rig(&m, "broken");
    let mut c = r.client();
    // The driver index jumps more than a queue ahead.
    r.tx.set_avail_idx(QSIZE + 3);
    r.tx_kick.write(1).unwrap();
    assert!(eventually(|| r.interrupt.needs_reset()));
    assert!(r.tx.used().is_empty());
    // Nothing is served until the reset: not even the receiveq.
    send(&mut c, b"z");
    r.give(0..1, 8);
    std::thread::sleep(Duration::from_millis(50));
    assert!(r.rx.used().is_empty());
    // After a reset and a new activation the client is still there.
    r.console.reset();
    r.activate(&m);
    assert!(!r.interrupt.needs_reset());
    r.write(&m, 0, b"again");
    assert_eq!(read_n(&mut c, 5), b"again");
    r.give(0..1, 8);
    assert!(eventually(|| r.rx.used() == vec![(0, 1)]));
    assert_eq!(read_guest(&m, in_buf(0), 1), b"z");
}

#[test]
fn a_bad_head_index_needs_a_reset() {
    let m = Arc::new(mem());
    let r = rig(&m, "bad-head");
    r.rx.push_avail(QSIZE + 2);
    r.rx_kick.write(1).unwrap();
    let _c = r.client();
    assert!(eventually(|| r.interrupt.needs_reset()));
}

#[test]
fn output_before_the_driver_and_after_a_reset_is_kept() {
    let m = Arc::new(mem());
    let path = socket_path("lifecycle");
    let console = Console::new(ConsoleSocket::bind(&path).unwrap()).unwrap();
    // A client may connect before the driver starts.
    let mut c = connect(&path);
    let r = start(console, path.clone(), &m);
    r.write(&m, 0, b"boot");
    assert_eq!(read_n(&mut c, 4), b"boot");
    drop(c);
    std::thread::sleep(Duration::from_millis(20));
    r.write(&m, 1, b" log");
    assert!(eventually(|| r.tx.used().len() == 2));
    let mut r = r;
    r.console.reset();
    assert_eq!(r.console.buffered(), 4);
    let mut c = connect(&path);
    assert_eq!(read_n(&mut c, 4), b" log");
}

#[test]
fn the_thread_is_named_and_the_socket_goes_with_the_device() {
    let path = socket_path("thread");
    let console = Console::new(ConsoleSocket::bind(&path).unwrap()).unwrap();
    assert!(eventually(|| thread_names().iter().any(|n| n == "console")));
    assert!(path.exists());
    drop(console);
    assert!(!path.exists());
}

#[test]
fn an_existing_path_is_refused_and_kept() {
    let path = socket_path("exists");
    std::fs::write(&path, "").unwrap();
    let e = ConsoleSocket::bind(&path).err().unwrap();
    assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
    assert!(e.to_string().contains("already exists"), "{e}");
    assert!(path.exists());
    std::fs::remove_file(&path).unwrap();
    let e = ConsoleSocket::bind(std::path::Path::new("/nonexistent-dir/c.sock"))
        .err()
        .unwrap();
    assert!(e.to_string().contains("/nonexistent-dir/c.sock"), "{e}");
}

/// What a snapshot gets from the console: its own state and the queues' positions.
fn snapshot(c: &mut Console) -> (ConsoleState, Vec<crate::virtio::QueuePosition>) {
    let snap = VirtioDevice::save(c).unwrap();
    let crate::virtio::DeviceState::Console(state) = snap.device else {
        panic!("not a console state");
    };
    (state, snap.queues)
}

/// A console on a new socket started on the queues at `base` where `positions` say, as the
/// transport does at a restore.
fn restored(
    m: &Arc<GuestMemoryMmap>,
    name: &str,
    state: &ConsoleState,
    positions: &[crate::virtio::QueuePosition],
) -> (Console, PathBuf, EventFd) {
    let path = socket_path(name);
    let mut c = Console::new(ConsoleSocket::bind(&path).unwrap()).unwrap();
    c.restore_state(state).unwrap();
    let mut queues = vec![
        TestQueue::attach(m, RX_RING).create_queue(),
        TestQueue::attach(m, TX_RING).create_queue(),
    ];
    for (q, p) in queues.iter_mut().zip(positions) {
        p.apply(q);
    }
    let tx_kick = EventFd::new(EFD_NONBLOCK).unwrap();
    let evts = vec![
        EventFd::new(EFD_NONBLOCK).unwrap(),
        tx_kick.try_clone().unwrap(),
    ];
    let irq = Arc::new(Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()));
    c.activate((**m).clone(), irq, queues, evts).unwrap();
    (c, path, tx_kick)
}

#[test]
fn a_save_leaves_the_queues_alone_until_resumed() {
    let m = Arc::new(mem());
    let mut r = rig(&m, "save-pause");
    let mut c = r.client();
    assert!(r.console.can_save().is_ok());
    let (_, positions) = snapshot(&mut r.console);
    assert_eq!(positions.len(), 2);
    // While the snapshot is written nothing is taken, and the client is still served.
    r.write(&m, 0, b"later");
    r.give(0..1, 8);
    send(&mut c, b"in");
    std::thread::sleep(Duration::from_millis(100));
    assert!(r.tx.used().is_empty() && r.rx.used().is_empty());
    r.console.resume_after_save();
    assert_eq!(read_n(&mut c, 5), b"later");
    assert!(eventually(|| r.rx.used() == vec![(0, 2)]));
}

#[test]
fn state_round_trips_and_the_restored_device_goes_on() {
    let m = Arc::new(mem());
    let mut r = rig(&m, "persist");
    // Output with nobody connected is kept in the state.
    r.write(&m, 0, b"before the snapshot");
    assert!(eventually(|| r.tx.used().len() == 1));
    let (state, positions) = snapshot(&mut r.console);
    assert_eq!(state.output, b"before the snapshot");
    assert_eq!(Persist::save(&r.console), state);
    assert_eq!((positions[1].next_avail, positions[1].next_used), (1, 1));
    let json = serde_json::to_string(&state).unwrap();
    let back: ConsoleState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, state);
    // The guest adds output while the snapshot is written; the saved VM ends there.
    put_data(&m, out_buf(1), b", and after");
    r.tx.chain(1, &[(out_buf(1), 11, false)]);
    drop(r);

    // A new VMM: new socket, the same guest memory and queues.
    let (restored, path, tx_kick) = restored(&m, "persist-restored", &back, &positions);
    tx_kick.write(1).unwrap();
    let mut c = connect(&path);
    assert_eq!(read_n(&mut c, 30), b"before the snapshot, and after");
    let tx = TestQueue::attach(&m, TX_RING);
    assert!(eventually(|| tx.used() == vec![(0, 0), (1, 0)]));
    drop(restored);
    // Persist on its own: the buffered output comes back.
    let again = Console::restore(
        ConsoleSocket::bind(&socket_path("persist-again")).unwrap(),
        &back,
    )
    .unwrap();
    assert_eq!(again.buffered(), 19);
    let too_much = ConsoleState {
        output: vec![0; BUFFER_SIZE + 1],
        tx_skip: 0,
    };
    assert!(again.restore_state(&too_much).is_err());
}

#[test]
fn a_chain_half_sent_at_the_snapshot_is_not_sent_twice() {
    let m = Arc::new(mem());
    let mut r = rig(&m, "persist-half");
    let mut c = r.client();
    // More than the buffer holds, to a client that does not read: the chain waits half done.
    let all = pattern(1 << 20, 2);
    put_data(&m, 0x10_0000, &all);
    r.tx.chain(0, &[(0x10_0000, 1 << 20, false)]);
    r.tx_kick.write(1).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let (state, positions) = snapshot(&mut r.console);
    assert!(
        state.tx_skip > 0 && state.tx_skip < 1 << 20,
        "{}",
        state.tx_skip
    );
    assert_eq!(positions[1].next_avail, 0, "saved as not taken");
    // What the client holds in its socket and what the buffer holds make up tx_skip.
    let sent_before = state.tx_skip as usize - state.output.len();
    let early = read_n(&mut c, sent_before);
    assert!(early == all[..sent_before]);
    drop(r);
    drop(c);
    // Restored elsewhere: the buffered part, then the rest of the chain, once.
    let (_restored, path, _) = restored(&m, "persist-half-restored", &state, &positions);
    let mut c = connect(&path);
    let rest = read_n(&mut c, all.len());
    assert_eq!(rest.len(), all.len() - sent_before);
    assert!(rest == all[sent_before..], "the rest, once");
}

#[test]
fn the_transport_sees_a_console() {
    let m = Arc::new(mem());
    let path = socket_path("transport");
    let console = Console::new(ConsoleSocket::bind(&path).unwrap()).unwrap();
    let mut t = MmioTransport::new(
        (*m).clone(),
        Box::new(console),
        EventFd::new(EFD_NONBLOCK).unwrap(),
    )
    .unwrap();
    let mut r = |off: u64| {
        let mut b = [0; 4];
        t.read(off, &mut b);
        u32::from_le_bytes(b)
    };
    assert_eq!(r(0x8), 3, "console device id");
    assert_eq!(r(0x100), 0, "no config field is offered");
    let w = |t: &mut MmioTransport, off: u64, v: u32| t.write(off, &v.to_le_bytes());
    w(&mut t, 0x30, 1);
    let mut b = [0; 4];
    t.read(0x34, &mut b);
    assert_eq!(
        u32::from_le_bytes(b),
        u32::from(QUEUE_SIZE),
        "transmitq size"
    );
    w(&mut t, 0x30, 2);
    t.read(0x34, &mut b);
    assert_eq!(u32::from_le_bytes(b), 0, "no control queue");
    drop(t);
    assert!(!path.exists(), "the socket goes with the transport");
}
