//! virtio-blk driver for modern (version 2) virtio-mmio transports.
//!
//! Every transport whose DeviceID is 2 is a disk, named `vda`, `vdb`, ... in
//! command-line order. Each gets one split virtqueue (up to 256 entries) and
//! a request area in kernel memory (`.bss.noinit`, below 32 MiB, away from
//! the `mem fill` area); data moves through one 256 KiB buffer shared by all
//! disks (commands run one at a time).
//!
//! Completion is interrupt driven: the waiting code sleeps with `sti; hlt`
//! until the used index moves (the virtio-mmio interrupt or the 100 Hz timer
//! wakes it), and gives up after a bounded number of timer ticks. With
//! VIRTIO_F_EVENT_IDX (negotiated unless `virtio_blk.event_idx=0` is on the
//! command line) `used_event` asks for an interrupt on the next completion
//! and `avail_event` decides whether to notify.
//!
//! Configuration changes (hot-plug) raise InterruptStatus bit 1; the
//! interrupt handler re-reads capacity and generation into [`capacity`] and
//! [`generation`].
//!
//! Only the boot CPU uses the driver: the shell (one command at a time) and
//! its interrupt handlers.

use core::cell::UnsafeCell;
use core::ptr::addr_of_mut;
use core::sync::atomic::{compiler_fence, AtomicU32, AtomicU64, AtomicU8, Ordering};

use testkernel::cmdline;
use testkernel::crc32::crc32;
use testkernel::fixedvec::FixedVec;
use testkernel::pattern;
use testkernel::virtq::{
    self, bit, blk_status, blk_type, desc_flags, feature, status, Layout, BLK_ID_LEN,
};

use crate::virtio_mmio::{self, read as mmio_read, reg, write as mmio_write};
use crate::{cpu, interrupts};

/// virtio device id of a block device.
pub const BLOCK_DEVICE_ID: u32 = 2;
/// Most disks driven (vda..vdh).
pub const MAX_DISKS: usize = 8;
/// Largest queue used (the device may offer more).
pub const MAX_QUEUE: u16 = 256;
/// Bytes per sector.
pub const SECTOR: u64 = 512;
/// Most sectors per `blk read` / `blk write` (128 KiB).
pub const MAX_SECTORS: u64 = 256;
/// Most data descriptors per `blk read` / `blk write`.
pub const MAX_SEGS: u64 = 16;
/// Most requests in flight for `blk bench`.
pub const MAX_QD: usize = 64;
/// Bytes per `blk bench` request.
pub const BENCH_BYTES: u32 = 4096;
/// Timer ticks (10 ms) a request may take before `ERR timeout`.
pub const TIMEOUT_TICKS: u64 = 1000;
/// Timer ticks a malformed request (`blk evil`) is given.
pub const EVIL_TIMEOUT_TICKS: u64 = 200;

/// Descriptors per `blk bench` request: header, data, status.
const DESCS_PER_SLOT: u16 = 3;
/// Bytes of queue memory per disk (the layout of a 256-entry queue).
const QUEUE_BYTES: u64 = Layout::new(MAX_QUEUE).total;
/// Request headers (16 bytes per slot), after the queue.
const HDR_OFF: u64 = QUEUE_BYTES;
/// Status bytes (one per slot).
const STATUS_OFF: u64 = HDR_OFF + 16 * MAX_QD as u64;
/// GET_ID answer buffer.
const ID_OFF: u64 = STATUS_OFF + MAX_QD as u64;
/// Scratch bytes for malformed requests.
const SCRATCH_OFF: u64 = ID_OFF + 32;
/// Bytes of kernel memory per disk.
const REGION: u64 = QUEUE_BYTES + 4096;
/// The shared data buffer: one 4 KiB block per bench slot, or one
/// `MAX_SECTORS` transfer.
const DATA_BYTES: usize = MAX_QD * BENCH_BYTES as usize;
/// Status byte value before the device writes it.
const NO_STATUS: u8 = 0xff;

const _: () = assert!(SCRATCH_OFF + 256 <= REGION);
const _: () = assert!(DATA_BYTES as u64 >= MAX_SECTORS * SECTOR);

