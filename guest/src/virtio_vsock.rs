//! virtio-vsock driver (stream sockets) for a modern (version 2) virtio-mmio transport.
//!
//! The first transport whose DeviceID is 19 is the device. Three queues of [`QSIZE`] entries:
//! rx keeps [`RX_BUFS`] buffers of 4 KiB posted (header and payload in one descriptor), tx
//! sends from [`TX_SLOTS`] slots of 4 KiB (descriptor i is slot i; the rest are for malformed
//! chains), the event queue keeps [`EVT_BUFS`] 8-byte buffers posted for transport resets.
//!
//! Up to [`MAX_CONNS`] connections, each with an inbox of [`INBOX`] bytes: the `buf_alloc` the
//! host is told, so the host never sends more than the inbox holds; what the shell takes out
//! of it is the `fwd_cnt`. Sending respects the host's credit. Packets are handled whenever a
//! command waits ([`Driver::poll`]): data into inboxes, requests to listened ports accepted,
//! RSTs and SHUTDOWNs recorded, a transport reset (event queue) resets every connection.
//!
//! Only the boot CPU uses the driver (the shell runs one command at a time).

use core::cell::UnsafeCell;
use core::ptr::addr_of_mut;
use core::sync::atomic::{compiler_fence, Ordering};

use testkernel::virtq::{self, desc_flags, feature, status, Layout};

use crate::hostile::{self, Dir};
use crate::virtio_mmio::{self, reg};
use crate::vq::{Vq, Wait};
use crate::{cpu, interrupts};

/// virtio device id of a socket device.
pub const VSOCK_DEVICE_ID: u32 = 19;
/// Entries of each queue.
pub const QSIZE: u16 = 64;
/// Receive buffers kept posted (descriptors 0..RX_BUFS).
pub const RX_BUFS: u16 = 32;
/// Transmit slots (descriptors 0..TX_SLOTS; the rest are for malformed chains).
pub const TX_SLOTS: u16 = 32;
/// Event buffers kept posted.
pub const EVT_BUFS: u16 = 4;
/// Bytes per receive buffer and transmit slot.
pub const BUF: u64 = 4096;
/// The packet header.
pub const HDR: usize = 44;
/// Largest payload of one packet sent.
pub const MAX_SEND: usize = BUF as usize - HDR;
/// Connections at once.
pub const MAX_CONNS: usize = 8;
/// Bytes each connection buffers (its `buf_alloc`).
pub const INBOX: usize = 32 * 1024;
/// Listened ports.
pub const MAX_LISTEN: usize = 4;
/// Timer ticks (10 ms) a command waits without progress.
pub const TIMEOUT_TICKS: u64 = 1000;
/// Timer ticks a malformed chain is given.
pub const EVIL_TIMEOUT_TICKS: u64 = 200;
/// The host's CID.
pub const HOST_CID: u64 = 2;
/// First port of guest-initiated connections.
const FIRST_PORT: u32 = 49152;

/// Operations.
pub mod op {
    pub const REQUEST: u16 = 1;
    pub const RESPONSE: u16 = 2;
    pub const RST: u16 = 3;
    pub const SHUTDOWN: u16 = 4;
    pub const RW: u16 = 5;
    pub const CREDIT_UPDATE: u16 = 6;
    pub const CREDIT_REQUEST: u16 = 7;
}

/// SHUTDOWN flags.
pub const SHUT_RCV: u32 = 1;
pub const SHUT_SEND: u32 = 2;

const RXQ: u16 = 0;
const TXQ: u16 = 1;
const EVTQ: u16 = 2;
const QBYTES: u64 = Layout::new(QSIZE).total;
const RXBUF_OFF: u64 = 3 * QBYTES;
const TXBUF_OFF: u64 = RXBUF_OFF + BUF * RX_BUFS as u64;
const EVTBUF_OFF: u64 = TXBUF_OFF + BUF * TX_SLOTS as u64;
const SCRATCH_OFF: u64 = EVTBUF_OFF + 8 * EVT_BUFS as u64;
const INBOX_OFF: u64 = SCRATCH_OFF + 2 * BUF;
const REGION: u64 = INBOX_OFF + (INBOX * MAX_CONNS) as u64;

#[repr(C, align(4096))]
struct Mem([u8; REGION as usize]);

#[link_section = ".bss.noinit.virtio_vsock"]
static mut MEM: Mem = Mem([0; REGION as usize]);

fn base() -> u64 {
    addr_of_mut!(MEM) as u64
}

