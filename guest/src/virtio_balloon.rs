//! virtio-balloon driver for a modern (version 2) virtio-mmio transport.
//!
//! The first transport whose DeviceID is 5 is the balloon. The driver accepts the statistics
//! queue, deflate-on-OOM and free page reporting when offered (unless
//! `virtio_balloon.stats=0` / `virtio_balloon.report=0` is on the command line), numbers its
//! queues as Linux does (a missing queue takes no index) and, like Linux, posts its first
//! statistics before DRIVER_OK. Its queues live in `.bss.noinit`, below 32 MiB.
//!
//! It follows the device's target on its own: a configuration interrupt marks the target
//! changed, and the shell's idle loop ([`poll`]) inflates or deflates to it in batches of up
//! to [`BATCH`] pages, writing `actual` after each batch, and answers statistics requests.
//! `balloon auto off` stops that; `balloon sync` does it once. Balloon pages are the highest
//! usable pages (see `testkernel::balloon`): `mem fill` data there is given up.
//!
//! Only the boot CPU uses the driver: the shell (one command at a time, or its idle loop) and
//! its interrupt handler, which only sets an atomic flag.

use core::cell::UnsafeCell;
use core::ptr::addr_of_mut;
use core::sync::atomic::{compiler_fence, AtomicBool, Ordering};

use testkernel::balloon::{self, feature, stat, Pool, Queue, PAGE, STAT_LEN};
use testkernel::cmdline;
use testkernel::e820;
use testkernel::fixedvec::FixedVec;
use testkernel::virtq::{bit, desc_flags, status, Layout};

use crate::shell::mem::TEST_BASE;
use crate::virtio_mmio::{self, read as mmio_read, reg, write as mmio_write};
use crate::{cpu, interrupts, phys};

/// Largest queue used (the device may offer more).
pub const MAX_QUEUE: u16 = 64;
/// Most pages per inflate or deflate request.
pub const BATCH: u64 = 4096;
/// Timer ticks (10 ms) a request may take before `ERR timeout`.
pub const TIMEOUT_TICKS: u64 = 1000;
/// Timer ticks a malformed request (`balloon evil`) is given.
pub const EVIL_TIMEOUT_TICKS: u64 = 200;
/// Most free ranges in one report (Linux's `PAGE_REPORTING_CAPACITY`).
pub const REPORT_RANGES: u64 = 32;
/// Bytes per reported range (Linux reports 2 MiB blocks).
pub const REPORT_CHUNK: u64 = 2 << 20;

const QUEUE_BYTES: u64 = Layout::new(MAX_QUEUE).total;
const MAX_QUEUES: u64 = 4;
/// The page frame array of the request in flight.
const PFN_OFF: u64 = QUEUE_BYTES * MAX_QUEUES;
const PFN_BYTES: u64 = 4 * BATCH;
/// The statistics buffer (large, for `balloon evil statsbig`).
const STATS_OFF: u64 = PFN_OFF + PFN_BYTES;
const STATS_BYTES: u64 = 8192;
/// Scratch memory for malformed requests.
const SCRATCH_OFF: u64 = STATS_OFF + STATS_BYTES;
const REGION: u64 = SCRATCH_OFF + 4096;
/// The statistics this driver reports.
const STATS: [u16; 3] = [stat::MEMTOT, stat::MEMFREE, stat::AVAIL];

#[repr(C, align(4096))]
struct Mem([u8; REGION as usize]);

#[link_section = ".bss.noinit.virtio_balloon"]
static mut MEM: Mem = Mem([0; REGION as usize]);

fn base() -> u64 {
    addr_of_mut!(MEM) as u64
}

fn owned(addr: u64, len: u64) -> bool {
    addr >= base() && addr + len <= base() + REGION
}

