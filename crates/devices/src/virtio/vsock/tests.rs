//! The device driven the way a guest driver and host programs do: mock queues in guest memory
//! on one side, the Unix socket (Firecracker's handshake) on the other.

use super::packet::{op, shutdown, Header, EVENT_TRANSPORT_RESET, HDR_LEN};
use super::test_utils::*;
use super::*;
use crate::Persist;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;
use vmm_sys_util::eventfd::EFD_NONBLOCK;

struct Rig<'a> {
    m: &'a Arc<GuestMemoryMmap>,
    dev: Vsock,
    path: PathBuf,
    rx: Ring<'a>,
    tx: Ring<'a>,
    evt: Ring<'a>,
    kicks: [EventFd; 3],
    interrupt: Arc<Interrupt>,
    /// Next descriptor of each ring, and the used entries already looked at.
    next_tx: u16,
    next_rx: u16,
    seen_rx: usize,
}

fn out_buf(i: u16) -> u64 {
    0x10_0000 + u64::from(i % QSIZE) * 0x1_1000
}

fn in_buf(i: u16) -> u64 {
    0x28_0000 + u64::from(i % QSIZE) * 0x1_1000
}

fn rig<'a>(m: &'a Arc<GuestMemoryMmap>, name: &str) -> Rig<'a> {
    let path = socket_path(&format!("vsock-{name}"));
    let dev = Vsock::new(GUEST_CID, Backend::Unix(VsockSocket::bind(&path).unwrap())).unwrap();
    start(m, dev, path)
}

fn start<'a>(m: &'a Arc<GuestMemoryMmap>, mut dev: Vsock, path: PathBuf) -> Rig<'a> {
    let (rx, tx, evt) = (
        Ring::new(m, RX_RING),
        Ring::new(m, TX_RING),
        Ring::new(m, EVT_RING),
    );
    let kicks = [0; 3].map(|_| EventFd::new(EFD_NONBLOCK).unwrap());
    let interrupt = Arc::new(Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()));
    let queues = vec![rx.create_queue(), tx.create_queue(), evt.create_queue()];
    let evts = kicks.iter().map(|k| k.try_clone().unwrap()).collect();
    dev.activate((**m).clone(), interrupt.clone(), queues, evts)
        .unwrap();
    Rig {
        m,
        dev,
        path,
        rx,
        tx,
        evt,
        kicks,
        interrupt,
        next_tx: 0,
        next_rx: 0,
        seen_rx: 0,
    }
}

impl Rig<'_> {
    /// The guest sends a packet (header and payload in one buffer, or split in `pieces`).
    fn send_raw(&mut self, bufs: &[(u64, u32, bool)]) {
        let head = self.next_tx % QSIZE;
        self.next_tx = self.next_tx.wrapping_add(bufs.len() as u16);
        self.tx.chain(head, bufs);
        self.kicks[1].write(1).unwrap();
    }

    fn send(&mut self, h: Header, payload: &[u8]) {
        let at = out_buf(self.next_tx);
        let mut bytes = h.to_bytes().to_vec();
        bytes.extend_from_slice(payload);
        put_data(self.m, at, &bytes);
        self.send_raw(&[(at, bytes.len() as u32, false)]);
    }

    /// The guest gives `n` receive buffers of `len` bytes.
    fn give_rx(&mut self, n: usize, len: u32) {
        for _ in 0..n {
            let head = self.next_rx % QSIZE;
            self.next_rx = self.next_rx.wrapping_add(1);
            self.rx.chain(head, &[(in_buf(head), len, true)]);
        }
        self.kicks[0].write(1).unwrap();
    }

    /// The next packet the device put in a receive buffer (five seconds at most).
    fn recv(&mut self) -> (Header, Vec<u8>) {
        assert!(
            eventually(|| self.rx.used().len() > self.seen_rx),
            "no packet for the guest"
        );
        let (head, len) = self.rx.used()[self.seen_rx];
        self.seen_rx += 1;
        read_packet(self.m, in_buf(head as u16), len)
    }

    fn no_packet(&self) -> bool {
        std::thread::sleep(Duration::from_millis(100));
        self.rx.used().len() == self.seen_rx
    }

    fn tx_done(&self, n: usize) -> bool {
        eventually(|| self.tx.used().len() >= n)
    }

    /// A host program connects with `CONNECT port` and the guest accepts; returns the stream
    /// (after `OK`) and the host port.
    fn host_connect(&mut self, port: u32) -> (UnixStream, u32) {
        let mut s = UnixStream::connect(&self.path).unwrap();
        s.set_read_timeout(Some(SECOND)).unwrap();
        s.write_all(format!("CONNECT {port}\n").as_bytes()).unwrap();
        let (req, _) = self.recv();
        assert_eq!(
            (req.op, req.dst_port, req.dst_cid),
            (op::REQUEST, port, GUEST_CID)
        );
        self.send(guest_hdr(op::RESPONSE, port, req.src_port), &[]);
        let want = format!("OK {}\n", req.src_port);
        let mut line = vec![0u8; want.len()];
        s.read_exact(&mut line).unwrap();
        assert_eq!(String::from_utf8(line).unwrap(), want);
        (s, req.src_port)
    }
}