/// `len` bytes of the driver's memory at offset `off`.
fn bytes(off: u64, len: usize) -> &'static mut [u8] {
    assert!(off + len as u64 <= REGION);
    compiler_fence(Ordering::Acquire);
    // SAFETY: inside MEM (checked); the device is done with the buffer or not given it yet,
    // and commands run one at a time, so nothing else aliases it.
    unsafe { core::slice::from_raw_parts_mut((base() + off) as *mut u8, len) }
}

/// The packet header (virtio 1.x 5.10.6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hdr {
    pub src_cid: u64,
    pub dst_cid: u64,
    pub src_port: u32,
    pub dst_port: u32,
    pub len: u32,
    pub typ: u16,
    pub op: u16,
    pub flags: u32,
    pub buf_alloc: u32,
    pub fwd_cnt: u32,
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Hdr {
    fn parse(b: &[u8]) -> Self {
        Hdr {
            src_cid: u64::from(le32(b, 0)) | (u64::from(le32(b, 4)) << 32),
            dst_cid: u64::from(le32(b, 8)) | (u64::from(le32(b, 12)) << 32),
            src_port: le32(b, 16),
            dst_port: le32(b, 20),
            len: le32(b, 24),
            typ: u16::from_le_bytes([b[28], b[29]]),
            op: u16::from_le_bytes([b[30], b[31]]),
            flags: le32(b, 32),
            buf_alloc: le32(b, 36),
            fwd_cnt: le32(b, 40),
        }
    }

    fn write(&self, b: &mut [u8]) {
        b[0..8].copy_from_slice(&self.src_cid.to_le_bytes());
        b[8..16].copy_from_slice(&self.dst_cid.to_le_bytes());
        b[16..20].copy_from_slice(&self.src_port.to_le_bytes());
        b[20..24].copy_from_slice(&self.dst_port.to_le_bytes());
        b[24..28].copy_from_slice(&self.len.to_le_bytes());
        b[28..30].copy_from_slice(&self.typ.to_le_bytes());
        b[30..32].copy_from_slice(&self.op.to_le_bytes());
        b[32..36].copy_from_slice(&self.flags.to_le_bytes());
        b[36..40].copy_from_slice(&self.buf_alloc.to_le_bytes());
        b[40..44].copy_from_slice(&self.fwd_cnt.to_le_bytes());
    }
}

/// Where a connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    Free,
    /// REQUEST sent, no answer yet.
    Connecting,
    Established,
    /// The host reset it (or refused it).
    Reset,
    /// Closed by us (SHUTDOWN both sent, RST seen or given up).
    Closed,
}

/// One connection.
#[derive(Clone, Copy, Debug)]
pub struct Conn {
    pub state: ConnState,
    pub local_port: u32,
    pub peer_port: u32,
    /// Inbox ring: `head` is where the next byte is taken, `len` bytes wait.
    head: usize,
    pub len: usize,
    /// Bytes taken out of the inbox (our fwd_cnt), and the value last told the host.
    fwd_cnt: u32,
    fwd_told: u32,
    /// Bytes sent, and the host's last word on its buffer.
    tx_cnt: u32,
    peer_buf_alloc: u32,
    peer_fwd_cnt: u32,
    /// SHUTDOWN flags the host sent.
    pub peer_shut: u32,
}

const FREE: Conn = Conn {
    state: ConnState::Free,
    local_port: 0,
    peer_port: 0,
    head: 0,
    len: 0,
    fwd_cnt: 0,
    fwd_told: 0,
    tx_cnt: 0,
    peer_buf_alloc: 0,
    peer_fwd_cnt: 0,
    peer_shut: 0,
};

impl Conn {
    fn credit(&self) -> u32 {
        self.peer_buf_alloc
            .saturating_sub(self.tx_cnt.wrapping_sub(self.peer_fwd_cnt))
    }
}

/// Why a command failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VsockError {
    NoDevice,
    NotReady(&'static str),
    NoConn,
    TooMany,
    Refused,
    Reset,
    Timeout { done: u64 },
    NeedsReset,
}

/// Counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    pub rx_pkts: u64,
    pub tx_pkts: u64,
    pub resets: u64,
    pub dropped: u64,
}

pub struct Driver {
    pub present: bool,
    pub transport: usize,
    mmio: u64,
    pub cid: u64,
    pub features: u64,
    pub state: Result<(), &'static str>,
    pub counters: Counters,
    rx: Vq,
    tx: Vq,
    evt: Vq,
    free: [u16; TX_SLOTS as usize],
    nfree: usize,
    pub conns: [Conn; MAX_CONNS],
    listen: [u32; MAX_LISTEN],
    /// Connections accepted and not yet handed to `accept`.
    accepted: [bool; MAX_CONNS],
    next_port: u32,
}