/// Writes `v` at `addr` in the driver's memory (volatile: the device reads it).
fn put<T: Copy>(addr: u64, v: T) {
    assert!(owned(addr, core::mem::size_of::<T>() as u64));
    // SAFETY: the range was just checked to lie in MEM, kernel memory only this driver (boot
    // CPU) and the device it hands buffers to use; every T here is an integer written at a
    // naturally aligned offset (or a byte).
    unsafe { core::ptr::write_volatile(addr as *mut T, v) }
}

/// Reads the value at `addr` in the driver's memory (volatile: the device may write it).
fn get<T: Copy>(addr: u64) -> T {
    assert!(owned(addr, core::mem::size_of::<T>() as u64));
    // SAFETY: as for `put`; integers have no invalid bit patterns.
    unsafe { core::ptr::read_volatile(addr as *const T) }
}

/// The driver's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// No balloon on the command line.
    Absent,
    /// Serving.
    Ready,
    /// The device set DEVICE_NEEDS_RESET.
    NeedsReset,
    /// A request timed out.
    Stale,
    /// Initialisation failed.
    Failed(&'static str),
}

/// Why a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The driver is not ready (its state says why).
    NotReady(State),
    /// No completion in time.
    Timeout,
    /// The device set DEVICE_NEEDS_RESET.
    NeedsReset,
    /// The feature is not negotiated (no such queue).
    NoQueue,
    /// More pages than the pool has.
    TooMany,
}

/// One split virtqueue.
#[derive(Clone, Copy)]
struct Vq {
    index: u16,
    region: u64,
    layout: Layout,
    next_avail: u16,
    last_used: u16,
    next_desc: u16,
}

const NO_VQ: Vq = Vq {
    index: 0,
    region: 0,
    layout: Layout::new(1),
    next_avail: 0,
    last_used: 0,
    next_desc: 0,
};

/// What the driver knows about the balloon.
#[derive(Clone, Copy)]
pub struct Balloon {
    /// virtio-mmio transport index.
    pub transport: usize,
    /// MMIO base.
    pub base: u64,
    /// GSI.
    pub irq: u32,
    /// Features accepted.
    pub features: u64,
    /// Driver state.
    pub state: State,
    /// Pages the driver has given to the host.
    pub pages: u64,
    /// Whether the idle loop follows the target.
    pub auto: bool,
    /// Statistics reports sent.
    pub stats_sent: u64,
    /// Statistics buffers the device has not given back.
    stats_out: u32,
    inflate: Vq,
    deflate: Vq,
    stats: Option<Vq>,
    report: Option<Vq>,
}

struct Driver {
    dev: Balloon,
    pieces: FixedVec<(u64, u64), { e820::MAX_E820 }>,
    /// Usable RAM (the total memory reported) and the end of RAM.
    usable: u64,
    ram_end: u64,
    want_stats: bool,
    want_report: bool,
}

struct Global(UnsafeCell<Driver>);

// SAFETY: the driver state is only touched by the boot CPU outside interrupt handlers (boot,
// then the shell and its idle loop, one thing at a time); the interrupt handler only uses
// CONFIG_CHANGED.
unsafe impl Sync for Global {}

static DRIVER: Global = Global(UnsafeCell::new(Driver {
    dev: Balloon {
        transport: 0,
        base: 0,
        irq: 0,
        features: 0,
        state: State::Absent,
        pages: 0,
        auto: true,
        stats_sent: 0,
        stats_out: 0,
        inflate: NO_VQ,
        deflate: NO_VQ,
        stats: None,
        report: None,
    },
    pieces: FixedVec::new((0, 0)),
    usable: 0,
    ram_end: 0,
    want_stats: true,
    want_report: true,
}));

/// Set by the configuration interrupt: the target may have changed.
static CONFIG_CHANGED: AtomicBool = AtomicBool::new(false);

fn driver() -> &'static mut Driver {
    // SAFETY: see `Global`: one user at a time; callers do not keep the reference across
    // calls that take it again.
    unsafe { &mut *DRIVER.0.get() }
}

