//! virtio-net driver for modern (version 2) virtio-mmio transports.
//!
//! Every transport whose DeviceID is 1 is a NIC, named `eth0`, `eth1` in command-line order.
//! Each gets a receive and a transmit queue of 128 entries, 128 receive buffers of 2 KiB (one
//! descriptor each, descriptor i is buffer i, always all posted) and 64 transmit slots of
//! 2 KiB (descriptor i is slot i), in kernel memory (`.bss.noinit`, below 32 MiB). Frames are
//! whole (no offloads are negotiated); the 12-byte virtio-net header before each is zero on
//! transmit and read for `num_buffers` on receive.
//!
//! Features taken: VERSION_1, MAC, STATUS, MRG_RXBUF (unless `virtio_net.mrg_rxbuf=0`) and
//! RING_EVENT_IDX (unless `virtio_net.event_idx=0`). The link state is read from the
//! configuration space at start and on every configuration interrupt (hot-plug).
//!
//! Only the boot CPU uses the driver (the shell, one command at a time); the interrupt handler
//! only counts and re-reads the link.

use core::cell::UnsafeCell;
use core::ptr::addr_of_mut;
use core::sync::atomic::{compiler_fence, AtomicU32, AtomicU8, Ordering};

use testkernel::cmdline;
use testkernel::fixedvec::FixedVec;
use testkernel::netframe;
use testkernel::virtq::{self, desc_flags, feature, net_feature, Layout, NET_HDR_LEN};

use crate::hostile::{self, Dir};
use crate::interrupts;
use crate::virtio_mmio::{self, reg};
use crate::vq::{Vq, Wait};

/// virtio device id of a network card.
pub const NET_DEVICE_ID: u32 = 1;
/// Most NICs driven (eth0, eth1).
pub const MAX_NICS: usize = 2;
/// Entries of each queue.
pub const QSIZE: u16 = 128;
/// Transmit slots (descriptors 0..TX_SLOTS; the rest are for malformed chains).
pub const TX_SLOTS: u16 = 64;
/// Bytes per receive buffer and transmit slot.
pub const BUF: u64 = 2048;
/// Timer ticks (10 ms) a transmit may wait for room.
pub const TIMEOUT_TICKS: u64 = 1000;
/// Timer ticks a malformed chain is given.
pub const EVIL_TIMEOUT_TICKS: u64 = 200;

const RX: u16 = 0;
const TX: u16 = 1;
const QBYTES: u64 = Layout::new(QSIZE).total;
const RXQ_OFF: u64 = 0;
const TXQ_OFF: u64 = QBYTES;
const RXBUF_OFF: u64 = 2 * QBYTES;
const TXBUF_OFF: u64 = RXBUF_OFF + BUF * QSIZE as u64;
const SCRATCH_OFF: u64 = TXBUF_OFF + BUF * TX_SLOTS as u64;
const REGION: u64 = SCRATCH_OFF + 8192;

#[repr(C, align(4096))]
struct Mem([u8; REGION as usize * MAX_NICS]);

#[link_section = ".bss.noinit.virtio_net"]
static mut MEM: Mem = Mem([0; REGION as usize * MAX_NICS]);

fn mem_base() -> u64 {
    addr_of_mut!(MEM) as u64
}

/// Whether `[addr, addr + len)` lies in the driver's memory.
fn owned(addr: u64, len: u64) -> bool {
    addr >= mem_base() && addr + len <= mem_base() + REGION * MAX_NICS as u64
}

fn put<T: Copy>(addr: u64, v: T) {
    assert!(owned(addr, core::mem::size_of::<T>() as u64));
    // SAFETY: the range lies in MEM (checked), kernel memory only this driver and its devices
    // use; T is an integer and unaligned writes are fine on x86.
    unsafe { core::ptr::write_unaligned(addr as *mut T, v) }
}

fn get<T: Copy>(addr: u64) -> T {
    assert!(owned(addr, core::mem::size_of::<T>() as u64));
    // SAFETY: as for `put`; integers have no invalid bit patterns.
    unsafe { core::ptr::read_unaligned(addr as *const T) }
}