#[test]
fn a_host_program_connects_with_the_handshake_and_bytes_flow_both_ways() {
    let m = Arc::new(mem());
    let mut r = rig(&m, "hand");
    r.give_rx(8, 4096 + HDR_LEN as u32);
    let (mut s, local) = r.host_connect(52);
    let data = pattern(3000, 7);
    let mut h = guest_hdr(op::RW, 52, local);
    h.len = data.len() as u32;
    r.send(h, &data);
    let mut got = vec![0u8; data.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, data);
    s.write_all(b"from the host").unwrap();
    let (p, payload) = r.recv();
    assert_eq!((p.op, p.src_port, p.dst_port), (op::RW, local, 52));
    assert_eq!(payload, b"from the host");
    assert!(r.interrupt.status() & 1 != 0, "the guest was interrupted");
    assert_eq!(r.dev.connections(), 1);
    // The host program leaves: the guest hears SHUTDOWN, its RST ends the connection.
    drop(s);
    let (p, _) = r.recv();
    assert_eq!((p.op, p.flags), (op::SHUTDOWN, shutdown::RCV));
    let (p, _) = r.recv();
    assert_eq!((p.op, p.flags), (op::SHUTDOWN, shutdown::BOTH));
    r.send(guest_hdr(op::RST, 52, local), &[]);
    assert!(eventually(|| r.dev.connections() == 0));
}

#[test]
fn a_guest_connection_reaches_the_port_path() {
    let m = Arc::new(mem());
    let mut r = rig(&m, "guestconn");
    let listener = UnixListener::bind(format!("{}_1234", r.path.display())).unwrap();
    r.give_rx(4, 4096 + HDR_LEN as u32);
    r.send(guest_hdr(op::REQUEST, 5000, 1234), &[]);
    let (p, _) = r.recv();
    assert_eq!((p.op, p.src_port, p.dst_port), (op::RESPONSE, 1234, 5000));
    let (mut s, _) = listener.accept().unwrap();
    s.set_read_timeout(Some(SECOND)).unwrap();
    // Header and payload in separate descriptors, as Linux sends them.
    let hdr_at = out_buf(10);
    let data_at = hdr_at + 0x1000;
    let mut h = guest_hdr(op::RW, 5000, 1234);
    h.len = 4;
    put_data(&m, hdr_at, &h.to_bytes());
    put_data(&m, data_at, b"ping");
    r.send_raw(&[(hdr_at, HDR_LEN as u32, false), (data_at, 4, false)]);
    let mut got = [0u8; 4];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
    std::fs::remove_file(format!("{}_1234", r.path.display())).unwrap();
}

#[test]
fn malformed_chains_affect_only_their_own_connection() {
    let m = Arc::new(mem());
    let mut r = rig(&m, "evil");
    r.give_rx(12, 4096 + HDR_LEN as u32);
    let (mut s, local) = r.host_connect(52);
    let mut sent = 1;
    // A chain shorter than a header, a device-writable one, one outside guest memory: each is
    // returned and nothing else happens.
    let at = out_buf(r.next_tx);
    put_data(&m, at, &[1u8; 20]);
    r.send_raw(&[(at, 20, false)]);
    r.send_raw(&[(at, 64, true)]);
    r.send_raw(&[(1 << 40, 64, false)]);
    sent += 3;
    assert!(r.tx_done(sent));
    assert!(r.no_packet());
    // A second connection whose header promises more payload than the chain has: it is reset.
    let (mut victim, vlocal) = r.host_connect(53);
    sent += 1;
    let mut h = guest_hdr(op::RW, 53, vlocal);
    h.len = 1000;
    r.send(h, b"short");
    sent += 1;
    let (p, _) = r.recv();
    assert_eq!((p.op, p.dst_port), (op::RST, 53));
    let mut b = [0u8; 1];
    assert_eq!(victim.read(&mut b).unwrap(), 0);
    // Writes past the credit on the first connection's neighbour... the first one still works.
    let mut h = guest_hdr(op::RW, 52, local);
    h.len = 2;
    r.send(h, b"ok");
    sent += 1;
    let mut got = [0u8; 2];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ok");
    assert!(r.tx_done(sent));
    assert!(!r.interrupt.needs_reset(), "the device goes on");
}

#[test]
fn receive_buffers_too_small_for_a_header_are_returned_empty() {
    let m = Arc::new(mem());
    let mut r = rig(&m, "smallrx");
    r.give_rx(1, 16);
    r.give_rx(4, 4096 + HDR_LEN as u32);
    let mut s = UnixStream::connect(&r.path).unwrap();
    s.write_all(b"CONNECT 9\n").unwrap();
    assert!(eventually(|| r.rx.used().len() >= 2));
    assert_eq!(r.rx.used()[0].1, 0);
    r.seen_rx = 1;
    assert_eq!(r.recv().0.op, op::REQUEST);
}