/// Configuration interrupt of `transport` (interrupt context).
pub fn on_config_change(transport: usize) {
    let d = &driver().dev;
    if d.state != State::Absent && d.transport == transport {
        CONFIG_CHANGED.store(true, Ordering::Relaxed);
    }
}

/// A copy of the balloon's state.
pub fn info() -> Balloon {
    driver().dev
}

/// Pages the balloon can take (usable RAM above 32 MiB).
pub fn pool_pages() -> u64 {
    let drv = driver();
    Pool::new(drv.pieces.as_slice()).pages()
}

/// The device's target (`num_pages`) and what the driver last wrote in `actual`.
pub fn config() -> (u32, u32) {
    let d = &driver().dev;
    (
        mmio_read(d.base, reg::CONFIG),
        mmio_read(d.base, reg::CONFIG + 4),
    )
}

/// Finds the balloon and starts it. Boot CPU, once, interrupts off.
pub fn init(cmdline_text: &[u8], map: &[e820::E820Entry]) {
    let drv = driver();
    drv.usable = e820::usable_bytes(map);
    drv.ram_end = e820::ram_end(map);
    let off = |name: &[u8]| {
        cmdline::params(cmdline_text).any(|(n, v)| cmdline::name_eq(n, name) && v == Some(b"0"))
    };
    drv.want_stats = !off(b"virtio_balloon.stats");
    drv.want_report = !off(b"virtio_balloon.report");
    e820::usable_pieces(map, TEST_BASE, phys::mapped_limit(), |start, len| {
        let _ = drv.pieces.push((start, len));
    });
    // Lowest first, whatever the map's order.
    let p = drv.pieces.as_mut_slice();
    for i in 1..p.len() {
        let mut j = i;
        while j > 0 && p[j - 1].0 > p[j].0 {
            p.swap(j - 1, j);
            j -= 1;
        }
    }
    for (t, dev) in virtio_mmio::devices().iter().enumerate() {
        if !virtio_mmio::present(t) || mmio_read(dev.base, reg::DEVICE_ID) != balloon::DEVICE_ID {
            continue;
        }
        drv.dev.transport = t;
        drv.dev.base = dev.base;
        drv.dev.irq = dev.irq;
        drv.dev.state = if mmio_read(dev.base, reg::VERSION) != 2 {
            State::Failed("legacy transport (version 1) not supported")
        } else {
            match start(drv) {
                Ok(()) => State::Ready,
                Err(e) => State::Failed(e),
            }
        };
        break;
    }
}

/// Resets the device and runs the initialisation sequence: features, the queues the features
/// call for, the first statistics, DRIVER_OK.
fn start(drv: &mut Driver) -> Result<(), &'static str> {
    let b = drv.dev.base;
    drv.dev.features = 0;
    drv.dev.pages = 0;
    drv.dev.stats = None;
    drv.dev.report = None;
    drv.dev.stats_out = 0;
    let acked = virtio_mmio::negotiate(b, |offered| {
        balloon::negotiate(offered, drv.want_stats, drv.want_report)
    })?;
    let setup = |q: Queue| -> Result<Option<Vq>, &'static str> {
        let Some(index) = balloon::queue_index(acked, q) else {
            return Ok(None);
        };
        let max = match virtio_mmio::select_queue(b, u32::from(index)) {
            None => return Err("queue already live"),
            Some(0) => return Err("a queue the features call for is missing"),
            Some(max) => max,
        };
        let size = max.min(u32::from(MAX_QUEUE)) as u16;
        mmio_write(b, reg::QUEUE_NUM, u32::from(size));
        let vq = Vq {
            index,
            region: base() + QUEUE_BYTES * u64::from(index),
            layout: Layout::new(size),
            ..NO_VQ
        };
        let l = vq.layout;
        put::<u32>(vq.region + l.avail, 0);
        put::<u16>(vq.region + l.used_event(), 0);
        put::<u32>(vq.region + l.used, 0);
        put::<u16>(vq.region + l.avail_event(), 0);
        let r = vq.region;
        virtio_mmio::set_queue_rings(b, r + l.desc, r + l.avail, r + l.used);
        Ok(Some(vq))
    };
    let inflate = setup(Queue::Inflate).map_err(|e| virtio_mmio::failed(b, e))?;
    let deflate = setup(Queue::Deflate).map_err(|e| virtio_mmio::failed(b, e))?;
    let stats = setup(Queue::Stats).map_err(|e| virtio_mmio::failed(b, e))?;
    let report = setup(Queue::Report).map_err(|e| virtio_mmio::failed(b, e))?;
    let d = &mut drv.dev;
    d.inflate = inflate.unwrap_or(NO_VQ);
    d.deflate = deflate.unwrap_or(NO_VQ);
    d.stats = stats;
    d.report = report;
    d.features = acked;
    // Linux primes the statistics queue before DRIVER_OK.
    if d.stats.is_some() {
        let pool = Pool::new(drv.pieces.as_slice()).pages();
        post_stats(d, pool, drv.usable, STATS.len() as u32);
    }
    virtio_mmio::driver_ok(b)?;
    CONFIG_CHANGED.store(true, Ordering::Relaxed);
    Ok(())
}