/// `len` bytes of the driver's memory at `addr`, for building or checking a frame.
fn bytes(addr: u64, len: usize) -> &'static mut [u8] {
    assert!(owned(addr, len as u64));
    compiler_fence(Ordering::Acquire);
    // SAFETY: in MEM (checked); the device is done with the buffer (its used entry was taken)
    // or has not been given it yet, and commands run one at a time, so nothing else aliases it.
    unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, len) }
}

/// What state a NIC's driver is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Ready,
    /// The device set DEVICE_NEEDS_RESET.
    NeedsReset,
    /// A request timed out; the device may still own buffers.
    Stale,
    Failed(&'static str),
}

/// Why a command failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetError {
    NoNic,
    NotReady(State),
    Timeout,
    NeedsReset,
    BadLength,
}

/// Counters of one NIC.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    pub rx_frames: u64,
    pub tx_frames: u64,
}

/// One NIC.
#[derive(Clone, Copy, Debug)]
pub struct Nic {
    pub transport: usize,
    pub base: u64,
    pub irq: u32,
    pub version: u32,
    pub mac: [u8; 6],
    pub features: u64,
    pub state: State,
    pub counters: Counters,
    region: u64,
    rx: Vq,
    tx: Vq,
    /// Free transmit slots.
    free: [u16; TX_SLOTS as usize],
    nfree: usize,
}

struct Driver {
    nics: FixedVec<Nic, MAX_NICS>,
    event_idx: bool,
    mrg_rxbuf: bool,
}

struct Global(UnsafeCell<Driver>);

// SAFETY: the driver state is only touched by the boot CPU outside interrupt handlers (boot,
// then the shell, one command at a time); the interrupt handler only uses the atomics below.
unsafe impl Sync for Global {}

const NO_VQ: Vq = Vq::new(0, 0, 0, 0, Layout::new(QSIZE));
const NO_NIC: Nic = Nic {
    transport: 0,
    base: 0,
    irq: 0,
    version: 0,
    mac: [0; 6],
    features: 0,
    state: State::Failed("absent"),
    counters: Counters {
        rx_frames: 0,
        tx_frames: 0,
    },
    region: 0,
    rx: NO_VQ,
    tx: NO_VQ,
    free: [0; TX_SLOTS as usize],
    nfree: 0,
};

static DRIVER: Global = Global(UnsafeCell::new(Driver {
    nics: FixedVec::new(NO_NIC),
    event_idx: true,
    mrg_rxbuf: true,
}));

const MAX_TRANSPORTS: usize = cmdline::MAX_VIRTIO_MMIO;
const NOT_A_NIC: u8 = 0xff;

/// NIC index of each transport (NOT_A_NIC for other devices).
static NIC_OF: [AtomicU8; MAX_TRANSPORTS] = [const { AtomicU8::new(NOT_A_NIC) }; MAX_TRANSPORTS];
/// The config space's status as last read (bit 0: link up).
static LINK: [AtomicU8; MAX_NICS] = [const { AtomicU8::new(0) }; MAX_NICS];
/// ConfigGeneration that went with it.
static GENERATION: [AtomicU32; MAX_NICS] = [const { AtomicU32::new(0) }; MAX_NICS];

fn driver() -> &'static mut Driver {
    // SAFETY: see `Global`: one user at a time, and callers do not keep the reference across
    // calls that take it again.
    unsafe { &mut *DRIVER.0.get() }
}

fn read_link(index: usize, base: u64) {
    for _ in 0..16 {
        let before = virtio_mmio::read(base, reg::CONFIG_GENERATION);
        let st = virtio_mmio::read(base, reg::CONFIG + 4) >> 16;
        let after = virtio_mmio::read(base, reg::CONFIG_GENERATION);
        if before == after {
            LINK[index].store(st as u8, Ordering::Relaxed);
            GENERATION[index].store(after, Ordering::Relaxed);
            return;
        }
    }
}

/// Configuration-change interrupt of `transport` (interrupt context): re-reads the link of a
/// NIC.
pub fn on_config_change(transport: usize) {
    let Some(index) = NIC_OF.get(transport).map(|n| n.load(Ordering::Relaxed)) else {
        return;
    };
    if index == NOT_A_NIC {
        return;
    }
    if let Some(dev) = virtio_mmio::devices().get(transport) {
        read_link(usize::from(index), dev.base);
    }
}