struct Global(UnsafeCell<Driver>);

// SAFETY: the driver is only touched by the boot CPU outside interrupt handlers (boot, then
// the shell, one command at a time).
unsafe impl Sync for Global {}

const NO_VQ: Vq = Vq::new(0, 0, 0, 0, Layout::new(QSIZE));

static DRIVER: Global = Global(UnsafeCell::new(Driver {
    present: false,
    transport: 0,
    mmio: 0,
    cid: 0,
    features: 0,
    state: Err("absent"),
    counters: Counters {
        rx_pkts: 0,
        tx_pkts: 0,
        resets: 0,
        dropped: 0,
    },
    rx: NO_VQ,
    tx: NO_VQ,
    evt: NO_VQ,
    free: [0; TX_SLOTS as usize],
    nfree: 0,
    conns: [FREE; MAX_CONNS],
    listen: [0; MAX_LISTEN],
    accepted: [false; MAX_CONNS],
    next_port: FIRST_PORT,
}));

/// The driver (see `Global`: one user at a time; callers do not keep it across calls that
/// take it again).
pub fn driver() -> &'static mut Driver {
    // SAFETY: see `Global`.
    unsafe { &mut *DRIVER.0.get() }
}

/// Finds and starts the device. Boot CPU, once, with interrupts off.
pub fn init() {
    let drv = driver();
    for (t, dev) in virtio_mmio::devices().iter().enumerate() {
        if !virtio_mmio::present(t)
            || virtio_mmio::read(dev.base, reg::DEVICE_ID) != VSOCK_DEVICE_ID
        {
            continue;
        }
        drv.present = true;
        drv.transport = t;
        drv.mmio = dev.base;
        drv.state = if virtio_mmio::read(dev.base, reg::VERSION) != 2 {
            Err("legacy transport (version 1) not supported")
        } else {
            drv.start()
        };
        return;
    }
}

/// Restarts the device (after DEVICE_NEEDS_RESET, or to drop every connection).
pub fn reset() -> Result<(), VsockError> {
    let d = driver();
    if !d.present {
        return Err(VsockError::NoDevice);
    }
    d.state = d.start();
    d.state.map_err(VsockError::NotReady)
}

impl Driver {
    fn ready(&mut self) -> Result<(), VsockError> {
        if !self.present {
            return Err(VsockError::NoDevice);
        }
        self.state.map_err(VsockError::NotReady)
    }

    fn read_cid(&mut self) {
        let lo = virtio_mmio::read(self.mmio, reg::CONFIG);
        let hi = virtio_mmio::read(self.mmio, reg::CONFIG + 4);
        self.cid = (u64::from(hi) << 32) | u64::from(lo);
    }