impl Vq {
    fn desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let d = self.region + self.layout.desc_at(i % self.layout.size);
        put(d, addr);
        put(d + 8, len);
        put(d + 12, flags);
        put(d + 14, next);
    }

    /// Writes a chain of `bufs` from the next free descriptor on; its head.
    fn chain(&mut self, bufs: &[(u64, u32, u16)]) -> u16 {
        let size = self.layout.size;
        let head = self.next_desc % size;
        for (i, &(addr, len, flags)) in bufs.iter().enumerate() {
            let idx = (head + i as u16) % size;
            let last = i + 1 == bufs.len();
            let flags = if last {
                flags
            } else {
                flags | desc_flags::NEXT
            };
            self.desc(idx, addr, len, flags, (idx + 1) % size);
        }
        self.next_desc = (head + bufs.len() as u16) % size;
        head
    }

    fn publish(&mut self, head: u16) {
        let l = self.layout;
        put(self.region + l.avail_ring(self.next_avail), head);
        self.next_avail = self.next_avail.wrapping_add(1);
        compiler_fence(Ordering::Release);
        put(self.region + l.avail_idx(), self.next_avail);
    }

    fn kick(&self, base: u64) {
        cpu::mb();
        if get::<u16>(self.region + self.layout.used_flags()) & testkernel::virtq::USED_F_NO_NOTIFY
            == 0
        {
            mmio_write(base, reg::QUEUE_NOTIFY, u32::from(self.index));
        }
    }

    fn used_idx(&self) -> u16 {
        get(self.region + self.layout.used_idx())
    }

    fn take_used(&mut self) -> Option<(u32, u32)> {
        if self.used_idx() == self.last_used {
            return None;
        }
        compiler_fence(Ordering::Acquire);
        let e = self.region + self.layout.used_ring(self.last_used);
        let entry = (get(e), get(e + 4));
        self.last_used = self.last_used.wrapping_add(1);
        Some(entry)
    }
}

impl Balloon {
    fn device_status(&self) -> u32 {
        mmio_read(self.base, reg::STATUS)
    }

    fn ready(&self) -> Result<(), Error> {
        match self.state {
            State::Ready => Ok(()),
            s => Err(Error::NotReady(s)),
        }
    }

    fn vq(&mut self, q: Queue) -> Option<&mut Vq> {
        match q {
            Queue::Inflate => Some(&mut self.inflate),
            Queue::Deflate => Some(&mut self.deflate),
            Queue::Stats => self.stats.as_mut(),
            Queue::Report => self.report.as_mut(),
        }
    }