/// Whether NIC `index` had its link up when last read.
pub fn link_up(index: usize) -> bool {
    LINK.get(index)
        .is_some_and(|l| l.load(Ordering::Relaxed) & 1 != 0)
}

/// ConfigGeneration seen with [`link_up`].
pub fn generation(index: usize) -> u32 {
    GENERATION
        .get(index)
        .map_or(0, |g| g.load(Ordering::Relaxed))
}

/// Finds and starts every virtio-net device. Boot CPU, once, with interrupts off.
pub fn init(cmdline_text: &[u8]) {
    let drv = driver();
    let off = |name: &[u8]| {
        cmdline::params(cmdline_text).any(|(n, v)| cmdline::name_eq(n, name) && v == Some(b"0"))
    };
    drv.event_idx = !off(b"virtio_net.event_idx");
    drv.mrg_rxbuf = !off(b"virtio_net.mrg_rxbuf");
    for (t, dev) in virtio_mmio::devices().iter().enumerate() {
        if !virtio_mmio::present(t) || virtio_mmio::read(dev.base, reg::DEVICE_ID) != NET_DEVICE_ID
        {
            continue;
        }
        let index = drv.nics.len();
        if index == MAX_NICS {
            break;
        }
        let region = mem_base() + REGION * index as u64;
        let mut nic = Nic {
            transport: t,
            base: dev.base,
            irq: dev.irq,
            version: virtio_mmio::read(dev.base, reg::VERSION),
            region,
            rx: Vq::new(dev.base, t, RX, region + RXQ_OFF, Layout::new(QSIZE)),
            tx: Vq::new(dev.base, t, TX, region + TXQ_OFF, Layout::new(QSIZE)),
            ..NO_NIC
        };
        nic.state = if nic.version != 2 {
            State::Failed("legacy transport (version 1) not supported")
        } else {
            match nic.start(index, drv.event_idx, drv.mrg_rxbuf, true) {
                Ok(()) => State::Ready,
                Err(e) => State::Failed(e),
            }
        };
        NIC_OF[t].store(index as u8, Ordering::Relaxed);
        let _ = drv.nics.push(nic);
    }
}

/// Number of NICs.
pub fn count() -> usize {
    driver().nics.len()
}

/// A copy of NIC `index`.
pub fn nic(index: usize) -> Option<Nic> {
    driver().nics.as_slice().get(index).copied()
}

fn nic_mut(index: usize) -> Result<&'static mut Nic, NetError> {
    driver()
        .nics
        .as_mut_slice()
        .get_mut(index)
        .ok_or(NetError::NoNic)
}

impl Nic {
    fn rx_buf(&self, i: u16) -> u64 {
        self.region + RXBUF_OFF + BUF * u64::from(i)
    }

    fn tx_buf(&self, i: u16) -> u64 {
        self.region + TXBUF_OFF + BUF * u64::from(i)
    }

    fn scratch(&self) -> u64 {
        self.region + SCRATCH_OFF
    }

    /// The device's Status register.
    pub fn device_status(&self) -> u32 {
        virtio_mmio::read(self.base, reg::STATUS)
    }

    /// Whether the driver accepted feature bit `n`.
    pub fn has(&self, n: u32) -> bool {
        self.features & virtq::bit(n) != 0
    }

    fn ready(&self) -> Result<(), NetError> {
        match self.state {
            State::Ready => Ok(()),
            s => Err(NetError::NotReady(s)),
        }
    }