#[repr(C, align(4096))]
struct Rings([u8; REGION as usize * MAX_DISKS]);

#[link_section = ".bss.noinit.virtio_blk_rings"]
static mut RINGS: Rings = Rings([0; REGION as usize * MAX_DISKS]);

#[repr(C, align(4096))]
struct Data([u8; DATA_BYTES]);

#[link_section = ".bss.noinit.virtio_blk_data"]
static mut DATA: Data = Data([0; DATA_BYTES]);

fn rings_base() -> u64 {
    addr_of_mut!(RINGS) as u64
}

fn data_base() -> u64 {
    addr_of_mut!(DATA) as u64
}

/// Whether `[addr, addr + len)` lies in the driver's own memory.
fn owned(addr: u64, len: u64) -> bool {
    let in_range = |base: u64, size: u64| addr >= base && addr + len <= base + size;
    in_range(rings_base(), REGION * MAX_DISKS as u64) || in_range(data_base(), DATA_BYTES as u64)
}

/// Writes `v` at `addr` in the driver's memory (volatile: a device reads it).
fn put<T: Copy>(addr: u64, v: T) {
    assert!(owned(addr, core::mem::size_of::<T>() as u64));
    // SAFETY: the range was just checked to lie in RINGS or DATA, kernel
    // memory that only this driver (boot CPU) and the devices it hands
    // buffers to use; every T here is an integer, valid at any alignment
    // the callers use (naturally aligned ring fields).
    unsafe { core::ptr::write_volatile(addr as *mut T, v) }
}

/// Reads the value at `addr` in the driver's memory (volatile: a device
/// may have written it).
fn get<T: Copy>(addr: u64) -> T {
    assert!(owned(addr, core::mem::size_of::<T>() as u64));
    // SAFETY: as for `put`; integers have no invalid bit patterns.
    unsafe { core::ptr::read_volatile(addr as *const T) }
}

/// The data buffer as bytes (`len` <= DATA_BYTES), for checksumming what a
/// device wrote.
fn data_bytes(len: usize) -> &'static [u8] {
    assert!(len <= DATA_BYTES);
    compiler_fence(Ordering::Acquire);
    // SAFETY: DATA is kernel memory only this driver uses; the device has
    // finished with it (its request completed) and nothing writes it while
    // the slice lives (commands run one at a time on the boot CPU).
    unsafe { core::slice::from_raw_parts(data_base() as *const u8, len) }
}

/// The data buffer as u64 words, for filling in a pattern.
fn data_words(words: usize) -> &'static mut [u64] {
    assert!(words * 8 <= DATA_BYTES);
    // SAFETY: as for `data_bytes`; no request is in flight while the
    // pattern is written, and DATA is 4 KiB aligned.
    unsafe { core::slice::from_raw_parts_mut(data_base() as *mut u64, words) }
}

/// What state a disk's driver is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Serving requests.
    Ready,
    /// The device set DEVICE_NEEDS_RESET.
    NeedsReset,
    /// A request timed out; the device may still own its buffers.
    Stale,
    /// Initialisation failed for the reason given.
    Failed(&'static str),
}

/// Why a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoError {
    /// The device answered with this status byte (NO_STATUS: not written).
    Status(u8),
    /// No completion within the timeout.
    Timeout,
    /// The device reported DEVICE_NEEDS_RESET.
    NeedsReset,
    /// The disk is not ready (see its state).
    NotReady(State),
    /// No such disk.
    NoDisk,
    /// Too few sectors for the request.
    TooSmall,
}

/// One disk.
#[derive(Clone, Copy, Debug)]
pub struct Disk {
    /// Index of its virtio-mmio transport (command-line order).
    pub transport: usize,
    /// MMIO base.
    pub base: u64,
    /// GSI.
    pub irq: u32,
    /// Transport version register.
    pub version: u32,
    /// Features accepted.
    pub features: u64,
    /// Driver state.
    pub state: State,
    region: u64,
    layout: Layout,
    next_avail: u16,
    last_used: u16,
}

struct Driver {
    disks: FixedVec<Disk, MAX_DISKS>,
    event_idx: bool,
    skipped: usize,
}

