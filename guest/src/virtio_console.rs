//! virtio-console driver (port 0 only) for a modern (version 2) virtio-mmio transport.
//!
//! The first transport whose DeviceID is 3 is the console. The driver accepts no port feature
//! (size, multiport, emergency write), so receiveq 0 and transmitq 1 are port 0's, under
//! stratovirt and under QEMU's virtio-serial alike. Each queue uses up to 64 entries; the
//! receiveq keeps [`RX_BUFS`] buffers of 4 KiB posted, the transmitq sends from
//! [`TX_SLOTS`] slots of 4 KiB (one descriptor each, at most that many in flight).
//!
//! Waiting is interrupt driven as in the block driver: `sti; hlt` until the used index moves
//! (the device's interrupt or the 100 Hz timer), with VIRTIO_F_EVENT_IDX's `used_event` set
//! before sleeping (negotiated unless `virtio_console.event_idx=0` is on the command line), a
//! DEVICE_NEEDS_RESET check now and then, and a bound on the ticks without progress.
//!
//! Only the boot CPU uses the driver (the shell runs one command at a time).

use core::cell::UnsafeCell;
use core::ptr::addr_of_mut;
use core::sync::atomic::{compiler_fence, Ordering};

use testkernel::cmdline;
use testkernel::crc32::Crc32;
use testkernel::pattern;
use testkernel::virtq::{self, bit, desc_flags, feature, status, Layout};

use crate::virtio_mmio::{self, read as mmio_read, reg, write as mmio_write};
use crate::{cpu, interrupts};

/// virtio device id of a console.
pub const CONSOLE_DEVICE_ID: u32 = 3;
/// Largest queue used (the device may offer more).
pub const MAX_QUEUE: u16 = 64;
/// Receive buffers kept posted.
pub const RX_BUFS: u16 = 16;
/// Bytes per receive buffer.
pub const RX_BUF: u32 = 4096;
/// Bytes per transmit slot.
pub const TX_SLOT: u32 = 4096;
/// Transmit slots (and most chains in flight).
pub const TX_SLOTS: usize = 64;
/// Timer ticks (10 ms) without progress before `ERR timeout`.
pub const TIMEOUT_TICKS: u64 = 1000;
/// Timer ticks a malformed buffer (`con evil`) is given.
pub const EVIL_TIMEOUT_TICKS: u64 = 200;

const RXQ: u32 = 0;
const TXQ: u32 = 1;
const QUEUE_BYTES: u64 = Layout::new(MAX_QUEUE).total;
const DATA_BYTES: usize = TX_SLOTS * TX_SLOT as usize;
const RX_BYTES: usize = RX_BUFS as usize * RX_BUF as usize;

const _: () = assert!(RX_BUFS <= MAX_QUEUE && TX_SLOTS <= MAX_QUEUE as usize);

#[repr(C, align(4096))]
struct Rings([u8; 2 * QUEUE_BYTES as usize]);

#[link_section = ".bss.noinit.virtio_console_rings"]
static mut RINGS: Rings = Rings([0; 2 * QUEUE_BYTES as usize]);

#[repr(C, align(4096))]
struct RxData([u8; RX_BYTES]);

#[link_section = ".bss.noinit.virtio_console_rx"]
static mut RX: RxData = RxData([0; RX_BYTES]);

#[repr(C, align(4096))]
struct TxData([u8; DATA_BYTES]);

#[link_section = ".bss.noinit.virtio_console_tx"]
static mut TX: TxData = TxData([0; DATA_BYTES]);

fn rings_base() -> u64 {
    addr_of_mut!(RINGS) as u64
}

fn rx_base() -> u64 {
    addr_of_mut!(RX) as u64
}

fn tx_base() -> u64 {
    addr_of_mut!(TX) as u64
}

/// Whether `[addr, addr + len)` lies in the driver's own memory.
fn owned(addr: u64, len: u64) -> bool {
    let in_range = |base: u64, size: u64| addr >= base && addr + len <= base + size;
    in_range(rings_base(), 2 * QUEUE_BYTES)
        || in_range(rx_base(), RX_BYTES as u64)
        || in_range(tx_base(), DATA_BYTES as u64)
}