    /// Resets the device and runs the virtio 1.x initialisation (3.1.1): features, MAC and
    /// link, both queues, DRIVER_OK; then posts every receive buffer if `post_rx`.
    fn start(
        &mut self,
        index: usize,
        event_idx: bool,
        mrg_rxbuf: bool,
        post_rx: bool,
    ) -> Result<(), &'static str> {
        let b = self.base;
        self.features = 0;
        let acked = virtio_mmio::negotiate(b, |offered| {
            virtq::negotiate_net(offered, event_idx, mrg_rxbuf)
        })?;
        self.features = acked;
        if self.has(net_feature::MAC) {
            let lo = virtio_mmio::read(b, reg::CONFIG).to_le_bytes();
            let hi = virtio_mmio::read(b, reg::CONFIG + 4).to_le_bytes();
            self.mac = [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1]];
        }
        let ev = self.has(feature::RING_EVENT_IDX);
        self.rx.setup(ev).map_err(|e| virtio_mmio::failed(b, e))?;
        self.tx.setup(ev).map_err(|e| virtio_mmio::failed(b, e))?;
        virtio_mmio::driver_ok(b)?;
        read_link(index, b);
        for (i, slot) in self.free.iter_mut().enumerate() {
            *slot = i as u16;
        }
        self.nfree = TX_SLOTS as usize;
        if post_rx {
            for i in 0..QSIZE {
                self.post_rx(i);
            }
            self.rx.want_interrupt();
            self.rx.notify();
        }
        Ok(())
    }

    fn post_rx(&mut self, i: u16) {
        self.rx
            .desc(i, self.rx_buf(i), BUF as u32, desc_flags::WRITE, 0);
        self.rx.publish(i);
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

    /// A free transmit slot, waiting for the device to finish one if need be.
    fn slot(&mut self) -> Result<u16, NetError> {
        self.reclaim();
        while self.nfree == 0 {
            match self.tx.wait_used(TIMEOUT_TICKS) {
                Wait::Used(id, _) => {
                    if id < u32::from(TX_SLOTS) {
                        self.free[0] = id as u16;
                        self.nfree = 1;
                    }
                }
                Wait::NeedsReset => {
                    self.state = State::NeedsReset;
                    return Err(NetError::NeedsReset);
                }
                Wait::Timeout => {
                    self.state = State::Stale;
                    return Err(NetError::Timeout);
                }
            }
            self.reclaim();
        }
        self.nfree -= 1;
        Ok(self.free[self.nfree])
    }

    /// Waits until the device has taken every transmit slot back.
    fn drain_tx(&mut self) -> Result<(), NetError> {
        self.reclaim();
        while self.nfree < TX_SLOTS as usize {
            match self.tx.wait_used(TIMEOUT_TICKS) {
                Wait::Used(id, _) => {
                    if id < u32::from(TX_SLOTS) {
                        self.free[self.nfree] = id as u16;
                        self.nfree += 1;
                    }
                }
                Wait::NeedsReset => {
                    self.state = State::NeedsReset;
                    return Err(NetError::NeedsReset);
                }
                Wait::Timeout => {
                    self.state = State::Stale;
                    return Err(NetError::Timeout);
                }
            }
        }
        Ok(())
    }

    /// Sends `count` test frames of `len` bytes (`seed`, numbered from 0) to `dst`, `batch` per
    /// notification; returns once the device has taken them all.
    fn send(
        &mut self,
        count: u64,
        len: usize,
        seed: u8,
        dst: [u8; 6],
        batch: u64,
    ) -> Result<u64, NetError> {
        self.ready()?;
        if !(netframe::MIN_FRAME..=netframe::MAX_FRAME).contains(&len) {
            return Err(NetError::BadLength);
        }
        let mut built = [false; TX_SLOTS as usize];
        let mut old = self.tx.next_avail;
        for seq in 0..count {
            let slot = self.slot()?;
            let buf = self.tx_buf(slot);
            let frame = bytes(buf + NET_HDR_LEN as u64, len);
            // Built once per slot; later frames only get their number and data again.
            if built[usize::from(slot)] {
                netframe::renumber(frame, seed, seq as u32);
            } else {
                bytes(buf, NET_HDR_LEN).fill(0);
                netframe::fill(frame, dst, self.mac, seed, seq as u32);
                built[usize::from(slot)] = true;
            }
            self.tx.desc(slot, buf, (NET_HDR_LEN + len) as u32, 0, 0);
            self.tx.publish(slot);
            if (seq + 1) % batch == 0 || self.nfree == 0 {
                self.tx.kick(old);
                old = self.tx.next_avail;
            }
        }
        self.tx.kick(old);
        self.drain_tx()?;
        self.counters.tx_frames += count;
        Ok(count)
    }
}

/// `net send`: `count` frames of `len` bytes.
pub fn send(index: usize, count: u64, len: usize, seed: u8) -> Result<u64, NetError> {
    nic_mut(index)?.send(count, len, seed, netframe::BROADCAST, 1)
}