    /// Waits for the next used entry of `q`, sleeping until an interrupt or a timer tick; gives
    /// up after `timeout` ticks or when the device needs a reset.
    fn wait_used(&mut self, q: Queue, timeout: u64) -> Result<(u32, u32), Error> {
        let start = interrupts::ticks();
        let base = self.base;
        loop {
            let vq = self.vq(q).ok_or(Error::NoQueue)?;
            if let Some(e) = vq.take_used() {
                return Ok(e);
            }
            let idle = vq.used_idx() == vq.last_used;
            if mmio_read(base, reg::STATUS) & status::DEVICE_NEEDS_RESET != 0 {
                self.state = State::NeedsReset;
                return Err(Error::NeedsReset);
            }
            if interrupts::ticks().wrapping_sub(start) >= timeout {
                self.state = State::Stale;
                return Err(Error::Timeout);
            }
            cpu::cli();
            if idle {
                cpu::sti_hlt();
            } else {
                cpu::sti();
            }
        }
    }

    /// Publishes a chain of `bufs` on `q`, notifies and waits for its completion.
    fn submit(&mut self, q: Queue, bufs: &[(u64, u32, u16)], timeout: u64) -> Result<u32, Error> {
        let base = self.base;
        let vq = self.vq(q).ok_or(Error::NoQueue)?;
        let head = vq.chain(bufs);
        vq.publish(head);
        vq.kick(base);
        loop {
            let (id, len) = self.wait_used(q, timeout)?;
            if id == u32::from(head) {
                return Ok(len);
            }
        }
    }

    fn write_actual(&self) {
        mmio_write(self.base, reg::CONFIG + 4, self.pages as u32);
    }
}

/// Writes the statistics into the buffer and makes it available (`entries` of them, the
/// real ones first; more than [`STATS`] repeats the last for `balloon evil statsbig`).
fn post_stats(d: &mut Balloon, pool: u64, total: u64, entries: u32) {
    let buf = base() + STATS_OFF;
    let free = pool.saturating_sub(d.pages) * PAGE;
    for i in 0..u64::from(entries) {
        let tag = STATS[(i as usize).min(STATS.len() - 1)];
        let val = match tag {
            stat::MEMTOT => total,
            _ => free,
        };
        for (k, byte) in balloon::stat_entry(tag, val).iter().enumerate() {
            put(buf + i * STAT_LEN as u64 + k as u64, *byte);
        }
    }
    let len = entries * STAT_LEN as u32;
    let base_addr = d.base;
    if let Some(vq) = d.stats.as_mut() {
        let head = vq.chain(&[(buf, len, 0)]);
        vq.publish(head);
        vq.kick(base_addr);
        d.stats_sent += 1;
        d.stats_out += 1;
    }
}

/// Writes the frame numbers of balloon pages `first..first + n` (counted down from the top of
/// the pool) into the frame array: one descending run per piece of the pool, written with a
/// plain loop (every instruction counts under emulation).
fn fill_frames(drv: &Driver, first: u64, n: u64) -> Result<(), Error> {
    assert!(n <= BATCH);
    let pool = Pool::new(drv.pieces.as_slice());
    let array = (base() + PFN_OFF) as *mut u32;
    let mut i = 0;
    while i < n {
        let top = pool.page(first + i).ok_or(Error::TooMany)?;
        // Pages below `top` in the same piece are the next ones.
        let piece_start = drv
            .pieces
            .iter()
            .find(|&&(s, len)| s <= top && top < s + len)
            .map_or(top, |&(s, _)| s);
        let run = ((top - piece_start) / PAGE + 1).min(n - i);
        let top_frame = (top / PAGE) as u32;
        for k in 0..run {
            // SAFETY: `i + k < n <= BATCH`: inside the frame array in MEM, which only this
            // driver writes; the device reads it after the chain is published.
            unsafe { core::ptr::write_volatile(array.add((i + k) as usize), top_frame - k as u32) };
        }
        i += run;
    }
    Ok(())
}