    /// Resets the device and runs the virtio 1.x initialisation; posts every rx and event
    /// buffer. Every connection is forgotten.
    fn start(&mut self) -> Result<(), &'static str> {
        let b = self.mmio;
        self.features = 0;
        self.conns = [FREE; MAX_CONNS];
        self.accepted = [false; MAX_CONNS];
        let want = virtq::bit(feature::VERSION_1) | virtq::bit(feature::RING_EVENT_IDX);
        let acked = virtio_mmio::negotiate(b, |offered| {
            (offered & virtq::bit(feature::VERSION_1) != 0).then_some(offered & want)
        })?;
        self.features = acked;
        self.read_cid();
        let ev = acked & virtq::bit(feature::RING_EVENT_IDX) != 0;
        let t = self.transport;
        let region = base();
        self.rx = Vq::new(b, t, RXQ, region, Layout::new(QSIZE));
        self.tx = Vq::new(b, t, TXQ, region + QBYTES, Layout::new(QSIZE));
        self.evt = Vq::new(b, t, EVTQ, region + 2 * QBYTES, Layout::new(QSIZE));
        for q in [&mut self.rx, &mut self.tx, &mut self.evt] {
            if let Err(e) = q.setup(ev) {
                return Err(virtio_mmio::failed(b, e));
            }
        }
        virtio_mmio::driver_ok(b)?;
        for (i, slot) in self.free.iter_mut().enumerate() {
            *slot = i as u16;
        }
        self.nfree = TX_SLOTS as usize;
        for i in 0..RX_BUFS {
            self.post_rx(i);
        }
        for i in 0..EVT_BUFS {
            self.post_evt(i);
        }
        self.rx.want_interrupt();
        self.rx.notify();
        self.evt.want_interrupt();
        self.evt.notify();
        Ok(())
    }

    fn post_rx(&mut self, i: u16) {
        let addr = base() + RXBUF_OFF + BUF * u64::from(i);
        self.rx.desc(i, addr, BUF as u32, desc_flags::WRITE, 0);
        self.rx.publish(i);
    }

    fn post_evt(&mut self, i: u16) {
        let addr = base() + EVTBUF_OFF + 8 * u64::from(i);
        self.evt.desc(i, addr, 8, desc_flags::WRITE, 0);
        self.evt.publish(i);
    }

    fn needs_reset(&self) -> bool {
        virtio_mmio::read(self.mmio, reg::STATUS) & status::DEVICE_NEEDS_RESET != 0
    }

    /// A header from us on connection `c`, carrying our credit.
    fn hdr(&mut self, c: usize, op: u16) -> Hdr {
        let cid = self.cid;
        let conn = &mut self.conns[c];
        conn.fwd_told = conn.fwd_cnt;
        Hdr {
            src_cid: cid,
            dst_cid: HOST_CID,
            src_port: conn.local_port,
            dst_port: conn.peer_port,
            len: 0,
            typ: 1,
            op,
            flags: 0,
            buf_alloc: INBOX as u32,
            fwd_cnt: conn.fwd_cnt,
        }
    }

    /// Takes back every transmit slot the device has finished with.
    fn reclaim(&mut self) {
        while let Some((id, _)) = self.tx.take_used() {
            if id < u32::from(TX_SLOTS) && self.nfree < TX_SLOTS as usize {
                self.free[self.nfree] = id as u16;
                self.nfree += 1;
            }
        }
    }

    /// Sends one packet (header and payload in one slot), waiting for a free slot.
    fn send_pkt(&mut self, h: &Hdr, payload: &[u8]) -> Result<(), VsockError> {
        let start = interrupts::ticks();
        loop {
            self.reclaim();
            if self.nfree > 0 {
                break;
            }
            self.poll();
            if self.needs_reset() {
                return Err(VsockError::NeedsReset);
            }
            if interrupts::ticks().wrapping_sub(start) >= TIMEOUT_TICKS {
                return Err(VsockError::Timeout { done: 0 });
            }
            self.tx.want_interrupt();
            self.idle();
        }
        self.nfree -= 1;
        let slot = self.free[self.nfree];
        let off = TXBUF_OFF + BUF * u64::from(slot);
        let buf = bytes(off, HDR + payload.len());
        let mut h = *h;
        h.len = payload.len() as u32;
        h.write(&mut buf[..HDR]);
        buf[HDR..].copy_from_slice(payload);
        self.tx
            .desc(slot, base() + off, (HDR + payload.len()) as u32, 0, 0);
        let old = self.tx.next_avail;
        self.tx.publish(slot);
        self.tx.kick(old);
        self.counters.tx_pkts += 1;
        Ok(())
    }

    fn send_op(&mut self, c: usize, op: u16, flags: u32) -> Result<(), VsockError> {
        let mut h = self.hdr(c, op);
        h.flags = flags;
        self.send_pkt(&h, &[])
    }

    /// A reply to a packet of no connection.
    fn send_rst_for(&mut self, h: &Hdr) {
        let r = Hdr {
            src_cid: self.cid,
            dst_cid: HOST_CID,
            src_port: h.dst_port,
            dst_port: h.src_port,
            typ: 1,
            op: op::RST,
            ..Hdr::default()
        };
        let _ = self.send_pkt(&r, &[]);
    }

    /// Sleeps until an interrupt or the next timer tick.
    fn idle(&mut self) {
        self.rx.want_interrupt();
        self.evt.want_interrupt();
        cpu::cli();
        if self.rx.used_idx() == self.rx.last_used && self.evt.used_idx() == self.evt.last_used {
            cpu::sti_hlt();
        } else {
            cpu::sti();
        }
    }

    fn find(&self, local: u32, peer: u32) -> Option<usize> {
        self.conns.iter().position(|c| {
            c.state != ConnState::Free && c.local_port == local && c.peer_port == peer
        })
    }

    fn free_conn(&self) -> Option<usize> {
        self.conns.iter().position(|c| c.state == ConnState::Free)
    }

    /// Handles every packet and event the device has returned; re-posts their buffers.
    pub fn poll(&mut self) {
        while let Some((id, _)) = self.evt.take_used() {
            if id < u32::from(EVT_BUFS) {
                let ev = le32(bytes(EVTBUF_OFF + 8 * u64::from(id), 4), 0);
                if ev == 0 {
                    // VIRTIO_VSOCK_EVENT_TRANSPORT_RESET: every connection is gone.
                    self.counters.resets += 1;
                    for c in self.conns.iter_mut() {
                        if c.state != ConnState::Free {
                            c.state = ConnState::Reset;
                        }
                    }
                    self.read_cid();
                }
                let old = self.evt.next_avail;
                self.post_evt(id as u16);
                self.evt.kick(old);
            }
        }
        let mut reposted = false;
        let old = self.rx.next_avail;
        while let Some((id, len)) = self.rx.take_used() {
            if id >= u32::from(RX_BUFS) {
                continue;
            }
            let off = RXBUF_OFF + BUF * u64::from(id);
            if len as usize >= HDR && len as u64 <= BUF {
                let pkt = bytes(off, len as usize);
                let h = Hdr::parse(&pkt[..HDR]);
                let n = (len as usize - HDR).min(h.len as usize);
                self.counters.rx_pkts += 1;
                self.packet(&h, off + HDR as u64, n);
            }
            self.post_rx(id as u16);
            reposted = true;
        }
        if reposted {
            self.rx.kick(old);
        }
    }

    /// One packet from the host; its payload is `n` bytes at offset `payload`.
    fn packet(&mut self, h: &Hdr, payload: u64, n: usize) {
        if h.dst_cid != self.cid || h.src_cid != HOST_CID || h.typ != 1 {
            self.counters.dropped += 1;
            return;
        }
        let Some(c) = self.find(h.dst_port, h.src_port) else {
            if h.op == op::REQUEST && self.listen.contains(&h.dst_port) && h.dst_port != 0 {
                if let Some(c) = self.free_conn() {
                    self.conns[c] = Conn {
                        state: ConnState::Established,
                        local_port: h.dst_port,
                        peer_port: h.src_port,
                        peer_buf_alloc: h.buf_alloc,
                        peer_fwd_cnt: h.fwd_cnt,
                        ..FREE
                    };
                    self.accepted[c] = true;
                    let _ = self.send_op(c, op::RESPONSE, 0);
                    return;
                }
            }
            if h.op != op::RST {
                self.send_rst_for(h);
            }
            return;
        };
        let conn = &mut self.conns[c];
        conn.peer_buf_alloc = h.buf_alloc;
        conn.peer_fwd_cnt = h.fwd_cnt;
        match h.op {
            op::RESPONSE if conn.state == ConnState::Connecting => {
                conn.state = ConnState::Established;
            }
            op::RST => conn.state = ConnState::Reset,
            op::RW => {
                if n > INBOX - conn.len {
                    // The host wrote past the credit it was given.
                    conn.state = ConnState::Reset;
                    let _ = self.send_op(c, op::RST, 0);
                    return;
                }
                let inbox = INBOX_OFF + (INBOX * c) as u64;
                let src = bytes(payload, n);
                let mut at = (conn.head + conn.len) % INBOX;
                let mut done = 0;
                while done < n {
                    let k = (n - done).min(INBOX - at);
                    bytes(inbox + at as u64, k).copy_from_slice(&src[done..done + k]);
                    done += k;
                    at = (at + k) % INBOX;
                }
                conn.len += n;
            }
            op::SHUTDOWN => {
                conn.peer_shut |= h.flags & (SHUT_RCV | SHUT_SEND);
                if conn.peer_shut == SHUT_RCV | SHUT_SEND {
                    // The host is finished both ways: our RST ends it (what is in the inbox
                    // can still be read).
                    let _ = self.send_op(c, op::RST, 0);
                    self.conns[c].state = ConnState::Closed;
                }
            }
            op::CREDIT_UPDATE => {}
            op::CREDIT_REQUEST => {
                let _ = self.send_op(c, op::CREDIT_UPDATE, 0);
            }
            _ => {}
        }
    }

    /// Waits until `done` holds, handling packets; `Timeout` after TIMEOUT_TICKS without it.
    fn wait(&mut self, mut done: impl FnMut(&Driver) -> bool) -> Result<(), VsockError> {
        let start = interrupts::ticks();
        loop {
            self.poll();
            if done(self) {
                return Ok(());
            }
            if self.needs_reset() {
                return Err(VsockError::NeedsReset);
            }
            if interrupts::ticks().wrapping_sub(start) >= TIMEOUT_TICKS {
                return Err(VsockError::Timeout { done: 0 });
            }
            self.idle();
        }
    }

    fn conn(&self, c: usize) -> Result<(), VsockError> {
        match self.conns.get(c).map(|x| x.state) {
            None | Some(ConnState::Free) => Err(VsockError::NoConn),
            Some(_) => Ok(()),
        }
    }

    /// Takes up to `buf.len()` bytes out of connection `c`'s inbox; tells the host of the room
    /// when half the inbox was taken since it last heard.
    fn take(&mut self, c: usize, buf: &mut [u8]) -> usize {
        let conn = &mut self.conns[c];
        let n = buf.len().min(conn.len);
        let inbox = INBOX_OFF + (INBOX * c) as u64;
        let mut done = 0;
        while done < n {
            let k = (n - done).min(INBOX - conn.head);
            buf[done..done + k].copy_from_slice(bytes(inbox + conn.head as u64, k));
            conn.head = (conn.head + k) % INBOX;
            done += k;
        }
        conn.len -= n;
        conn.fwd_cnt = conn.fwd_cnt.wrapping_add(n as u32);
        if conn.fwd_cnt.wrapping_sub(conn.fwd_told) as usize >= INBOX / 2
            && conn.state == ConnState::Established
        {
            let _ = self.send_op(c, op::CREDIT_UPDATE, 0);
        }
        n
    }
}