/// `net bench tx`: `count` frames of `len` bytes, 32 per notification. Returns the ticks taken.
pub fn bench_tx(index: usize, count: u64, len: usize) -> Result<u64, NetError> {
    let n = nic_mut(index)?;
    let start = interrupts::ticks();
    n.send(count, len, 0, netframe::BROADCAST, 32)?;
    Ok(interrupts::ticks() - start)
}

/// What `net recv` saw.
#[derive(Clone, Copy, Debug, Default)]
pub struct Received {
    /// Test frames (of the expected seed when checked).
    pub frames: u64,
    pub bytes: u64,
    /// Test frames whose data was wrong.
    pub bad: u64,
    /// Frames of another EtherType.
    pub other: u64,
    /// Sequence numbers skipped (frames missing between two received ones).
    pub lost: u64,
    /// Frames that came in more than one buffer (num_buffers > 1).
    pub merged: u64,
    pub first: Option<u32>,
    pub last: u32,
    /// Ticks from the first to the last test frame.
    pub ticks: u64,
}

/// Receives until `count` test frames came or `timeout` ticks passed; checks their data
/// against `seed` when given.
pub fn recv(
    index: usize,
    count: u64,
    timeout: u64,
    seed: Option<u8>,
) -> Result<Received, NetError> {
    let n = nic_mut(index)?;
    n.ready()?;
    let start = interrupts::ticks();
    let mut got = Received::default();
    let mut first_tick = 0;
    let mut old = n.rx.next_avail;
    let mut pending = 0;
    while got.frames < count {
        let elapsed = interrupts::ticks() - start;
        if elapsed >= timeout {
            break;
        }
        let (id, len) = match n.rx.wait_used(timeout - elapsed) {
            Wait::Used(id, len) => (id, len),
            Wait::NeedsReset => {
                n.state = State::NeedsReset;
                return Err(NetError::NeedsReset);
            }
            Wait::Timeout => break,
        };
        if id >= u32::from(QSIZE) {
            continue;
        }
        let id = id as u16;
        let buf = n.rx_buf(id);
        let len = (len as usize).min(BUF as usize);
        if len >= NET_HDR_LEN {
            let num_buffers: u16 = get(buf + 10);
            if num_buffers > 1 {
                got.merged += 1;
            }
            let frame = bytes(buf + NET_HDR_LEN as u64, len - NET_HDR_LEN);
            let r = match seed {
                Some(s) => netframe::check(frame, s),
                None => netframe::seq_of(frame),
            };
            match r {
                Ok(seq) => {
                    if got.first.is_none() {
                        got.first = Some(seq);
                        first_tick = interrupts::ticks();
                    } else if seq > got.last + 1 {
                        got.lost += u64::from(seq - got.last - 1);
                    }
                    got.last = seq;
                    got.frames += 1;
                    got.bytes += frame.len() as u64;
                }
                Err(netframe::FrameError::Data(_)) => got.bad += 1,
                Err(_) => got.other += 1,
            }
        }
        n.post_rx(id);
        pending += 1;
        if pending >= 16 {
            n.rx.kick(old);
            old = n.rx.next_avail;
            pending = 0;
        }
    }
    n.rx.kick(old);
    if got.first.is_some() {
        got.ticks = interrupts::ticks() - first_tick;
    }
    n.counters.rx_frames += got.frames;
    Ok(got)
}

/// Resets and starts NIC `index` again.
pub fn reset(index: usize) -> Result<(), NetError> {
    let (event_idx, mrg) = (driver().event_idx, driver().mrg_rxbuf);
    let n = nic_mut(index)?;
    if n.version != 2 {
        return Err(NetError::NotReady(n.state));
    }
    n.state = match n.start(index, event_idx, mrg, true) {
        Ok(()) => State::Ready,
        Err(e) => State::Failed(e),
    };
    n.ready()
}

/// The malformed chains of `net evil`: the generic ones on each queue, and net's own.
pub const EVIL_NET_CASES: &[(&str, &str)] = &[
    (
        "tx-big",
        "a transmitted frame of 70000 bytes (64 KiB and more)",
    ),
    (
        "tx-short",
        "a transmit chain of 8 bytes, shorter than the header",
    ),
    (
        "rx-tiny",
        "a receive buffer of 8 bytes, too small for the header",
    ),
    (
        "reset-tx",
        "a device reset with 64 frames just handed over, then a frame",
    ),
    (
        "reset-rx",
        "a device reset as frames arrive, then a frame received",
    ),
];