/// Gives `n` more pages to the host (one request of at most [`BATCH`] pages).
fn inflate_batch(drv: &mut Driver, n: u64) -> Result<(), Error> {
    fill_frames(drv, drv.dev.pages, n)?;
    let d = &mut drv.dev;
    let pfns = base() + PFN_OFF;
    d.submit(Queue::Inflate, &[(pfns, (4 * n) as u32, 0)], TIMEOUT_TICKS)?;
    d.pages += n;
    Ok(())
}

/// Takes `n` pages back: the lowest of the balloon (the last ones inflated) first.
fn deflate_batch(drv: &mut Driver, n: u64) -> Result<(), Error> {
    fill_frames(drv, drv.dev.pages - n, n)?;
    let d = &mut drv.dev;
    let pfns = base() + PFN_OFF;
    d.submit(Queue::Deflate, &[(pfns, (4 * n) as u32, 0)], TIMEOUT_TICKS)?;
    d.pages -= n;
    Ok(())
}

/// What a sync did.
#[derive(Clone, Copy, Debug, Default)]
pub struct SyncResult {
    /// Pages inflated.
    pub inflated: u64,
    /// Pages deflated.
    pub deflated: u64,
    /// The target in pages (capped at what the pool has).
    pub target: u64,
}

/// Inflates or deflates to the device's target, writing `actual` after every batch.
pub fn sync() -> Result<SyncResult, Error> {
    let drv = driver();
    drv.dev.ready()?;
    CONFIG_CHANGED.store(false, Ordering::Relaxed);
    let pool = Pool::new(drv.pieces.as_slice()).pages();
    let target = u64::from(mmio_read(drv.dev.base, reg::CONFIG)).min(pool);
    let mut r = SyncResult {
        target,
        ..SyncResult::default()
    };
    while drv.dev.pages < target {
        let n = (target - drv.dev.pages).min(BATCH);
        inflate_batch(drv, n)?;
        drv.dev.write_actual();
        r.inflated += n;
    }
    while drv.dev.pages > target {
        let n = (drv.dev.pages - target).min(BATCH);
        deflate_batch(drv, n)?;
        drv.dev.write_actual();
        r.deflated += n;
    }
    Ok(r)
}

/// The idle loop's work: follow the target (in auto mode) and answer statistics requests.
pub fn poll() {
    let drv = driver();
    if drv.dev.state != State::Ready {
        return;
    }
    if drv.dev.auto && CONFIG_CHANGED.load(Ordering::Relaxed) {
        let _ = sync();
    }
    answer_stats(drv);
}

/// If the device gave the statistics buffer back (it wants a new report), reports again. A
/// buffer it gave back because it was sent a second one is not a request: the driver keeps
/// one buffer with the device, as Linux does.
fn answer_stats(drv: &mut Driver) {
    let pool = Pool::new(drv.pieces.as_slice()).pages();
    let usable = drv.usable;
    let d = &mut drv.dev;
    let Some(vq) = d.stats.as_mut() else { return };
    let mut returned = 0;
    while vq.take_used().is_some() {
        returned += 1;
    }
    if returned == 0 {
        return;
    }
    d.stats_out = d.stats_out.saturating_sub(returned);
    if d.stats_out == 0 {
        post_stats(d, pool, usable, STATS.len() as u32);
    }
}

/// Turns following the target on or off.
pub fn set_auto(on: bool) {
    driver().dev.auto = on;
}

/// Reports `[addr, addr + len)` free, in chains of up to [`REPORT_RANGES`] 2 MiB ranges.
pub fn report(addr: u64, len: u64) -> Result<u64, Error> {
    let d = &mut driver().dev;
    d.ready()?;
    if d.report.is_none() {
        return Err(Error::NoQueue);
    }
    let end = addr.saturating_add(len);
    let mut at = addr;
    let mut chains = 0;
    while at < end {
        let mut bufs: FixedVec<(u64, u32, u16), { REPORT_RANGES as usize }> =
            FixedVec::new((0, 0, 0));
        while at < end && !bufs.is_full() {
            let n = (end - at).min(REPORT_CHUNK);
            let _ = bufs.push((at, n as u32, desc_flags::WRITE));
            at += n;
        }
        d.submit(Queue::Report, bufs.as_slice(), TIMEOUT_TICKS)?;
        chains += 1;
    }
    Ok(chains)
}