struct Global(UnsafeCell<Driver>);

// SAFETY: the driver state is only touched by the boot CPU outside
// interrupt handlers (boot, then the shell, one command at a time); the
// interrupt handler only uses the atomics below.
unsafe impl Sync for Global {}

const NO_DISK: Disk = Disk {
    transport: 0,
    base: 0,
    irq: 0,
    version: 0,
    features: 0,
    state: State::Failed("absent"),
    region: 0,
    layout: Layout::new(1),
    next_avail: 0,
    last_used: 0,
};

static DRIVER: Global = Global(UnsafeCell::new(Driver {
    disks: FixedVec::new(NO_DISK),
    event_idx: true,
    skipped: 0,
}));

const MAX_TRANSPORTS: usize = cmdline::MAX_VIRTIO_MMIO;
const NOT_A_DISK: u8 = 0xff;

/// Disk index of each transport (NOT_A_DISK for other devices).
static DISK_OF: [AtomicU8; MAX_TRANSPORTS] = [const { AtomicU8::new(NOT_A_DISK) }; MAX_TRANSPORTS];
/// Capacity in sectors, as last read (boot, reset, config interrupt).
static CAPACITY: [AtomicU64; MAX_DISKS] = [const { AtomicU64::new(0) }; MAX_DISKS];
/// ConfigGeneration that went with it.
static GENERATION: [AtomicU32; MAX_DISKS] = [const { AtomicU32::new(0) }; MAX_DISKS];

fn driver() -> &'static mut Driver {
    // SAFETY: see `Global`: a single user at a time, so no other reference
    // is live while the caller uses this one (callers do not keep it across
    // calls that take it again).
    unsafe { &mut *DRIVER.0.get() }
}

/// Reads capacity with the ConfigGeneration protocol (retry while the
/// generation moves under the two 32-bit reads).
fn read_config(base: u64) -> (u32, u64) {
    let mut result = (0, 0);
    for _ in 0..16 {
        let before = mmio_read(base, reg::CONFIG_GENERATION);
        let lo = mmio_read(base, reg::CONFIG);
        let hi = mmio_read(base, reg::CONFIG + 4);
        let after = mmio_read(base, reg::CONFIG_GENERATION);
        result = (after, (u64::from(hi) << 32) | u64::from(lo));
        if before == after {
            break;
        }
    }
    result
}

fn store_config(index: usize, base: u64) {
    let (gen, cap) = read_config(base);
    CAPACITY[index].store(cap, Ordering::Relaxed);
    GENERATION[index].store(gen, Ordering::Relaxed);
}

/// Configuration-change interrupt of transport `transport` (interrupt
/// context): re-reads the capacity if it is a disk.
pub fn on_config_change(transport: usize) {
    let Some(index) = DISK_OF.get(transport).map(|d| d.load(Ordering::Relaxed)) else {
        return;
    };
    if index == NOT_A_DISK {
        return;
    }
    if let Some(dev) = virtio_mmio::devices().get(transport) {
        store_config(usize::from(index), dev.base);
    }
}

/// Capacity of disk `index` in sectors, as last read.
pub fn capacity(index: usize) -> u64 {
    CAPACITY.get(index).map_or(0, |c| c.load(Ordering::Relaxed))
}

/// ConfigGeneration seen with [`capacity`].
pub fn generation(index: usize) -> u32 {
    GENERATION
        .get(index)
        .map_or(0, |c| c.load(Ordering::Relaxed))
}