/// What a malformed chain led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvilOutcome {
    /// What became of the malformed chain (none for the reset cases).
    pub chain: Option<Wait>,
    /// For receive cases: whether the good buffer after it got a test frame.
    pub frame: Option<bool>,
}

/// Sends malformed case `case` (`tx-<generic>`, `rx-<generic>` or a net case) to NIC
/// `index`. `None` for an unknown case.
pub fn evil(index: usize, case: &str) -> Option<Result<EvilOutcome, NetError>> {
    let (event_idx, mrg) = (driver().event_idx, driver().mrg_rxbuf);
    let n = match nic_mut(index) {
        Ok(n) => n,
        Err(e) => return Some(Err(e)),
    };
    if let Err(e) = n.ready() {
        return Some(Err(e));
    }
    let r = if let Some(c) = case.strip_prefix("tx-") {
        n.evil_tx(c)?
    } else if let Some(c) = case.strip_prefix("rx-") {
        n.evil_rx(index, c, event_idx, mrg)?
    } else if case == "reset-tx" {
        n.evil_reset_tx(index, event_idx, mrg)
    } else if case == "reset-rx" {
        n.evil_reset_rx(index, event_idx, mrg)
    } else {
        return None;
    };
    Some(r)
}

impl Nic {
    fn evil_wait(&mut self, q: u16, head: u16) -> Wait {
        let vq = if q == RX { &mut self.rx } else { &mut self.tx };
        loop {
            match vq.wait_used(EVIL_TIMEOUT_TICKS) {
                Wait::Used(id, len) => {
                    if id == u32::from(head) || u32::from(head) >= u32::from(QSIZE) {
                        return Wait::Used(id, len);
                    }
                }
                w => return w,
            }
        }
    }

    fn evil_tx(&mut self, case: &str) -> Option<Result<EvilOutcome, NetError>> {
        if let Err(e) = self.drain_tx() {
            return Some(Err(e));
        }
        let buf = self.scratch();
        let frame_len = 100usize;
        bytes(buf, NET_HDR_LEN).fill(0);
        netframe::fill(
            bytes(buf + NET_HDR_LEN as u64, frame_len),
            netframe::BROADCAST,
            self.mac,
            0xee,
            0,
        );
        let len = (NET_HDR_LEN + frame_len) as u32;
        let head = match case {
            // A frame bigger than any NIC takes: the scratch buffer and the data area of the
            // transmit slots, which are idle.
            "big" => {
                self.tx
                    .desc(TX_SLOTS, buf, 8192, desc_flags::NEXT, TX_SLOTS + 1);
                self.tx.desc(TX_SLOTS + 1, self.tx_buf(0), 61808, 0, 0);
                self.tx.publish(TX_SLOTS);
                TX_SLOTS
            }
            "short" => {
                self.tx.desc(TX_SLOTS, buf, 8, 0, 0);
                self.tx.publish(TX_SLOTS);
                TX_SLOTS
            }
            c => hostile::post(&mut self.tx, c, TX_SLOTS, buf, len, Dir::DeviceReads)?,
        };
        self.tx.notify();
        let chain = self.evil_wait(TX, head);
        if chain == Wait::NeedsReset {
            self.state = State::NeedsReset;
        }
        Some(Ok(EvilOutcome {
            chain: Some(chain),
            frame: None,
        }))
    }