/// Resets the device and starts it again (the balloon starts empty).
pub fn reset() -> Result<(), Error> {
    let drv = driver();
    if drv.dev.state == State::Absent {
        return Err(Error::NotReady(State::Absent));
    }
    drv.dev.state = match start(drv) {
        Ok(()) => State::Ready,
        Err(e) => State::Failed(e),
    };
    drv.dev.ready()
}

/// What a malformed request led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvilOutcome {
    /// The device gave every chain back.
    Completed,
    /// No completion in time.
    Timeout,
    /// The device set DEVICE_NEEDS_RESET.
    NeedsReset,
}

/// The malformed requests of `balloon evil`, with what each one is. The pages they name
/// wrongly are the lowest of the test area (32 MiB), which `mem fill` writes first: they must
/// keep their data. `repeat` gives (and takes back) the highest page of the pool instead.
pub const EVIL_CASES: &[(&str, &str)] = &[
    (
        "hole",
        "inflate frames in the MMIO hole: the balloon's own window, the IOAPIC, 3 GiB",
    ),
    (
        "pastend",
        "inflate frames past the end of RAM, up to 0xffffffff",
    ),
    (
        "repeat",
        "inflate the pool's highest page 64 times in a request, again, then deflate it twice",
    ),
    ("notin", "deflate pages that are not in the balloon"),
    ("huge", "inflate a buffer claiming 2^30 frames"),
    ("partial", "inflate a 6-byte buffer (one and a half frames)"),
    (
        "wrongdir",
        "inflate a page through a device-writable buffer",
    ),
    ("oob", "inflate a frame array at 64 TiB, outside RAM"),
    ("mmio", "inflate a frame array on the device's MMIO window"),
    ("loop", "inflate through a descriptor whose next is itself"),
    (
        "report",
        "report ranges in the hole, past the end, wrapping, unaligned and device-readable",
    ),
    (
        "statsbig",
        "an 8 KiB statistics buffer, then two buffers at once",
    ),
    ("actual", "write actual = 0xffffffff (more than RAM)"),
    (
        "availjump",
        "move the inflate driver index a queue size and more ahead",
    ),
];