/// Finds and starts every virtio-blk device. Boot CPU, once, with
/// interrupts off.
pub fn init(cmdline_text: &[u8]) {
    let drv = driver();
    drv.event_idx = !cmdline::params(cmdline_text)
        .any(|(n, v)| cmdline::name_eq(n, b"virtio_blk.event_idx") && v == Some(b"0"));
    for (t, dev) in virtio_mmio::devices().iter().enumerate() {
        if !virtio_mmio::present(t) {
            continue;
        }
        // Two registers rather than a full probe: every MMIO access is an
        // exit, and boot time counts.
        if mmio_read(dev.base, reg::DEVICE_ID) != BLOCK_DEVICE_ID {
            continue;
        }
        let version = mmio_read(dev.base, reg::VERSION);
        let index = drv.disks.len();
        if index == MAX_DISKS {
            drv.skipped += 1;
            continue;
        }
        let mut disk = Disk {
            transport: t,
            base: dev.base,
            irq: dev.irq,
            version,
            region: rings_base() + REGION * index as u64,
            ..NO_DISK
        };
        disk.state = if version != 2 {
            State::Failed("legacy transport (version 1) not supported")
        } else {
            match disk.start(index, drv.event_idx) {
                Ok(()) => State::Ready,
                Err(e) => State::Failed(e),
            }
        };
        DISK_OF[t].store(index as u8, Ordering::Relaxed);
        let _ = drv.disks.push(disk);
    }
}

/// Number of disks.
pub fn count() -> usize {
    driver().disks.len()
}

/// Disks found beyond [`MAX_DISKS`].
pub fn skipped() -> usize {
    driver().skipped
}

/// A copy of disk `index`'s state.
pub fn disk(index: usize) -> Option<Disk> {
    driver().disks.as_slice().get(index).copied()
}

fn disk_mut(index: usize) -> Result<&'static mut Disk, IoError> {
    driver()
        .disks
        .as_mut_slice()
        .get_mut(index)
        .ok_or(IoError::NoDisk)
}

impl Disk {
    /// Whether the driver accepted feature bit `n`.
    pub fn has(&self, n: u32) -> bool {
        self.features & bit(n) != 0
    }

    /// Whether the disk is read-only (VIRTIO_BLK_F_RO negotiated).
    pub fn read_only(&self) -> bool {
        self.has(feature::BLK_RO)
    }

    /// Queue size in use.
    pub fn queue_size(&self) -> u16 {
        self.layout.size
    }

    fn event_idx(&self) -> bool {
        self.has(feature::RING_EVENT_IDX)
    }

    /// The device's Status register.
    pub fn device_status(&self) -> u32 {
        mmio_read(self.base, reg::STATUS)
    }

    fn at(&self, off: u64) -> u64 {
        self.region + off
    }

    fn hdr(&self, slot: usize) -> u64 {
        self.at(HDR_OFF + 16 * slot as u64)
    }

    fn status_addr(&self, slot: usize) -> u64 {
        self.at(STATUS_OFF + slot as u64)
    }