#[test]
fn a_restored_device_sends_a_transport_reset() {
    let m = Arc::new(mem());
    let path = socket_path("vsock-restore");
    let saved = VsockState {
        guest_cid: GUEST_CID,
        userspace: true,
        next_port: (1 << 30) + 5,
    };
    let dev = Vsock::restore(
        (GUEST_CID, Backend::Unix(VsockSocket::bind(&path).unwrap())),
        &saved,
    )
    .unwrap();
    let r = start(&m, dev, path);
    r.evt.chain(0, &[(0x38_0000, 8, true)]);
    r.kicks[2].write(1).unwrap();
    assert!(eventually(|| r.evt.used().len() == 1));
    assert_eq!(r.evt.used()[0].1, 4);
    assert_eq!(
        read_guest(&m, 0x38_0000, 4),
        EVENT_TRANSPORT_RESET.to_le_bytes()
    );
    // Only once.
    r.evt.chain(1, &[(0x38_1000, 8, true)]);
    r.kicks[2].write(1).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(r.evt.used().len(), 1);
    // Host connections go on from the saved port, once the guest took the reset in (it gave
    // the event buffer back above).
    let mut r = r;
    r.give_rx(2, 4096 + HDR_LEN as u32);
    let mut s = UnixStream::connect(&r.path).unwrap();
    s.write_all(b"CONNECT 9\n").unwrap();
    let (req, _) = r.recv();
    assert_eq!((req.op, req.src_port), (op::REQUEST, (1 << 30) + 5));
}

#[test]
fn a_snapshot_must_match_the_configuration() {
    let path = socket_path("vsock-mismatch");
    let e = Vsock::restore(
        (5, Backend::Unix(VsockSocket::bind(&path).unwrap())),
        &VsockState {
            guest_cid: 3,
            userspace: true,
            next_port: 0,
        },
    )
    .err()
    .unwrap();
    assert_eq!(
        e.to_string(),
        "vsock: the snapshot's guest has CID 3, the configuration 5"
    );
    let e = Vsock::restore(
        (3, Backend::Unix(VsockSocket::bind(&path).unwrap())),
        &VsockState {
            guest_cid: 3,
            userspace: false,
            next_port: 0,
        },
    )
    .err()
    .unwrap();
    assert_eq!(
        e.to_string(),
        "vsock: the snapshot used the vhost-vsock backend, the configuration userspace (uds-path)"
    );
}

#[test]
fn save_parks_the_queues_and_the_state_round_trips() {
    let m = Arc::new(mem());
    let mut r = rig(&m, "save");
    r.give_rx(2, 4096 + HDR_LEN as u32);
    r.dev.can_save().unwrap();
    let snap = VirtioDevice::save(&mut r.dev).unwrap();
    assert_eq!(snap.queues.len(), 3);
    // While parked, a host connection gets no REQUEST to the guest.
    let mut s = UnixStream::connect(&r.path).unwrap();
    s.write_all(b"CONNECT 9\n").unwrap();
    assert!(r.no_packet());
    r.dev.resume_after_save();
    assert_eq!(r.recv().0.op, op::REQUEST);
    let DeviceState::Vsock(state) = snap.device else {
        panic!("not a vsock state");
    };
    let json = serde_json::to_string(&state).unwrap();
    assert_eq!(serde_json::from_str::<VsockState>(&json).unwrap(), state);
    assert_eq!(
        state,
        VsockState {
            guest_cid: 3,
            userspace: true,
            next_port: 1 << 30,
        },
        "saved before any host connection"
    );
}

#[test]
fn the_device_describes_itself_and_cleans_up() {
    let m = Arc::new(mem());
    let r = rig(&m, "describe");
    assert_eq!(r.dev.device_type(), 19);
    assert_eq!(r.dev.queue_max_sizes(), &[QUEUE_SIZE; 3]);
    let mut cid = [0u8; 8];
    r.dev.read_config(0, &mut cid);
    assert_eq!(u64::from_le_bytes(cid), 3);
    assert!(eventually(|| thread_names().iter().any(|n| n == "vsock")));
    let path = r.path.clone();
    let mut s = UnixStream::connect(&path).unwrap();
    s.set_read_timeout(Some(SECOND)).unwrap();
    assert!(path.exists());
    drop(r);
    assert!(!path.exists(), "the socket is removed with the device");
    let mut b = [0u8; 1];
    assert_eq!(s.read(&mut b).unwrap_or(0), 0, "host clients are closed");
}

#[test]
fn a_device_reset_closes_every_connection() {
    let m = Arc::new(mem());
    let mut r = rig(&m, "reset");
    r.give_rx(4, 4096 + HDR_LEN as u32);
    let (mut s, _) = r.host_connect(52);
    r.dev.reset();
    let mut b = [0u8; 1];
    assert_eq!(s.read(&mut b).unwrap(), 0);
    assert!(eventually(|| r.dev.connections() == 0));
}