/// Sends malformed request `case`; `None` for an unknown case.
pub fn evil(case: &str) -> Option<Result<EvilOutcome, Error>> {
    let drv = driver();
    if let Err(e) = drv.dev.ready() {
        return Some(Err(e));
    }
    let ram_end = drv.ram_end;
    let usable = drv.usable;
    let page = TEST_BASE / PAGE;
    let Some(top) = Pool::new(drv.pieces.as_slice()).page(0).map(|a| a / PAGE) else {
        return Some(Err(Error::TooMany));
    };
    let d = &mut drv.dev;
    let scratch = base() + SCRATCH_OFF;
    let frames = |list: &[u64]| {
        for (i, f) in list.iter().enumerate() {
            put(scratch + 4 * i as u64, *f as u32);
        }
        (scratch, 4 * list.len() as u32, 0u16)
    };
    let done = |r: Result<u32, Error>| match r {
        Ok(_) => Ok(EvilOutcome::Completed),
        Err(Error::Timeout) => Ok(EvilOutcome::Timeout),
        Err(Error::NeedsReset) => Ok(EvilOutcome::NeedsReset),
        Err(e) => Err(e),
    };
    let t = EVIL_TIMEOUT_TICKS;
    let r = match case {
        "hole" => {
            let buf = frames(&[d.base / PAGE, 0xfec0_0000 / PAGE, 0xc000_0000 / PAGE]);
            d.submit(Queue::Inflate, &[buf], t)
        }
        "pastend" => {
            let end = ram_end / PAGE;
            let buf = frames(&[end, end + 1, end + 1000, 0xffff_ffff]);
            d.submit(Queue::Inflate, &[buf], t)
        }
        "repeat" => {
            if d.pages != 0 {
                // The page is the balloon's own: naming it again would be no mistake.
                return Some(Err(Error::NotReady(State::Ready)));
            }
            let buf = frames(&[top; 64]);
            let r = d
                .submit(Queue::Inflate, &[buf], t)
                .and_then(|_| d.submit(Queue::Inflate, &[buf], t));
            let buf = frames(&[top, top]);
            r.and_then(|_| d.submit(Queue::Deflate, &[buf], t))
        }
        "notin" => {
            let buf = frames(&[page + 1, page + 2, page + 3]);
            d.submit(Queue::Deflate, &[buf], t)
        }
        "huge" => d.submit(Queue::Inflate, &[(scratch, 0xffff_fffc, 0)], t),
        "partial" => {
            let (addr, _, _) = frames(&[0xc000_0000 / PAGE, page]);
            d.submit(Queue::Inflate, &[(addr, 6, 0)], t)
        }
        "wrongdir" => {
            let (addr, len, _) = frames(&[page]);
            d.submit(Queue::Inflate, &[(addr, len, desc_flags::WRITE)], t)
        }
        "oob" => d.submit(Queue::Inflate, &[(1 << 46, 64, 0)], t),
        "mmio" => d.submit(Queue::Inflate, &[(d.base, 64, 0)], t),
        "loop" => {
            let (addr, len, _) = frames(&[0xc000_0000 / PAGE]);
            let vq = &mut d.inflate;
            let head = vq.next_desc % vq.layout.size;
            vq.desc(head, addr, len, desc_flags::NEXT, head);
            vq.next_desc = (head + 1) % vq.layout.size;
            vq.publish(head);
            vq.kick(d.base);
            let r = d.wait_used(Queue::Inflate, t).map(|(_, len)| len);
            return Some(done(r));
        }
        "report" => {
            if d.report.is_none() {
                return Some(Err(Error::NoQueue));
            }
            let bufs = [
                (0xc000_0000, 2 << 20, desc_flags::WRITE),
                (ram_end, 2 << 20, desc_flags::WRITE),
                (u64::MAX - 4095, 8192, desc_flags::WRITE),
                (TEST_BASE + 1, 4096, desc_flags::WRITE),
                (TEST_BASE, 4096, 0),
            ];
            d.submit(Queue::Report, &bufs, t)
        }
        "statsbig" => {
            let pool = Pool::new(drv.pieces.as_slice()).pages();
            let d = &mut drv.dev;
            if d.stats.is_none() {
                return Some(Err(Error::NoQueue));
            }
            // The device holds the current buffer: this one makes it give that back.
            post_stats(d, pool, usable, (STATS_BYTES / STAT_LEN as u64) as u32);
            post_stats(d, pool, usable, STATS.len() as u32);
            let r = d.wait_used(Queue::Stats, t).map(|(_, len)| len);
            d.stats_out = d.stats_out.saturating_sub(1);
            return Some(done(r));
        }
        "actual" => {
            mmio_write(d.base, reg::CONFIG + 4, u32::MAX);
            Ok(0)
        }
        "availjump" => {
            let vq = &mut d.inflate;
            let old = vq.next_avail;
            vq.next_avail = old.wrapping_add(vq.layout.size + 1);
            compiler_fence(Ordering::Release);
            put(vq.region + vq.layout.avail_idx(), vq.next_avail);
            vq.kick(d.base);
            let r = d.wait_used(Queue::Inflate, t).map(|(_, len)| len);
            return Some(done(r));
        }
        _ => return None,
    };
    Some(done(r))
}

/// The device's Status register.
pub fn device_status() -> u32 {
    driver().dev.device_status()
}

/// Whether the features include `n`.
pub fn has(n: u32) -> bool {
    driver().dev.features & bit(n) != 0
}

/// Whether free page reporting is negotiated.
pub fn reporting() -> bool {
    has(feature::PAGE_REPORTING)
}