/// Writes `v` at `addr` in the driver's memory (volatile: the device reads it).
fn put<T: Copy>(addr: u64, v: T) {
    assert!(owned(addr, core::mem::size_of::<T>() as u64));
    // SAFETY: the range lies in RINGS, RX or TX, kernel memory only this driver (boot CPU)
    // and the device it hands buffers to use; every T here is an integer, valid at the
    // naturally aligned ring offsets the callers use.
    unsafe { core::ptr::write_volatile(addr as *mut T, v) }
}

/// Reads the value at `addr` in the driver's memory (volatile: the device may write it).
fn get<T: Copy>(addr: u64) -> T {
    assert!(owned(addr, core::mem::size_of::<T>() as u64));
    // SAFETY: as for `put`; integers have no invalid bit patterns.
    unsafe { core::ptr::read_volatile(addr as *const T) }
}

/// `len` bytes of the driver's memory at `addr`, which the device is not using now.
fn bytes(addr: u64, len: usize) -> &'static [u8] {
    assert!(owned(addr, len as u64));
    compiler_fence(Ordering::Acquire);
    // SAFETY: the range lies in RX or TX; the device has returned the buffer (its used entry
    // was read), and nothing writes it while the slice lives (one command at a time).
    unsafe { core::slice::from_raw_parts(addr as *const u8, len) }
}

/// A transmit slot's memory, to fill before it is published.
fn slot_mut(slot: usize) -> &'static mut [u8] {
    assert!(slot < TX_SLOTS);
    let addr = tx_base() + (slot * TX_SLOT as usize) as u64;
    // SAFETY: slot `slot` of TX, which the device does not hold (the caller only fills free
    // slots); no other reference to it is live (one command at a time).
    unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, TX_SLOT as usize) }
}

/// Why a transfer failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoError {
    /// No progress within the timeout; `done` bytes moved before it.
    Timeout {
        /// Bytes moved.
        done: u64,
    },
    /// The device reported DEVICE_NEEDS_RESET.
    NeedsReset,
    /// The device is not ready (see its state).
    NotReady(State),
    /// There is no console.
    NoConsole,
}

/// The driver's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Serving.
    Ready,
    /// The device set DEVICE_NEEDS_RESET.
    NeedsReset,
    /// A transfer timed out; the device may still hold buffers.
    Stale,
    /// Initialisation failed for the reason given.
    Failed(&'static str),
}

/// One split virtqueue of the console.
#[derive(Clone, Copy, Debug)]
struct Vq {
    region: u64,
    layout: Layout,
    next_avail: u16,
    last_used: u16,
}

impl Vq {
    const fn empty() -> Self {
        Self {
            region: 0,
            layout: Layout::new(1),
            next_avail: 0,
            last_used: 0,
        }
    }

    fn at(&self, off: u64) -> u64 {
        self.region + off
    }

    fn desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let d = self.at(self.layout.desc_at(i % self.layout.size));
        put(d, addr);
        put(d + 8, len);
        put(d + 12, flags);
        put(d + 14, next);
    }

    /// Makes the chain at `head` available (no notification yet).
    fn publish(&mut self, head: u16) {
        let l = self.layout;
        put(self.at(l.avail_ring(self.next_avail)), head);
        self.next_avail = self.next_avail.wrapping_add(1);
        compiler_fence(Ordering::Release);
        put(self.at(l.avail_idx()), self.next_avail);
    }

    fn used_idx(&self) -> u16 {
        get(self.at(self.layout.used_idx()))
    }

    /// The next used entry `(id, len)`, if the device published one.
    fn take_used(&mut self) -> Option<(u32, u32)> {
        if self.used_idx() == self.last_used {
            return None;
        }
        compiler_fence(Ordering::Acquire);
        let e = self.at(self.layout.used_ring(self.last_used));
        let entry = (get(e), get(e + 4));
        self.last_used = self.last_used.wrapping_add(1);
        Some(entry)
    }
}