/// Connects to host port `port`; returns the connection.
pub fn connect(port: u32) -> Result<usize, VsockError> {
    let d = driver();
    d.ready()?;
    d.poll();
    let c = d.free_conn().ok_or(VsockError::TooMany)?;
    let local = d.next_port;
    d.next_port = if d.next_port == u32::MAX {
        FIRST_PORT
    } else {
        d.next_port + 1
    };
    d.conns[c] = Conn {
        state: ConnState::Connecting,
        local_port: local,
        peer_port: port,
        ..FREE
    };
    d.send_op(c, op::REQUEST, 0)?;
    let r = d.wait(|d| d.conns[c].state != ConnState::Connecting);
    match (r, d.conns[c].state) {
        (_, ConnState::Established) => Ok(c),
        (Ok(()), _) => {
            d.conns[c] = FREE;
            Err(VsockError::Refused)
        }
        (Err(e), _) => {
            d.conns[c] = FREE;
            Err(e)
        }
    }
}

/// Accepts host connections to `port` from now on.
pub fn listen(port: u32) -> Result<(), VsockError> {
    let d = driver();
    d.ready()?;
    if d.listen.contains(&port) {
        return Ok(());
    }
    let slot = d
        .listen
        .iter()
        .position(|&p| p == 0)
        .ok_or(VsockError::TooMany)?;
    d.listen[slot] = port;
    Ok(())
}