    fn evil_rx(
        &mut self,
        index: usize,
        case: &str,
        event_idx: bool,
        mrg: bool,
    ) -> Option<Result<EvilOutcome, NetError>> {
        if case != "tiny" && !hostile::CASES.iter().any(|(c, _)| *c == case) {
            return None;
        }
        // A ring holding only the malformed chain and, after it, one good buffer.
        if let Err(e) = self.start(index, event_idx, mrg, false) {
            self.state = State::Failed(e);
            return Some(Err(NetError::NotReady(self.state)));
        }
        let buf = self.scratch();
        let head = if case == "tiny" {
            self.rx.desc(1, buf, 8, desc_flags::WRITE, 0);
            self.rx.publish(1);
            1
        } else {
            hostile::post(&mut self.rx, case, 1, buf, BUF as u32, Dir::DeviceWrites)?
        };
        let good = self.rx_buf(0);
        put(good + NET_HDR_LEN as u64 + 12, 0u16);
        self.rx.desc(0, good, BUF as u32, desc_flags::WRITE, 0);
        self.rx.publish(0);
        self.rx.want_interrupt();
        self.rx.notify();
        let chain = self.evil_wait(RX, head);
        let mut frame = false;
        if chain != Wait::NeedsReset {
            // The good buffer (descriptor 0) gets the next frame.
            let deadline = interrupts::ticks() + EVIL_TIMEOUT_TICKS;
            let mut seen = matches!(chain, Wait::Used(0, _));
            while !seen && interrupts::ticks() < deadline {
                match self.rx.wait_used(deadline - interrupts::ticks()) {
                    Wait::Used(0, len) => {
                        seen = len as usize > NET_HDR_LEN;
                        break;
                    }
                    Wait::Used(..) => {}
                    _ => break,
                }
            }
            frame = seen && netframe::seq_of(bytes(good + NET_HDR_LEN as u64, 64)).is_ok();
        }
        let outcome = EvilOutcome {
            chain: Some(chain),
            frame: Some(frame),
        };
        if chain == Wait::NeedsReset {
            self.state = State::NeedsReset;
        } else {
            self.state = match self.start(index, event_idx, mrg, true) {
                Ok(()) => State::Ready,
                Err(e) => State::Failed(e),
            };
        }
        Some(Ok(outcome))
    }

    fn evil_reset_tx(
        &mut self,
        index: usize,
        event_idx: bool,
        mrg: bool,
    ) -> Result<EvilOutcome, NetError> {
        self.drain_tx()?;
        for slot in 0..TX_SLOTS {
            let buf = self.tx_buf(slot);
            bytes(buf, NET_HDR_LEN).fill(0);
            netframe::fill(
                bytes(buf + NET_HDR_LEN as u64, 1000),
                netframe::BROADCAST,
                self.mac,
                0xdd,
                u32::from(slot),
            );
            self.tx.desc(slot, buf, (NET_HDR_LEN + 1000) as u32, 0, 0);
            self.tx.publish(slot);
        }
        self.tx.notify();
        // Reset while the device works through them.
        virtio_mmio::write(self.base, reg::STATUS, 0);
        self.state = match self.start(index, event_idx, mrg, true) {
            Ok(()) => State::Ready,
            Err(e) => State::Failed(e),
        };
        self.ready()?;
        self.send(1, 60, 0xdd, netframe::BROADCAST, 1)?;
        Ok(EvilOutcome {
            chain: None,
            frame: None,
        })
    }

    fn evil_reset_rx(
        &mut self,
        index: usize,
        event_idx: bool,
        mrg: bool,
    ) -> Result<EvilOutcome, NetError> {
        // The first frame in, then a reset while more arrive.
        let _ = self.rx.wait_used(EVIL_TIMEOUT_TICKS);
        virtio_mmio::write(self.base, reg::STATUS, 0);
        self.state = match self.start(index, event_idx, mrg, true) {
            Ok(()) => State::Ready,
            Err(e) => State::Failed(e),
        };
        self.ready()?;
        let mut frame = false;
        let deadline = interrupts::ticks() + EVIL_TIMEOUT_TICKS;
        while interrupts::ticks() < deadline {
            match self.rx.wait_used(deadline - interrupts::ticks()) {
                Wait::Used(id, len) if id < u32::from(QSIZE) => {
                    let buf = self.rx_buf(id as u16);
                    frame = len as usize > NET_HDR_LEN + netframe::DATA
                        && netframe::seq_of(bytes(buf + NET_HDR_LEN as u64, 64)).is_ok();
                    self.post_rx(id as u16);
                    self.rx.notify();
                    if frame {
                        break;
                    }
                }
                Wait::Used(..) => {}
                _ => break,
            }
        }
        Ok(EvilOutcome {
            chain: None,
            frame: Some(frame),
        })
    }
}