/// The console.
#[derive(Clone, Copy, Debug)]
pub struct Console {
    /// Index of its virtio-mmio transport (command-line order).
    pub transport: usize,
    /// MMIO base.
    pub base: u64,
    /// GSI.
    pub irq: u32,
    /// Features accepted.
    pub features: u64,
    /// Driver state.
    pub state: State,
    /// QueueNotify writes so far.
    pub kicks: u64,
    rx: Vq,
    tx: Vq,
    /// The receive buffer being read: (id, bytes taken, bytes in it).
    rx_cur: Option<(u16, u32, u32)>,
    /// Transmit slots the device holds (bit per slot).
    tx_busy: u64,
    /// Bytes written and read since the device started.
    pub written: u64,
    /// Bytes read since the device started.
    pub read: u64,
}

struct Global(UnsafeCell<Option<Console>>, UnsafeCell<bool>);

// SAFETY: only the boot CPU touches the driver, outside interrupt handlers (boot, then the
// shell, one command at a time).
unsafe impl Sync for Global {}

static DRIVER: Global = Global(UnsafeCell::new(None), UnsafeCell::new(true));

fn console_mut() -> Result<&'static mut Console, IoError> {
    // SAFETY: see `Global`: one user at a time, and callers do not keep the reference across
    // calls that take it again.
    unsafe { (*DRIVER.0.get()).as_mut() }.ok_or(IoError::NoConsole)
}

fn event_idx_wanted() -> bool {
    // SAFETY: see `Global`.
    unsafe { *DRIVER.1.get() }
}

/// A copy of the console's state, if there is one.
pub fn console() -> Option<Console> {
    console_mut().ok().copied()
}

/// Finds and starts the console. Boot CPU, once, with interrupts off.
pub fn init(cmdline_text: &[u8]) {
    let event_idx = !cmdline::params(cmdline_text)
        .any(|(n, v)| cmdline::name_eq(n, b"virtio_console.event_idx") && v == Some(b"0"));
    // SAFETY: see `Global`; nothing else runs yet.
    unsafe { *DRIVER.1.get() = event_idx };
    for (t, dev) in virtio_mmio::devices().iter().enumerate() {
        if !virtio_mmio::present(t)
            || virtio_mmio::read(dev.base, reg::DEVICE_ID) != CONSOLE_DEVICE_ID
        {
            continue;
        }
        let mut c = Console {
            transport: t,
            base: dev.base,
            irq: dev.irq,
            features: 0,
            state: State::Failed("not started"),
            kicks: 0,
            rx: Vq::empty(),
            tx: Vq::empty(),
            rx_cur: None,
            tx_busy: 0,
            written: 0,
            read: 0,
        };
        c.state = if virtio_mmio::read(dev.base, reg::VERSION) != 2 {
            State::Failed("legacy transport (version 1) not supported")
        } else {
            match c.start(event_idx, true) {
                Ok(()) => State::Ready,
                Err(e) => State::Failed(e),
            }
        };
        // SAFETY: see `Global`.
        unsafe { *DRIVER.0.get() = Some(c) };
        return;
    }
}

impl Console {
    fn event_idx(&self) -> bool {
        self.features & bit(feature::RING_EVENT_IDX) != 0
    }

    /// The device's Status register.
    pub fn device_status(&self) -> u32 {
        mmio_read(self.base, reg::STATUS)
    }

    /// The transmitq's used index, the used entries taken, its driver index, and the slots
    /// in flight (a bit each).
    pub fn tx_state(&self) -> (u16, u16, u16, u64) {
        (
            self.tx.used_idx(),
            self.tx.last_used,
            self.tx.next_avail,
            self.tx_busy,
        )
    }

    /// Queue size in use.
    pub fn queue_size(&self) -> u16 {
        self.tx.layout.size
    }

    fn ready(&self) -> Result<(), IoError> {
        match self.state {
            State::Ready => Ok(()),
            s => Err(IoError::NotReady(s)),
        }
    }