/// Waits for a host connection to a listened `port`; returns it.
pub fn accept(port: u32) -> Result<usize, VsockError> {
    let d = driver();
    d.ready()?;
    let pick =
        |d: &Driver| (0..MAX_CONNS).find(|&c| d.accepted[c] && d.conns[c].local_port == port);
    d.wait(|d| pick(d).is_some())?;
    let c = pick(d).ok_or(VsockError::NoConn)?;
    d.accepted[c] = false;
    Ok(c)
}

/// Sends `len` bytes of the stream pattern of `seed` on `c`, within the host's credit.
pub fn send(c: usize, len: u64, seed: u64) -> Result<(), VsockError> {
    let d = driver();
    d.ready()?;
    d.conn(c)?;
    let mut buf = [0u8; MAX_SEND];
    let mut sent = 0u64;
    while sent < len {
        let mut r = Ok(());
        if d.conns[c].credit() == 0 {
            r = d.wait(|d| d.conns[c].credit() > 0 || d.conns[c].state != ConnState::Established);
        }
        if d.conns[c].state != ConnState::Established {
            return Err(VsockError::Reset);
        }
        r.map_err(|e| match e {
            VsockError::Timeout { .. } => VsockError::Timeout { done: sent },
            e => e,
        })?;
        let n = ((len - sent) as usize)
            .min(MAX_SEND)
            .min(d.conns[c].credit() as usize);
        crate::virtio_console::fill_pattern(&mut buf[..n], sent, seed);
        let h = d.hdr(c, op::RW);
        d.send_pkt(&h, &buf[..n])?;
        d.conns[c].tx_cnt = d.conns[c].tx_cnt.wrapping_add(n as u32);
        sent += n as u64;
        d.poll();
    }
    Ok(())
}

