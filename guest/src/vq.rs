//! The driver side of one split virtqueue on a modern virtio-mmio transport, for the drivers
//! that came after virtio-blk (virtio-net) and for the hostile-queue mode (`hostile.rs`):
//! setting the queue up, descriptors, publishing, notifying with or without EVENT_IDX, taking
//! used entries and waiting for them with interrupts.
//!
//! The ring memory belongs to the driver that made the queue (kernel memory below 32 MiB);
//! every access is checked to stay inside it.

use core::sync::atomic::{compiler_fence, Ordering};

use testkernel::virtq::{self, status, Layout};

use crate::virtio_mmio::{self, reg};
use crate::{cpu, interrupts};

/// One queue.
#[derive(Clone, Copy, Debug)]
pub struct Vq {
    /// The transport's MMIO base and command-line index.
    pub mmio: u64,
    pub transport: usize,
    /// The queue's index in the device.
    pub index: u16,
    /// Where its rings are, and their layout.
    pub ring: u64,
    pub layout: Layout,
    pub next_avail: u16,
    pub last_used: u16,
    pub event_idx: bool,
}

/// How waiting for a used entry ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// `(id, len)` of the entry.
    Used(u32, u32),
    /// The device set DEVICE_NEEDS_RESET.
    NeedsReset,
    /// Nothing within the time allowed.
    Timeout,
}

impl Vq {
    /// A queue of `layout.size` entries whose rings are at `ring` (`layout.total` bytes of the
    /// caller's memory). Not set up in the device yet.
    pub const fn new(mmio: u64, transport: usize, index: u16, ring: u64, layout: Layout) -> Self {
        Vq {
            mmio,
            transport,
            index,
            ring,
            layout,
            next_avail: 0,
            last_used: 0,
            event_idx: false,
        }
    }

    fn at(&self, off: u64, len: u64) -> u64 {
        assert!(off + len <= self.layout.total, "outside the queue's rings");
        self.ring + off
    }

    fn put<T: Copy>(&self, off: u64, v: T) {
        let a = self.at(off, core::mem::size_of::<T>() as u64);
        // SAFETY: `a` lies in this queue's ring memory (checked by `at`), kernel memory only
        // this driver and its device use; the values are integers at their natural alignment.
        unsafe { core::ptr::write_volatile(a as *mut T, v) }
    }

    fn get<T: Copy>(&self, off: u64) -> T {
        let a = self.at(off, core::mem::size_of::<T>() as u64);
        // SAFETY: as for `put`; integers have no invalid bit patterns.
        unsafe { core::ptr::read_volatile(a as *const T) }
    }

    /// Programs the queue into the device (between FEATURES_OK and DRIVER_OK): its size, ring
    /// addresses, QueueReady. The rings start empty.
    pub fn setup(&mut self, event_idx: bool) -> Result<(), &'static str> {
        let b = self.mmio;
        let Some(max) = virtio_mmio::select_queue(b, u32::from(self.index)) else {
            return Err("queue is already live");
        };
        if max < u32::from(self.layout.size) {
            return Err("device queue smaller than the driver's");
        }
        virtio_mmio::write(b, reg::QUEUE_NUM, u32::from(self.layout.size));
        self.next_avail = 0;
        self.last_used = 0;
        self.event_idx = event_idx;
        let l = self.layout;
        self.put::<u32>(l.avail, 0);
        self.put::<u16>(l.used_event(), 0);
        self.put::<u32>(l.used, 0);
        self.put::<u16>(l.avail_event(), 0);
        let r = self.ring;
        virtio_mmio::set_queue_rings(b, r + l.desc, r + l.avail, r + l.used);
        Ok(())
    }

    /// Writes descriptor `i` (taken modulo the size).
    pub fn desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let d = self.layout.desc_at(i % self.layout.size);
        self.put(d, addr);
        self.put(d + 8, len);
        self.put(d + 12, flags);
        self.put(d + 14, next);
    }

    /// Makes the chain at `head` available (no notification yet).
    pub fn publish(&mut self, head: u16) {
        let l = self.layout;
        self.put(l.avail_ring(self.next_avail), head);
        self.next_avail = self.next_avail.wrapping_add(1);
        compiler_fence(Ordering::Release);
        self.put(l.avail_idx(), self.next_avail);
    }

    /// Sets the driver index directly (for malformed rings).
    pub fn set_avail_idx(&mut self, idx: u16) {
        self.next_avail = idx;
        compiler_fence(Ordering::Release);
        self.put(self.layout.avail_idx(), idx);
    }

    /// Writes driver ring entry `slot` without moving the index (for malformed rings).
    pub fn set_avail_entry(&self, slot: u16, head: u16) {
        self.put(self.layout.avail_ring(slot), head);
    }

    /// Notifies the device of chains published since the driver index was `old`, unless it
    /// said it does not need it.
    pub fn kick(&self, old: u16) {
        cpu::mb();
        let l = self.layout;
        let notify = if self.event_idx {
            virtq::need_event(self.get(l.avail_event()), self.next_avail, old)
        } else {
            self.get::<u16>(l.used_flags()) & virtq::USED_F_NO_NOTIFY == 0
        };
        if notify {
            self.notify();
        }
    }

    /// Notifies the device unconditionally.
    pub fn notify(&self) {
        virtio_mmio::write(self.mmio, reg::QUEUE_NOTIFY, u32::from(self.index));
    }

    /// The device's used index.
    pub fn used_idx(&self) -> u16 {
        self.get(self.layout.used_idx())
    }

    /// The next used entry `(id, len)`, if the device published one.
    pub fn take_used(&mut self) -> Option<(u32, u32)> {
        if self.used_idx() == self.last_used {
            return None;
        }
        compiler_fence(Ordering::Acquire);
        let e = self.layout.used_ring(self.last_used);
        let entry = (self.get(e), self.get(e + 4));
        self.last_used = self.last_used.wrapping_add(1);
        Some(entry)
    }

    /// Asks for an interrupt when the next entry is used (EVENT_IDX).
    pub fn want_interrupt(&self) {
        if self.event_idx {
            self.put(self.layout.used_event(), self.last_used);
            cpu::mb();
        }
    }

    /// Waits for the next used entry for up to `timeout` timer ticks: sleeps until an
    /// interrupt (or a tick) and checks DEVICE_NEEDS_RESET after a configuration interrupt and
    /// every 10 ticks.
    pub fn wait_used(&mut self, timeout: u64) -> Wait {
        let start = interrupts::ticks();
        let mut checked = start;
        let mut config_irqs = virtio_mmio::config_irqs(self.transport);
        loop {
            if let Some((id, len)) = self.take_used() {
                return Wait::Used(id, len);
            }
            self.want_interrupt();
            if let Some((id, len)) = self.take_used() {
                return Wait::Used(id, len);
            }
            let now = interrupts::ticks();
            let c = virtio_mmio::config_irqs(self.transport);
            if c != config_irqs || now.wrapping_sub(checked) >= 10 {
                config_irqs = c;
                checked = now;
                if virtio_mmio::read(self.mmio, reg::STATUS) & status::DEVICE_NEEDS_RESET != 0 {
                    return Wait::NeedsReset;
                }
            }
            if now.wrapping_sub(start) >= timeout {
                return Wait::Timeout;
            }
            // `sti` takes effect after `hlt` has started: no interrupt slips in between.
            cpu::cli();
            if self.used_idx() == self.last_used {
                cpu::sti_hlt();
            } else {
                cpu::sti();
            }
        }
    }
}