    /// Resets the device and runs the initialisation sequence (virtio 1.x 3.1.1), setting up
    /// both queues; posts the receive buffers if `post_rx`.
    fn start(&mut self, event_idx: bool, post_rx: bool) -> Result<(), &'static str> {
        let b = self.base;
        self.features = 0;
        self.rx_cur = None;
        self.tx_busy = 0;
        self.written = 0;
        self.read = 0;
        let acked =
            virtio_mmio::negotiate(b, |offered| virtq::negotiate_console(offered, event_idx))?;
        for (i, vq) in [RXQ, TXQ].into_iter().zip([&mut self.rx, &mut self.tx]) {
            let region = rings_base() + u64::from(i) * QUEUE_BYTES;
            if let Err(e) = setup_queue(b, i, region, vq) {
                return Err(virtio_mmio::failed(b, e));
            }
        }
        self.features = acked;
        virtio_mmio::driver_ok(b)?;
        if post_rx {
            self.post_all_rx();
        }
        Ok(())
    }

    fn post_all_rx(&mut self) {
        let old = self.rx.next_avail;
        for id in 0..RX_BUFS {
            self.post_rx(id);
        }
        self.kick(RXQ, old);
    }

    /// Gives receive buffer `id` (back) to the device, without notifying.
    fn post_rx(&mut self, id: u16) {
        let addr = rx_base() + u64::from(id) * u64::from(RX_BUF);
        self.rx.desc(id, addr, RX_BUF, desc_flags::WRITE, 0);
        self.rx.publish(id);
    }

    fn vq(&mut self, q: u32) -> &mut Vq {
        if q == RXQ {
            &mut self.rx
        } else {
            &mut self.tx
        }
    }

    /// Notifies queue `q` about chains published since its driver index was `old`, unless the
    /// device said it does not need to be.
    fn kick(&mut self, q: u32, old: u16) {
        cpu::mb();
        let event_idx = self.event_idx();
        let vq = *self.vq(q);
        let l = vq.layout;
        let notify = if event_idx {
            virtq::need_event(get(vq.at(l.avail_event())), vq.next_avail, old)
        } else {
            get::<u16>(vq.at(l.used_flags())) & virtq::USED_F_NO_NOTIFY == 0
        };
        if notify {
            mmio_write(self.base, reg::QUEUE_NOTIFY, q);
            self.kicks += 1;
        }
    }

    /// Waits for the next used entry of queue `q`: sleeps until an interrupt (or a timer
    /// tick), checks DEVICE_NEEDS_RESET after a configuration interrupt and every 10 ticks,
    /// and gives up after `timeout` ticks.
    fn wait_used(&mut self, q: u32, timeout: u64) -> Result<(u32, u32), IoError> {
        let start = interrupts::ticks();
        let mut checked = start;
        let mut config_irqs = virtio_mmio::config_irqs(self.transport);
        let event_idx = self.event_idx();
        loop {
            let vq = self.vq(q);
            if let Some(e) = vq.take_used() {
                return Ok(e);
            }
            if event_idx {
                // Interrupt when the next entry is published; then look again in case it was
                // published before the device could see the request.
                put(vq.at(vq.layout.used_event()), vq.last_used);
                cpu::mb();
                if let Some(e) = vq.take_used() {
                    return Ok(e);
                }
            }
            let now = interrupts::ticks();
            let c = virtio_mmio::config_irqs(self.transport);
            if c != config_irqs || now.wrapping_sub(checked) >= 10 {
                config_irqs = c;
                checked = now;
                if self.device_status() & status::DEVICE_NEEDS_RESET != 0 {
                    self.state = State::NeedsReset;
                    return Err(IoError::NeedsReset);
                }
            }
            if now.wrapping_sub(start) >= timeout {
                self.state = State::Stale;
                return Err(IoError::Timeout { done: 0 });
            }
            cpu::cli();
            if self.vq(q).used_idx() == self.vq(q).last_used {
                cpu::sti_hlt();
            } else {
                cpu::sti();
            }
        }
    }

    /// Takes back the transmit slots the device returned.
    fn reclaim_tx(&mut self) {
        while let Some((id, _)) = self.tx.take_used() {
            self.tx_done(id);
        }
    }

    fn tx_done(&mut self, id: u32) {
        if (id as usize) < TX_SLOTS {
            self.tx_busy &= !(1u64 << id);
        }
    }

    /// The lowest free transmit slot below `slots` (at most 64).
    fn free_slot(&self, slots: usize) -> Option<usize> {
        let all = if slots >= 64 {
            u64::MAX
        } else {
            (1u64 << slots) - 1
        };
        let free = !self.tx_busy & all;
        (free != 0).then(|| free.trailing_zeros() as usize)
    }

    /// Sends `len` bytes in chains of at most `chunk` bytes, each filled by `fill(buf,
    /// offset)` just before it is published; waits until the device has returned them all.
    fn send(
        &mut self,
        len: u64,
        chunk: u32,
        mut fill: impl FnMut(&mut [u8], u64),
    ) -> Result<(), IoError> {
        self.ready()?;
        let chunk = chunk.clamp(1, TX_SLOT);
        let slots = TX_SLOTS.min(usize::from(self.queue_size()));
        let mut off = 0u64;
        while off < len || self.tx_busy != 0 {
            self.reclaim_tx();
            if off >= len && self.tx_busy == 0 {
                break;
            }
            if off < len {
                if let Some(slot) = self.free_slot(slots) {
                    let n = (len - off).min(u64::from(chunk)) as u32;
                    fill(&mut slot_mut(slot)[..n as usize], off);
                    let addr = tx_base() + (slot * TX_SLOT as usize) as u64;
                    self.tx.desc(slot as u16, addr, n, 0, 0);
                    let old = self.tx.next_avail;
                    self.tx.publish(slot as u16);
                    self.tx_busy |= 1u64 << slot;
                    self.kick(TXQ, old);
                    off += u64::from(n);
                    self.written += u64::from(n);
                    continue;
                }
            }
            match self.wait_used(TXQ, TIMEOUT_TICKS) {
                Ok((id, _)) => self.tx_done(id),
                Err(IoError::Timeout { .. }) => return Err(IoError::Timeout { done: off }),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The next received bytes, at most `max`, as a slice of a receive buffer (waiting for
    /// the device to fill one); [`consume`](Self::consume) them after use.
    fn next_input(&mut self, max: u32, timeout: u64) -> Result<(u64, u32), IoError> {
        loop {
            if let Some((id, off, len)) = self.rx_cur {
                let addr = rx_base() + u64::from(id) * u64::from(RX_BUF) + u64::from(off);
                return Ok((addr, (len - off).min(max)));
            }
            let (id, len) = match self.rx.take_used() {
                Some(e) => e,
                None => self.wait_used(RXQ, timeout)?,
            };
            if id >= u32::from(RX_BUFS) {
                continue;
            }
            let len = len.min(RX_BUF);
            if len == 0 {
                self.repost(id as u16);
            } else {
                self.rx_cur = Some((id as u16, 0, len));
            }
        }
    }

    /// Marks `n` bytes of the current receive buffer as read; gives it back when it is done.
    fn consume(&mut self, n: u32) {
        if let Some((id, off, len)) = self.rx_cur {
            if off + n >= len {
                self.rx_cur = None;
                self.repost(id);
            } else {
                self.rx_cur = Some((id, off + n, len));
            }
            self.read += u64::from(n);
        }
    }

    fn repost(&mut self, id: u16) {
        let old = self.rx.next_avail;
        self.post_rx(id);
        self.kick(RXQ, old);
    }

    /// Reads `n` bytes, handing each piece to `sink`.
    fn receive(&mut self, n: u64, mut sink: impl FnMut(&[u8])) -> Result<(), IoError> {
        self.ready()?;
        let mut got = 0u64;
        while got < n {
            let max = (n - got).min(u64::from(RX_BUF)) as u32;
            let (addr, len) = match self.next_input(max, TIMEOUT_TICKS) {
                Ok(x) => x,
                Err(IoError::Timeout { .. }) => return Err(IoError::Timeout { done: got }),
                Err(e) => return Err(e),
            };
            sink(bytes(addr, len as usize));
            self.consume(len);
            got += u64::from(len);
        }
        Ok(())
    }
}

fn setup_queue(b: u64, index: u32, region: u64, vq: &mut Vq) -> Result<(), &'static str> {
    let max = match virtio_mmio::select_queue(b, index) {
        None => return Err("a queue is already live"),
        Some(0) => return Err("no receiveq and transmitq"),
        Some(max) => max,
    };
    let size = max.min(u32::from(MAX_QUEUE)) as u16;
    mmio_write(b, reg::QUEUE_NUM, u32::from(size));
    *vq = Vq {
        region,
        layout: Layout::new(size),
        next_avail: 0,
        last_used: 0,
    };
    let l = vq.layout;
    // The device only reads published descriptors and writes used entries before publishing
    // them: clearing the index and event fields is enough.
    put::<u32>(vq.at(l.avail), 0);
    put::<u16>(vq.at(l.used_event()), 0);
    put::<u32>(vq.at(l.used), 0);
    put::<u16>(vq.at(l.avail_event()), 0);
    virtio_mmio::set_queue_rings(b, vq.at(l.desc), vq.at(l.avail), vq.at(l.used));
    Ok(())
}

/// Writes the first `len` bytes of the seed's stream pattern (the disk pattern of `seed` from
/// sector 0, see docs/testkernel.md) in chains of `chunk` bytes.
pub fn write_pattern(len: u64, seed: u64, chunk: u32) -> Result<(), IoError> {
    let c = console_mut()?;
    c.send(len, chunk, |buf, off| fill_pattern(buf, off, seed))
}

/// The stream pattern's bytes at `off..off + buf.len()`.
pub(crate) fn fill_pattern(buf: &mut [u8], off: u64, seed: u64) {
    let mut words = [0u64; pattern::SECTOR_WORDS];
    let mut i = 0;
    while i < buf.len() {
        let at = off + i as u64;
        let sector = at / pattern::SECTOR as u64;
        let skip = (at % pattern::SECTOR as u64) as usize;
        pattern::fill_disk(seed, sector, &mut words);
        let mut sector_bytes = [0u8; pattern::SECTOR];
        for (k, w) in words.iter().enumerate() {
            sector_bytes[8 * k..8 * k + 8].copy_from_slice(&u64::from_le(*w).to_le_bytes());
        }
        let n = (pattern::SECTOR - skip).min(buf.len() - i);
        buf[i..i + n].copy_from_slice(&sector_bytes[skip..skip + n]);
        i += n;
    }
}

/// Writes `text` as one chain.
pub fn print(text: &[u8]) -> Result<(), IoError> {
    let c = console_mut()?;
    c.send(text.len() as u64, TX_SLOT, |buf, off| {
        let off = off as usize;
        buf.copy_from_slice(&text[off..off + buf.len()]);
    })
}

/// Reads `n` bytes; returns their CRC-32.
pub fn read(n: u64) -> Result<u32, IoError> {
    let c = console_mut()?;
    let mut crc = Crc32::new();
    c.receive(n, |b| crc = crc.update(b))?;
    Ok(crc.value())
}

/// Reads `n` bytes and writes each piece back as it arrives.
pub fn echo(n: u64) -> Result<(), IoError> {
    let c = console_mut()?;
    c.ready()?;
    let mut done = 0u64;
    while done < n {
        let max = (n - done).min(u64::from(TX_SLOT)) as u32;
        let (addr, len) = match c.next_input(max, TIMEOUT_TICKS) {
            Ok(x) => x,
            Err(IoError::Timeout { .. }) => return Err(IoError::Timeout { done }),
            Err(e) => return Err(e),
        };
        let piece = bytes(addr, len as usize);
        c.send(u64::from(len), TX_SLOT, |buf, off| {
            let off = off as usize;
            buf.copy_from_slice(&piece[off..off + buf.len()]);
        })?;
        c.consume(len);
        done += u64::from(len);
    }
    Ok(())
}

/// Resets and re-initialises the console.
pub fn reset() -> Result<(), IoError> {
    let c = console_mut()?;
    c.state = match c.start(event_idx_wanted(), true) {
        Ok(()) => State::Ready,
        Err(e) => State::Failed(e),
    };
    c.ready()
}

/// `con bench` result.
#[derive(Clone, Copy, Debug)]
pub struct BenchResult {
    /// Bytes sent.
    pub bytes: u64,
    /// Timer ticks from the first chain to the last completion.
    pub ticks: u64,
    /// QueueNotify writes.
    pub kicks: u64,
    /// Interrupts with a used buffer.
    pub interrupts: u64,
}

/// Sends `bytes` bytes in chains of `chunk` bytes from the transmit slots (filled once with
/// a pattern), as many in flight as there are slots, one notification per batch.
pub fn bench(bytes: u64, chunk: u32) -> Result<BenchResult, IoError> {
    let c = console_mut()?;
    c.ready()?;
    let chunk = chunk.clamp(1, TX_SLOT);
    let slots = TX_SLOTS.min(usize::from(c.queue_size()));
    // Cheap to fill under instruction emulation: one word per slot, repeated.
    for s in 0..slots {
        let word = (0x0101_0101_0101_0101u64 * (s as u64 + 0x21)).to_le_bytes();
        for w in slot_mut(s).chunks_exact_mut(8) {
            w.copy_from_slice(&word);
        }
    }
    let kicks0 = c.kicks;
    let irqs0 = virtio_mmio::used_irqs(c.transport);
    let start = interrupts::ticks();
    let mut sent = 0u64;
    while sent < bytes || c.tx_busy != 0 {
        c.reclaim_tx();
        let old = c.tx.next_avail;
        while sent < bytes {
            let Some(slot) = c.free_slot(slots) else {
                break;
            };
            let n = (bytes - sent).min(u64::from(chunk)) as u32;
            let addr = tx_base() + (slot * TX_SLOT as usize) as u64;
            c.tx.desc(slot as u16, addr, n, 0, 0);
            c.tx.publish(slot as u16);
            c.tx_busy |= 1u64 << slot;
            sent += u64::from(n);
        }
        if c.tx.next_avail != old {
            c.kick(TXQ, old);
        }
        if c.tx_busy != 0 {
            match c.wait_used(TXQ, TIMEOUT_TICKS) {
                Ok((id, _)) => c.tx_done(id),
                Err(IoError::Timeout { .. }) => return Err(IoError::Timeout { done: sent }),
                Err(e) => return Err(e),
            }
        }
    }
    c.written += sent;
    Ok(BenchResult {
        bytes: sent,
        ticks: interrupts::ticks() - start,
        kicks: c.kicks - kicks0,
        interrupts: virtio_mmio::used_irqs(c.transport) - irqs0,
    })
}

/// What a malformed buffer led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvilOutcome {
    /// The device returned it with this used length.
    Completed {
        /// Used length.
        len: u32,
    },
    /// No completion within the timeout (the console must be reset).
    Timeout,
    /// The device set DEVICE_NEEDS_RESET.
    NeedsReset,
}

/// The malformed buffers of `con evil`, with what each one is.
pub const EVIL_CASES: &[(&str, &str)] = &[
    ("oob", "transmit buffer at 64 TiB, beyond guest RAM"),
    ("wrap", "transmit buffer whose end wraps past 2^64"),
    ("mmio", "transmit buffer on the device's own MMIO window"),
    ("wrongdir", "device-writable transmit buffer"),
    ("loop", "transmit descriptor whose next is itself"),
    (
        "huge",
        "every transmit descriptor chained, the last back to the first",
    ),
    ("empty", "zero-length transmit buffer"),
    ("rxro", "device-readable receive buffer (posted first)"),
    ("rxoob", "receive buffer at 64 TiB (posted first)"),
    (
        "badidx",
        "transmit ring entry with a head index past the queue",
    ),
    (
        "availjump",
        "transmit driver index moved a queue size and more ahead",
    ),
];

/// Sends malformed buffer `case` and reports what the device did. `None` for an unknown case.
pub fn evil(case: &str) -> Option<Result<EvilOutcome, IoError>> {
    let c = match console_mut() {
        Ok(c) => c,
        Err(e) => return Some(Err(e)),
    };
    if let Err(e) = c.ready() {
        return Some(Err(e));
    }
    // Slot 0 and receive buffer 0 as scratch; the receive cases start afresh so that the
    // malformed buffer is the first one the device sees.
    let data = tx_base();
    let size = c.queue_size();
    let readable = desc_flags::NEXT;
    match case {
        "rxro" | "rxoob" => {
            if let Err(e) = c.start(event_idx_wanted(), false) {
                c.state = State::Failed(e);
                return Some(Err(IoError::NotReady(c.state)));
            }
            let head = RX_BUFS;
            let (addr, flags) = if case == "rxro" {
                (rx_base(), 0)
            } else {
                (1u64 << 46, desc_flags::WRITE)
            };
            let old = c.rx.next_avail;
            c.rx.desc(head, addr, RX_BUF, flags, 0);
            c.rx.publish(head);
            for id in 0..RX_BUFS {
                c.post_rx(id);
            }
            c.kick(RXQ, old);
            return Some(evil_wait(c, RXQ, Some(u32::from(head))));
        }
        "oob" => c.tx.desc(0, 1 << 46, 512, 0, 0),
        "wrap" => c.tx.desc(0, u64::MAX - 0x1ff, 4096, 0, 0),
        "mmio" => c.tx.desc(0, c.base, 512, 0, 0),
        "wrongdir" => c.tx.desc(0, data, 512, desc_flags::WRITE, 0),
        "loop" => c.tx.desc(0, data, 512, readable, 0),
        "huge" => {
            for i in 0..size {
                c.tx.desc(i, data, 16, readable, (i + 1) % size);
            }
        }
        "empty" => c.tx.desc(0, data, 0, 0, 0),
        "badidx" => {
            c.tx.desc(0, data, 16, 0, 0);
            let old = c.tx.next_avail;
            c.tx.publish(size + 7);
            c.kick(TXQ, old);
            return Some(evil_wait(c, TXQ, None));
        }
        "availjump" => {
            c.tx.desc(0, data, 16, 0, 0);
            let old = c.tx.next_avail;
            let l = c.tx.layout;
            put(c.tx.at(l.avail_ring(old)), 0u16);
            c.tx.next_avail = old.wrapping_add(size + 1);
            compiler_fence(Ordering::Release);
            put(c.tx.at(l.avail_idx()), c.tx.next_avail);
            c.kick(TXQ, old);
            return Some(evil_wait(c, TXQ, None));
        }
        _ => return None,
    }
    let old = c.tx.next_avail;
    c.tx.publish(0);
    c.kick(TXQ, old);
    Some(evil_wait(c, TXQ, Some(0)))
}

/// Waits for the malformed chain `head` of queue `q` (any entry if None) or for the device to
/// give up on the queue.
fn evil_wait(c: &mut Console, q: u32, head: Option<u32>) -> Result<EvilOutcome, IoError> {
    loop {
        match c.wait_used(q, EVIL_TIMEOUT_TICKS) {
            Ok((id, len)) => {
                if head.is_some_and(|h| h != id) {
                    // A good receive buffer filled after the bad one: keep it for `con read`.
                    if q == RXQ && id < u32::from(RX_BUFS) && len > 0 && c.rx_cur.is_none() {
                        c.rx_cur = Some((id as u16, 0, len.min(RX_BUF)));
                    }
                    continue;
                }
                return Ok(EvilOutcome::Completed { len });
            }
            Err(IoError::Timeout { .. }) => return Ok(EvilOutcome::Timeout),
            Err(IoError::NeedsReset) => return Ok(EvilOutcome::NeedsReset),
            Err(e) => return Err(e),
        }
    }
}