/// Receives up to `len` bytes on `c` (fewer if the host stops sending), handing each piece
/// to `each`; returns how many.
pub fn recv(c: usize, len: u64, mut each: impl FnMut(&[u8])) -> Result<u64, VsockError> {
    let d = driver();
    d.ready()?;
    d.conn(c)?;
    let mut buf = [0u8; 4096];
    let mut got = 0u64;
    while got < len {
        let want = ((len - got) as usize).min(buf.len());
        let n = d.take(c, &mut buf[..want]);
        if n > 0 {
            each(&buf[..n]);
            got += n as u64;
            continue;
        }
        let conn = d.conns[c];
        if conn.peer_shut & SHUT_SEND != 0 || conn.state != ConnState::Established {
            break;
        }
        d.wait(|d| {
            let x = d.conns[c];
            x.len > 0 || x.peer_shut & SHUT_SEND != 0 || x.state != ConnState::Established
        })
        .map_err(|e| match e {
            VsockError::Timeout { .. } => VsockError::Timeout { done: got },
            e => e,
        })?;
    }
    Ok(got)
}

/// Receives `len` bytes on `c` and sends each piece back.
pub fn echo(c: usize, len: u64) -> Result<u64, VsockError> {
    let d = driver();
    d.ready()?;
    d.conn(c)?;
    let mut buf = [0u8; MAX_SEND];
    let mut done = 0u64;
    while done < len {
        let want = ((len - done) as usize).min(buf.len());
        let n = d.take(c, &mut buf[..want]);
        if n == 0 {
            let x = d.conns[c];
            if x.peer_shut & SHUT_SEND != 0 || x.state != ConnState::Established {
                break;
            }
            d.wait(|d| {
                let x = d.conns[c];
                x.len > 0 || x.peer_shut & SHUT_SEND != 0 || x.state != ConnState::Established
            })
            .map_err(|_| VsockError::Timeout { done })?;
            continue;
        }
        let mut off = 0;
        while off < n {
            if d.conns[c].credit() == 0 {
                d.wait(|d| d.conns[c].credit() > 0 || d.conns[c].state != ConnState::Established)
                    .map_err(|_| VsockError::Timeout { done })?;
            }
            if d.conns[c].state != ConnState::Established {
                return Err(VsockError::Reset);
            }
            let k = (n - off).min(d.conns[c].credit() as usize);
            let h = d.hdr(c, op::RW);
            d.send_pkt(&h, &buf[off..off + k])?;
            d.conns[c].tx_cnt = d.conns[c].tx_cnt.wrapping_add(k as u32);
            off += k;
        }
        done += n as u64;
    }
    Ok(done)
}

/// SHUTDOWN with `flags` on `c`.
pub fn shutdown(c: usize, flags: u32) -> Result<(), VsockError> {
    let d = driver();
    d.ready()?;
    d.conn(c)?;
    d.send_op(c, op::SHUTDOWN, flags)
}

/// Closes `c`: SHUTDOWN both ways, then waits for the host's RST; the slot is free after.
pub fn close(c: usize) -> Result<(), VsockError> {
    let d = driver();
    d.ready()?;
    d.conn(c)?;
    let r = if d.conns[c].state == ConnState::Established {
        d.send_op(c, op::SHUTDOWN, SHUT_RCV | SHUT_SEND)?;
        d.wait(|d| d.conns[c].state != ConnState::Established)
    } else {
        Ok(())
    };
    d.conns[c] = FREE;
    d.accepted[c] = false;
    r
}

/// A copy of connection `c`, after handling what arrived.
pub fn conn(c: usize) -> Result<Conn, VsockError> {
    let d = driver();
    d.ready()?;
    d.poll();
    d.conn(c)?;
    Ok(d.conns[c])
}

/// The malformed chains and packets of `vsock evil`: the generic chains on the tx queue, and
/// protocol violations on connection `c` (which should be reset, and nothing else).
pub const EVIL_CASES: &[(&str, &str)] = &[
    ("short", "a tx chain of 20 bytes, shorter than a header"),
    (
        "badcid",
        "an RW packet on the connection with a wrong source CID",
    ),
    (
        "badtype",
        "a packet on the connection of type 2 (seqpacket)",
    ),
    ("unknownop", "a packet on the connection with operation 42"),
    (
        "lenpast",
        "an RW header saying 4000 bytes in a 100-byte chain",
    ),
    (
        "overcredit",
        "RW packets past the credit the host gave (to a host that does not read)",
    ),
];

/// What `overcredit` sends at most, ignoring the host's credit.
const OVERCREDIT_BYTES: usize = 2 << 20;

/// How a malformed chain ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvilOutcome {
    /// The device returned the chain (with this length) and goes on.
    Used(u32),
    /// The device set DEVICE_NEEDS_RESET.
    NeedsReset,
    /// Nothing within the time allowed.
    Timeout,
    /// The connection was reset by the host (what a protocol violation gets).
    ConnReset,
    /// The connection still stands.
    ConnAlive,
}