    /// Resets the device and runs the virtio 1.x initialisation sequence
    /// (3.1.1): ACKNOWLEDGE, DRIVER, features, FEATURES_OK, queue 0,
    /// DRIVER_OK. On failure the device is left with FAILED set.
    fn start(&mut self, index: usize, event_idx: bool) -> Result<(), &'static str> {
        let b = self.base;
        self.features = 0;
        let acked = virtio_mmio::negotiate(b, |offered| virtq::negotiate(offered, event_idx))?;
        let fail = |why| Err(virtio_mmio::failed(b, why));
        let max = match virtio_mmio::select_queue(b, 0) {
            None => return fail("queue 0 is already live"),
            Some(0) => return fail("no queue 0"),
            Some(max) => max,
        };
        let size = max.min(u32::from(MAX_QUEUE)) as u16;
        mmio_write(b, reg::QUEUE_NUM, u32::from(size));
        self.layout = Layout::new(size);
        self.next_avail = 0;
        self.last_used = 0;
        // The device only reads published descriptors and writes used
        // entries before publishing them: clearing the index and event
        // fields is enough.
        let l = self.layout;
        put::<u32>(self.at(l.avail), 0); // flags: interrupts wanted; idx 0
        put::<u16>(self.at(l.used_event()), 0);
        put::<u32>(self.at(l.used), 0);
        put::<u16>(self.at(l.avail_event()), 0);
        let addr = |off: u64| self.at(off);
        virtio_mmio::set_queue_rings(b, addr(l.desc), addr(l.avail), addr(l.used));
        self.features = acked;
        virtio_mmio::driver_ok(b)?;
        store_config(index, b);
        Ok(())
    }

    fn ready(&self) -> Result<(), IoError> {
        match self.state {
            State::Ready => Ok(()),
            s => Err(IoError::NotReady(s)),
        }
    }

    /// Writes descriptor `i`.
    fn desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let d = self.at(self.layout.desc_at(i % self.layout.size));
        put(d, addr);
        put(d + 8, len);
        put(d + 12, flags);
        put(d + 14, next);
    }

    /// Request header of `slot` and its status byte (set to NO_STATUS).
    fn header(&self, slot: usize, kind: u32, sector: u64) {
        let h = self.hdr(slot);
        put(h, kind);
        put(h + 4, 0u32);
        put(h + 8, sector);
        put(self.status_addr(slot), NO_STATUS);
    }

    /// Builds a well-formed chain from descriptor `head` on: the header of
    /// `slot`, `data` buffers (device-writable if `device_writes`), the
    /// status byte of `slot`. Returns the number of descriptors.
    fn build(&self, slot: usize, head: u16, data: &[(u64, u32)], device_writes: bool) -> u16 {
        let mut i = head;
        let next = |i: u16| i.wrapping_add(1) % self.layout.size;
        self.desc(i, self.hdr(slot), 16, desc_flags::NEXT, next(i));
        i = next(i);
        let data_flags = desc_flags::NEXT | if device_writes { desc_flags::WRITE } else { 0 };
        for &(addr, len) in data {
            self.desc(i, addr, len, data_flags, next(i));
            i = next(i);
        }
        self.desc(i, self.status_addr(slot), 1, desc_flags::WRITE, 0);
        data.len() as u16 + 2
    }

    /// Makes the chain at `head` available (no notification yet).
    fn publish(&mut self, head: u16) {
        let l = self.layout;
        put(self.at(l.avail_ring(self.next_avail)), head);
        self.next_avail = self.next_avail.wrapping_add(1);
        compiler_fence(Ordering::Release);
        put(self.at(l.avail_idx()), self.next_avail);
    }

    /// Notifies the device about chains published since the driver index
    /// was `old`, unless it said it does not need to be.
    fn kick(&mut self, old: u16) {
        cpu::mb();
        let l = self.layout;
        let notify = if self.event_idx() {
            virtq::need_event(get(self.at(l.avail_event())), self.next_avail, old)
        } else {
            get::<u16>(self.at(l.used_flags())) & virtq::USED_F_NO_NOTIFY == 0
        };
        if notify {
            mmio_write(self.base, reg::QUEUE_NOTIFY, 0);
        }
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

    /// Waits for the next used entry: sleeps until an interrupt (or a timer
    /// tick), checks DEVICE_NEEDS_RESET after a configuration interrupt and
    /// every 10 ticks, and gives up after `timeout` ticks.
    fn wait_used(&mut self, timeout: u64) -> Result<(u32, u32), IoError> {
        let start = interrupts::ticks();
        let mut checked = start;
        let mut config_irqs = virtio_mmio::config_irqs(self.transport);
        loop {
            if let Some(e) = self.take_used() {
                return Ok(e);
            }
            if self.event_idx() {
                // Interrupt when the next entry is published; then look
                // again in case it was published before the device could
                // see the request for an interrupt.
                put(self.at(self.layout.used_event()), self.last_used);
                cpu::mb();
                if let Some(e) = self.take_used() {
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
                return Err(IoError::Timeout);
            }
            // No interrupt can slip in between the check and the halt:
            // `sti` takes effect after `hlt` has started.
            cpu::cli();
            if self.used_idx() == self.last_used {
                cpu::sti_hlt();
            } else {
                cpu::sti();
            }
        }
    }

    /// Publishes the chain at `head`, notifies, and waits for its
    /// completion; returns its used length. Completions of other chains
    /// (left over from malformed requests) are skipped.
    fn submit_wait(&mut self, head: u16, timeout: u64) -> Result<u32, IoError> {
        if self.event_idx() {
            // Ask for an interrupt on this completion up front (as Linux's
            // virtqueue_enable_cb does), so every single request interrupts
            // however fast the device is; `blk bench` only asks when it is
            // about to sleep.
            put(self.at(self.layout.used_event()), self.last_used);
        }
        let old = self.next_avail;
        self.publish(head);
        self.kick(old);
        loop {
            let (id, len) = self.wait_used(timeout)?;
            if id == u32::from(head) {
                return Ok(len);
            }
        }
    }

    /// One request in slot 0 with its chain at descriptor 0; the status
    /// byte decides the result.
    fn request(
        &mut self,
        kind: u32,
        sector: u64,
        data: &[(u64, u32)],
        device_writes: bool,
    ) -> Result<u32, IoError> {
        self.ready()?;
        self.header(0, kind, sector);
        self.build(0, 0, data, device_writes);
        let len = self.submit_wait(0, TIMEOUT_TICKS)?;
        match get::<u8>(self.status_addr(0)) {
            blk_status::OK => Ok(len),
            s => Err(IoError::Status(s)),
        }
    }
}

/// `len` bytes of the data buffer split into `segs` descriptors of about
/// equal size (not sector-aligned when `len / segs` is not).
fn split(len: u64, segs: u64) -> FixedVec<(u64, u32), { MAX_SEGS as usize }> {
    let mut v = FixedVec::new((0, 0));
    let segs = segs.clamp(1, MAX_SEGS).min(len.max(1));
    let base = data_base();
    for k in 0..segs {
        let from = len * k / segs;
        let to = len * (k + 1) / segs;
        let _ = v.push((base + from, (to - from) as u32));
    }
    v
}

/// Reads `count` sectors from `sector` into the data buffer through `segs`
/// descriptors; returns the CRC-32 of the data.
pub fn read(index: usize, sector: u64, count: u64, segs: u64) -> Result<u32, IoError> {
    let d = disk_mut(index)?;
    let len = count * SECTOR;
    let data = split(len, segs);
    d.request(blk_type::IN, sector, data.as_slice(), true)?;
    Ok(crc32(data_bytes(len as usize)))
}

/// Writes `count` sectors of the seed's disk pattern at `sector`.
pub fn write(index: usize, sector: u64, count: u64, seed: u64, segs: u64) -> Result<(), IoError> {
    let d = disk_mut(index)?;
    d.ready()?;
    let len = count * SECTOR;
    pattern::fill_disk(seed, sector, data_words((len / 8) as usize));
    let data = split(len, segs);
    d.request(blk_type::OUT, sector, data.as_slice(), false)
        .map(|_| ())
}

/// VIRTIO_BLK_T_FLUSH.
pub fn flush(index: usize) -> Result<(), IoError> {
    disk_mut(index)?
        .request(blk_type::FLUSH, 0, &[], false)
        .map(|_| ())
}

/// VIRTIO_BLK_T_GET_ID: the serial number (NUL padded).
pub fn get_id(index: usize) -> Result<[u8; BLK_ID_LEN], IoError> {
    let d = disk_mut(index)?;
    let buf = d.at(ID_OFF);
    for i in 0..BLK_ID_LEN as u64 {
        put(buf + i, 0u8);
    }
    d.request(blk_type::GET_ID, 0, &[(buf, BLK_ID_LEN as u32)], true)?;
    let mut id = [0u8; BLK_ID_LEN];
    for (i, b) in id.iter_mut().enumerate() {
        *b = get(buf + i as u64);
    }
    Ok(id)
}

/// Resets and re-initialises disk `index`.
pub fn reset(index: usize) -> Result<(), IoError> {
    let event_idx = driver().event_idx;
    let d = disk_mut(index)?;
    if d.version != 2 {
        return Err(IoError::NotReady(d.state));
    }
    d.state = match d.start(index, event_idx) {
        Ok(()) => State::Ready,
        Err(e) => State::Failed(e),
    };
    d.ready()
}

/// `blk bench` result.
#[derive(Clone, Copy, Debug)]
pub struct BenchResult {
    /// Requests completed.
    pub requests: u64,
    /// Timer ticks from the first submission to the last completion.
    pub ticks: u64,
    /// Queue depth used (capped by the queue size and MAX_QD).
    pub depth: usize,
    /// Notifications (QueueNotify writes avoided are not counted).
    pub interrupts: u64,
}

/// `requests` 4 KiB reads (or writes) at consecutive 4 KiB-aligned offsets
/// (wrapping at the end of the disk), `depth` of them in flight.
pub fn bench(
    index: usize,
    requests: u64,
    depth: usize,
    write: bool,
) -> Result<BenchResult, IoError> {
    let d = disk_mut(index)?;
    d.ready()?;
    let depth = depth
        .clamp(1, MAX_QD)
        .min(usize::from(d.layout.size / DESCS_PER_SLOT));
    let blocks = capacity(index) / 8;
    if blocks == 0 {
        return Err(IoError::TooSmall);
    }
    let kind = if write { blk_type::OUT } else { blk_type::IN };
    for slot in 0..depth {
        let buf = data_base() + slot as u64 * u64::from(BENCH_BYTES);
        d.header(slot, kind, 0);
        d.build(
            slot,
            slot as u16 * DESCS_PER_SLOT,
            &[(buf, BENCH_BYTES)],
            !write,
        );
    }
    let mut free = [0u8; MAX_QD];
    for (i, f) in free.iter_mut().enumerate().take(depth) {
        *f = i as u8;
    }
    let mut nfree = depth;
    let mut in_flight = 0u64; // bitmap of slots
    let (mut submitted, mut completed, mut block) = (0u64, 0u64, 0u64);
    let irqs_before = virtio_mmio::used_irqs(d.transport);
    let start = interrupts::ticks();
    while completed < requests {
        let old = d.next_avail;
        while nfree > 0 && submitted < requests {
            nfree -= 1;
            let slot = usize::from(free[nfree]);
            put(d.hdr(slot) + 8, block * 8);
            put(d.status_addr(slot), NO_STATUS);
            d.publish(slot as u16 * DESCS_PER_SLOT);
            in_flight |= 1 << slot;
            block = (block + 1) % blocks;
            submitted += 1;
        }
        if d.next_avail != old {
            d.kick(old);
        }
        let mut next = Some(d.wait_used(TIMEOUT_TICKS)?);
        while let Some((id, _)) = next {
            let slot = (id / u32::from(DESCS_PER_SLOT)) as usize;
            if id % u32::from(DESCS_PER_SLOT) == 0 && slot < depth && in_flight & (1 << slot) != 0 {
                in_flight &= !(1 << slot);
                let st: u8 = get(d.status_addr(slot));
                if st != blk_status::OK {
                    // Let the others finish so the ring stays consistent.
                    while in_flight != 0 {
                        let (id, _) = d.wait_used(TIMEOUT_TICKS)?;
                        in_flight &= !(1u64.checked_shl(id / 3).unwrap_or(0));
                    }
                    return Err(IoError::Status(st));
                }
                free[nfree] = slot as u8;
                nfree += 1;
                completed += 1;
            }
            next = d.take_used();
        }
    }
    Ok(BenchResult {
        requests: completed,
        ticks: interrupts::ticks() - start,
        depth,
        interrupts: virtio_mmio::used_irqs(d.transport) - irqs_before,
    })
}

/// What a malformed request led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvilOutcome {
    /// The device returned the chain: its status byte (None if it did not
    /// write one) and the used length.
    Completed {
        /// Status byte.
        status: Option<u8>,
        /// Used length.
        len: u32,
    },
    /// No completion within the timeout (the disk must be reset).
    Timeout,
    /// The device set DEVICE_NEEDS_RESET.
    NeedsReset,
}