/// Runs case `case` (a generic one of [`hostile::CASES`] or one of [`EVIL_CASES`], on
/// connection `c` where it needs one). None for an unknown case.
pub fn evil(case: &str, c: usize) -> Option<Result<EvilOutcome, VsockError>> {
    let d = driver();
    if let Err(e) = d.ready() {
        return Some(Err(e));
    }
    d.reclaim();
    if d.nfree < TX_SLOTS as usize {
        // Drain the transmit queue first so that only the malformed chain is outstanding.
        let r = d.wait(|d| d.tx.used_idx() == d.tx.next_avail);
        d.reclaim();
        if let Err(e) = r {
            return Some(Err(e));
        }
    }
    let scratch = base() + SCRATCH_OFF;
    if hostile::CASES.iter().any(|(n, _)| *n == case) {
        let buf = bytes(SCRATCH_OFF, HDR);
        Hdr {
            src_cid: d.cid,
            dst_cid: HOST_CID,
            typ: 1,
            op: op::CREDIT_REQUEST,
            ..Hdr::default()
        }
        .write(buf);
        hostile::post(
            &mut d.tx,
            case,
            TX_SLOTS,
            scratch,
            HDR as u32,
            Dir::DeviceReads,
        )?;
        d.tx.notify();
        let outcome = match d.tx.wait_used(EVIL_TIMEOUT_TICKS) {
            Wait::Used(_, len) => EvilOutcome::Used(len),
            Wait::NeedsReset => EvilOutcome::NeedsReset,
            Wait::Timeout => EvilOutcome::Timeout,
        };
        d.reclaim();
        return Some(Ok(outcome));
    }
    if !EVIL_CASES.iter().any(|(n, _)| *n == case) {
        return None;
    }
    if case == "short" {
        bytes(SCRATCH_OFF, 20).fill(0x5a);
        d.tx.desc(TX_SLOTS, scratch, 20, 0, 0);
        let old = d.tx.next_avail;
        d.tx.publish(TX_SLOTS);
        d.tx.kick(old);
        let outcome = match d.tx.wait_used(EVIL_TIMEOUT_TICKS) {
            Wait::Used(_, len) => EvilOutcome::Used(len),
            Wait::NeedsReset => EvilOutcome::NeedsReset,
            Wait::Timeout => EvilOutcome::Timeout,
        };
        return Some(Ok(outcome));
    }
    if let Err(e) = d.conn(c) {
        return Some(Err(e));
    }
    const PAYLOAD: usize = 100;
    let mut h = d.hdr(c, op::RW);
    match case {
        "badcid" => h.src_cid = d.cid + 1,
        "badtype" => h.typ = 2,
        "unknownop" => h.op = 42,
        "lenpast" => {}
        // Past the host's credit: its whole buffer and one byte, in packets of its own.
        "overcredit" => {}
        _ => return None,
    }
    if case == "overcredit" {
        // Ignoring the credit: as much as the host's buffer, its socket's and more, until the
        // host resets the connection (a host that reads keeps up, and nothing happens).
        let mut left = OVERCREDIT_BYTES;
        let zeros = [0u8; MAX_SEND];
        while left > 0 && d.conns[c].state == ConnState::Established {
            let n = left.min(MAX_SEND);
            let hh = d.hdr(c, op::RW);
            if let Err(e) = d.send_pkt(&hh, &zeros[..n]) {
                return Some(Err(e));
            }
            d.conns[c].tx_cnt = d.conns[c].tx_cnt.wrapping_add(n as u32);
            left -= n;
            d.poll();
        }
    } else {
        // The payload is there; `lenpast` says more than there is.
        h.len = if case == "lenpast" {
            4000
        } else {
            PAYLOAD as u32
        };
        let chain_len = HDR + PAYLOAD;
        let buf = bytes(SCRATCH_OFF, chain_len);
        h.write(&mut buf[..HDR]);
        buf[HDR..].fill(0xa5);
        d.tx.desc(TX_SLOTS, scratch, chain_len as u32, 0, 0);
        let old = d.tx.next_avail;
        d.tx.publish(TX_SLOTS);
        d.tx.kick(old);
    }
    let r = d.wait(|d| d.conns[c].state != ConnState::Established);
    d.reclaim();
    Some(match r {
        Ok(()) => Ok(EvilOutcome::ConnReset),
        Err(VsockError::Timeout { .. }) => Ok(EvilOutcome::ConnAlive),
        Err(e) => Err(e),
    })
}