/// The malformed requests of `blk evil`, with what each one is.
pub const EVIL_CASES: &[(&str, &str)] = &[
    ("loop", "header descriptor whose next is itself"),
    (
        "huge",
        "every descriptor chained, the last back to the first",
    ),
    ("oob", "data buffer at 64 TiB, beyond guest RAM"),
    ("wrap", "data buffer whose end wraps past 2^64"),
    ("mmio", "data buffer on the device's own MMIO window"),
    ("short", "8-byte header descriptor"),
    (
        "nostatus",
        "last descriptor device-readable (no status byte)",
    ),
    ("wrongdir", "read with a device-readable data buffer"),
    ("pastend", "read of the sector at the capacity"),
    ("overflow", "read at sector 2^64-4 (byte offset overflows)"),
    ("unaligned", "read of 100 bytes"),
    ("badtype", "request type 0x99"),
    (
        "badidx",
        "driver ring entry with a head index past the queue",
    ),
    (
        "availjump",
        "driver index moved a queue size and more ahead",
    ),
];

/// Sends malformed request `case` to disk `index` and reports what the
/// device did. `None` for an unknown case.
pub fn evil(index: usize, case: &str) -> Option<Result<EvilOutcome, IoError>> {
    let d = match disk_mut(index) {
        Ok(d) => d,
        Err(e) => return Some(Err(e)),
    };
    if let Err(e) = d.ready() {
        return Some(Err(e));
    }
    let size = d.layout.size;
    let data = data_base();
    let st = d.status_addr(0);
    let hdr = d.hdr(0);
    let readable = desc_flags::NEXT;
    let writable = desc_flags::NEXT | desc_flags::WRITE;
    d.header(0, blk_type::IN, 0);
    let mut head = 0u16;
    match case {
        "loop" => d.desc(0, hdr, 16, readable, 0),
        "huge" => {
            d.desc(0, hdr, 16, readable, 1);
            for i in 1..size {
                d.desc(
                    i,
                    data + 512 * u64::from(i % 8),
                    512,
                    writable,
                    (i + 1) % size,
                );
            }
        }
        "oob" => {
            d.build(0, 0, &[(1 << 46, 512)], true);
        }
        "wrap" => {
            d.build(0, 0, &[(u64::MAX - 0x1ff, 4096)], true);
        }
        "mmio" => {
            d.build(0, 0, &[(d.base, 512)], true);
        }
        "short" => {
            d.build(0, 0, &[(data, 512)], true);
            d.desc(0, hdr, 8, readable, 1);
        }
        "nostatus" => {
            d.build(0, 0, &[(data, 512)], true);
            d.desc(2, st, 1, 0, 0);
        }
        "wrongdir" => {
            d.build(0, 0, &[(data, 512)], false);
        }
        "pastend" => {
            d.header(0, blk_type::IN, capacity(index));
            d.build(0, 0, &[(data, 512)], true);
        }
        "overflow" => {
            d.header(0, blk_type::IN, u64::MAX - 3);
            d.build(0, 0, &[(data, 4096)], true);
        }
        "unaligned" => {
            d.build(0, 0, &[(data, 100)], true);
        }
        "badtype" => {
            d.header(0, 0x99, 0);
            d.build(0, 0, &[(data, 512)], true);
        }
        "badidx" => {
            d.build(0, 0, &[(data, 512)], true);
            head = size + 7;
        }
        "availjump" => {
            d.build(0, 0, &[(data, 512)], true);
            let old = d.next_avail;
            put(d.at(d.layout.avail_ring(old)), 0u16);
            d.next_avail = old.wrapping_add(size + 1);
            compiler_fence(Ordering::Release);
            put(d.at(d.layout.avail_idx()), d.next_avail);
            d.kick(old);
            return Some(evil_wait(d, None));
        }
        _ => return None,
    }
    let old = d.next_avail;
    d.publish(head);
    d.kick(old);
    Some(evil_wait(d, Some(u32::from(head))))
}

/// Waits for the completion of a malformed chain (any id if `head` is
/// None or out of range) or for the device to give up on the queue.
fn evil_wait(d: &mut Disk, head: Option<u32>) -> Result<EvilOutcome, IoError> {
    loop {
        match d.wait_used(EVIL_TIMEOUT_TICKS) {
            Ok((id, len)) => {
                if head.is_some_and(|h| h != id && h < u32::from(d.layout.size)) {
                    continue;
                }
                let s: u8 = get(d.status_addr(0));
                return Ok(EvilOutcome::Completed {
                    status: (s != NO_STATUS).then_some(s),
                    len,
                });
            }
            Err(IoError::Timeout) => return Ok(EvilOutcome::Timeout),
            Err(IoError::NeedsReset) => return Ok(EvilOutcome::NeedsReset),
            Err(e) => return Err(e),
        }
    }
}
