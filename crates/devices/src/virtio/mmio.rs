//! The virtio-mmio transport, version 2 (virtio 1.x section 4.2.2): one 0x1000-byte register
//! window per device, accessed by vCPU threads on MMIO exits.
//!
//! Queue notifications: the machine registers each of [`MmioTransport::queue_evts`] as a KVM
//! ioeventfd on `base + MMIO_QUEUE_NOTIFY_OFFSET` (4 bytes) with the queue index as datamatch, so
//! a notify normally never exits to user space; a QueueNotify write that does reach the
//! transport signals the same eventfd. Interrupts go through [`Interrupt`] and its irqfd.

use super::features::{self, bit};
use super::persist::{QueueConfigState, QueuePosition, TransportState};
use super::{status, ActivateError, Interrupt, InterruptKind, VirtioDevice};
use crate::bus::BusDevice;
use std::sync::Arc;
use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Size of one transport's MMIO window.
pub const MMIO_WINDOW_SIZE: u64 = 0x1000;
/// Offset of QueueNotify in the window: where the queue ioeventfds go.
pub const MMIO_QUEUE_NOTIFY_OFFSET: u64 = regs::QUEUE_NOTIFY;

const MAGIC_VALUE: u32 = 0x7472_6976; // "virt"
const VERSION: u32 = 2;
/// VendorID: "RIVS" as little-endian bytes (this VMM's StratoVirt-compatible vendor tag).
pub const VENDOR_ID: u32 = 0x5356_4952;

/// Transport features the transport cannot honour, masked out of whatever a device offers.
const UNSUPPORTED_FEATURES: u64 =
    bit(features::RING_PACKED) | bit(features::NOTIFICATION_DATA) | bit(features::RING_RESET);

/// Register offsets (virtio 1.x, 4.2.2 "MMIO Device Register Layout").
mod regs {
    pub const MAGIC_VALUE: u64 = 0x000;
    pub const VERSION: u64 = 0x004;
    pub const DEVICE_ID: u64 = 0x008;
    pub const VENDOR_ID: u64 = 0x00c;
    pub const DEVICE_FEATURES: u64 = 0x010;
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    pub const DRIVER_FEATURES: u64 = 0x020;
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    pub const QUEUE_SEL: u64 = 0x030;
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    pub const QUEUE_NUM: u64 = 0x038;
    pub const QUEUE_READY: u64 = 0x044;
    pub const QUEUE_NOTIFY: u64 = 0x050;
    pub const INTERRUPT_STATUS: u64 = 0x060;
    pub const INTERRUPT_ACK: u64 = 0x064;
    pub const STATUS: u64 = 0x070;
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    pub const SHM_LEN_LOW: u64 = 0x0b0;
    pub const SHM_LEN_HIGH: u64 = 0x0b4;
    pub const SHM_BASE_LOW: u64 = 0x0b8;
    pub const SHM_BASE_HIGH: u64 = 0x0bc;
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    pub const CONFIG: u64 = 0x100;
}

/// What the driver wrote about one queue; turned into a `Queue` at activation.
#[derive(Clone, Debug)]
struct QueueConfig {
    max_size: u16,
    size: u16,
    ready: bool,
    desc: u64,
    driver: u64,
    device: u64,
}

impl QueueConfig {
    fn new(max_size: u16) -> Self {
        Self {
            max_size,
            size: max_size,
            ready: false,
            desc: 0,
            driver: 0,
            device: 0,
        }
    }

    /// Builds the queue the device gets, checking what the driver wrote.
    fn build(&self, mem: &GuestMemoryMmap, event_idx: bool) -> Result<Queue, String> {
        if !self.ready {
            return Err("not ready".into());
        }
        if self.driver == 0 {
            // virtio-queue takes a driver area at 0 for "never set up" and would refuse to
            // serve it; refuse it here, where the error is clear.
            return Err("driver area at guest address 0 is not supported".into());
        }
        let mut q = Queue::new(self.max_size).map_err(|e| e.to_string())?;
        q.try_set_size(self.size)
            .map_err(|e| format!("size {}: {e}", self.size))?;
        q.try_set_desc_table_address(GuestAddress(self.desc))
            .map_err(|e| format!("descriptor table 0x{:x}: {e}", self.desc))?;
        q.try_set_avail_ring_address(GuestAddress(self.driver))
            .map_err(|e| format!("driver area 0x{:x}: {e}", self.driver))?;
        q.try_set_used_ring_address(GuestAddress(self.device))
            .map_err(|e| format!("device area 0x{:x}: {e}", self.device))?;
        q.set_event_idx(event_idx);
        q.set_ready(true);
        if !q.is_valid(mem) {
            return Err("rings outside guest memory".into());
        }
        Ok(q)
    }
}

/// Replaces the low or high half of a 64-bit address.
fn set_half(addr: &mut u64, value: u32, high: bool) {
    *addr = if high {
        (*addr & 0xffff_ffff) | (u64::from(value) << 32)
    } else {
        (*addr & !0xffff_ffff) | u64::from(value)
    };
}

/// A virtio-mmio (version 2) transport for one device.
pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    mem: GuestMemoryMmap,
    interrupt: Arc<Interrupt>,
    queues: Vec<QueueConfig>,
    queue_evts: Vec<EventFd>,
    device_features_sel: u32,
    driver_features_sel: u32,
    acked_features: u64,
    queue_sel: u32,
    status: u32,
    activated: bool,
}

impl MmioTransport {
    /// A transport for `device` over guest memory `mem`; `irqfd` is the eventfd the machine
    /// registers as the irqfd of the device's GSI. Creates one queue eventfd per queue.
    pub fn new(
        mem: GuestMemoryMmap,
        device: Box<dyn VirtioDevice>,
        irqfd: EventFd,
    ) -> std::io::Result<Self> {
        let queues: Vec<QueueConfig> = device
            .queue_max_sizes()
            .iter()
            .map(|&m| QueueConfig::new(m))
            .collect();
        let queue_evts = queues
            .iter()
            .map(|_| EventFd::new(EFD_NONBLOCK))
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Self {
            device,
            mem,
            interrupt: Arc::new(Interrupt::new(irqfd)),
            queues,
            queue_evts,
            device_features_sel: 0,
            driver_features_sel: 0,
            acked_features: 0,
            queue_sel: 0,
            status: 0,
            activated: false,
        })
    }

    /// One eventfd per queue, to register as KVM ioeventfds at `base + MMIO_QUEUE_NOTIFY_OFFSET`
    /// with datamatch = the index in this slice (a 4-byte write).
    pub fn queue_evts(&self) -> &[EventFd] {
        &self.queue_evts
    }

    /// The device's interrupt (status register and irqfd).
    pub fn interrupt(&self) -> &Arc<Interrupt> {
        &self.interrupt
    }

    /// Raises a configuration change interrupt (after a change the device itself did not
    /// announce), if the driver has started the device.
    pub fn notify_config_change(&self) {
        if self.activated {
            if let Err(e) = self.interrupt.trigger(InterruptKind::ConfigChange) {
                log::error!("virtio-mmio: cannot raise the config-change interrupt: {e}");
            }
        }
    }

    /// The device behind the transport.
    pub fn device(&self) -> &dyn VirtioDevice {
        self.device.as_ref()
    }

    /// Whether the driver has started the device (DRIVER_OK accepted).
    pub fn is_activated(&self) -> bool {
        self.activated
    }

    /// The features the driver accepted.
    pub fn acked_features(&self) -> u64 {
        self.acked_features
    }

    fn offered_features(&self) -> u64 {
        (self.device.avail_features() | bit(features::VERSION_1)) & !UNSUPPORTED_FEATURES
    }

    fn selected_queue(&self) -> Option<&QueueConfig> {
        self.queues.get(self.queue_sel as usize)
    }

    /// Queue registers may be written between FEATURES_OK and DRIVER_OK only.
    fn queue_config_mut(&mut self) -> Option<&mut QueueConfig> {
        let writable = self.status & status::FEATURES_OK != 0
            && self.status & (status::DRIVER_OK | status::FAILED) == 0;
        if !writable {
            log::debug!(
                "virtio-mmio: queue register write in status 0x{:x}",
                self.status
            );
            return None;
        }
        self.queues.get_mut(self.queue_sel as usize)
    }

    fn read_reg(&self, offset: u64) -> u32 {
        match offset {
            regs::MAGIC_VALUE => MAGIC_VALUE,
            regs::VERSION => VERSION,
            regs::DEVICE_ID => self.device.device_type(),
            regs::VENDOR_ID => VENDOR_ID,
            regs::DEVICE_FEATURES => match self.device_features_sel {
                0 => self.offered_features() as u32,
                1 => (self.offered_features() >> 32) as u32,
                _ => 0,
            },
            regs::QUEUE_NUM_MAX => self.selected_queue().map_or(0, |q| q.max_size.into()),
            regs::QUEUE_READY => self.selected_queue().map_or(0, |q| q.ready.into()),
            regs::INTERRUPT_STATUS => self.interrupt.status(),
            regs::STATUS => {
                let needs_reset = if self.interrupt.needs_reset() {
                    status::DEVICE_NEEDS_RESET
                } else {
                    0
                };
                self.status | needs_reset
            }
            // No shared memory regions: a length of all ones says so.
            regs::SHM_LEN_LOW | regs::SHM_LEN_HIGH | regs::SHM_BASE_LOW | regs::SHM_BASE_HIGH => {
                u32::MAX
            }
            regs::CONFIG_GENERATION => self.device.config_generation(),
            _ => 0,
        }
    }

    fn write_reg(&mut self, offset: u64, value: u32) {
        match offset {
            regs::DEVICE_FEATURES_SEL => self.device_features_sel = value,
            regs::DRIVER_FEATURES => self.write_driver_features(value),
            regs::DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            regs::QUEUE_SEL => self.queue_sel = value,
            regs::QUEUE_NUM => {
                if let Some(q) = self.queue_config_mut() {
                    // Out-of-range sizes are kept and refused at activation.
                    q.size = u16::try_from(value).unwrap_or(0);
                }
            }
            regs::QUEUE_READY => {
                if let Some(q) = self.queue_config_mut() {
                    q.ready = value == 1;
                }
            }
            regs::QUEUE_NOTIFY => self.notify(value),
            regs::INTERRUPT_ACK => self.interrupt.ack(value),
            regs::STATUS => self.write_status(value),
            regs::QUEUE_DESC_LOW | regs::QUEUE_DESC_HIGH => {
                if let Some(q) = self.queue_config_mut() {
                    set_half(&mut q.desc, value, offset == regs::QUEUE_DESC_HIGH);
                }
            }
            regs::QUEUE_DRIVER_LOW | regs::QUEUE_DRIVER_HIGH => {
                if let Some(q) = self.queue_config_mut() {
                    set_half(&mut q.driver, value, offset == regs::QUEUE_DRIVER_HIGH);
                }
            }
            regs::QUEUE_DEVICE_LOW | regs::QUEUE_DEVICE_HIGH => {
                if let Some(q) = self.queue_config_mut() {
                    set_half(&mut q.device, value, offset == regs::QUEUE_DEVICE_HIGH);
                }
            }
            _ => log::debug!("virtio-mmio: write 0x{value:x} to unknown register 0x{offset:x}"),
        }
    }

    fn write_driver_features(&mut self, value: u32) {
        if self.status & status::DRIVER == 0 || self.status & status::FEATURES_OK != 0 {
            log::debug!("virtio-mmio: feature write in status 0x{:x}", self.status);
            return;
        }
        let shift = match self.driver_features_sel {
            0 => 0,
            1 => 32,
            _ => return,
        };
        let mask = 0xffff_ffffu64 << shift;
        let offered = self.offered_features();
        self.acked_features =
            (self.acked_features & !mask) | ((u64::from(value) << shift) & mask & offered);
    }

    fn notify(&self, queue: u32) {
        match self.queue_evts.get(queue as usize) {
            Some(evt) => {
                if let Err(e) = evt.write(1) {
                    log::error!("virtio-mmio: cannot signal queue {queue}: {e}");
                }
            }
            None => log::debug!("virtio-mmio: notify for missing queue {queue}"),
        }
    }

    /// A driver write to Status: 0 resets, otherwise bits are added one step of the
    /// initialization sequence (3.1.1) at a time; a write that skips a step or clears bits is
    /// ignored.
    fn write_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        let known = status::ACKNOWLEDGE
            | status::DRIVER
            | status::FEATURES_OK
            | status::DRIVER_OK
            | status::FAILED;
        let value = value & known;
        let old = self.status;
        if value & old != old {
            log::warn!("virtio-mmio: status 0x{value:x} clears bits of 0x{old:x}; ignored");
            return;
        }
        let added = value & !old;
        let mut new = old | (added & (status::ACKNOWLEDGE | status::FAILED));
        let step_ok = |have: u32, need: u32| have & need == need;
        if added & status::DRIVER != 0 {
            if !step_ok(new, status::ACKNOWLEDGE) {
                log::warn!("virtio-mmio: DRIVER before ACKNOWLEDGE; ignored");
                return;
            }
            new |= status::DRIVER;
        }
        if added & status::FEATURES_OK != 0 {
            if !step_ok(new, status::DRIVER) {
                log::warn!("virtio-mmio: FEATURES_OK before DRIVER; ignored");
                return;
            }
            if self.acked_features & bit(features::VERSION_1) != 0 {
                new |= status::FEATURES_OK;
                self.device.ack_features(self.acked_features);
            } else {
                log::warn!("virtio-mmio: the driver did not accept VERSION_1; FEATURES_OK refused");
            }
        }
        if added & status::DRIVER_OK != 0 {
            if !step_ok(new, status::FEATURES_OK) || new & status::FAILED != 0 {
                log::warn!("virtio-mmio: DRIVER_OK in status 0x{new:x}; ignored");
                return;
            }
            new |= status::DRIVER_OK;
            self.status = new;
            self.activate();
            return;
        }
        self.status = new;
    }

    /// The snapshot state of the transport and its device (VM paused).
    pub fn save(&mut self) -> Result<TransportState, String> {
        let snap = self.device.save()?;
        Ok(TransportState {
            device_type: self.device.device_type(),
            status: self.status,
            acked_features: self.acked_features,
            device_features_sel: self.device_features_sel,
            driver_features_sel: self.driver_features_sel,
            queue_sel: self.queue_sel,
            queues: self
                .queues
                .iter()
                .map(|q| QueueConfigState {
                    max_size: q.max_size,
                    size: q.size,
                    ready: q.ready,
                    desc: q.desc,
                    driver: q.driver,
                    device: q.device,
                })
                .collect(),
            positions: if self.activated {
                snap.queues
            } else {
                Vec::new()
            },
            activated: self.activated,
            interrupt_status: self.interrupt.status(),
            needs_reset: self.interrupt.needs_reset(),
            device: snap.device,
        })
    }

    /// After a snapshot: the device serves its queues again.
    pub fn resume_after_save(&mut self) {
        self.device.resume_after_save();
    }

    /// A transport for `device` (rebuilt by the machine from the same configuration) as it was
    /// saved: registers, queues and, if the driver had started the device, the device started
    /// again with its queues where they were.
    pub fn restore(
        mem: GuestMemoryMmap,
        device: Box<dyn VirtioDevice>,
        irqfd: EventFd,
        state: &TransportState,
    ) -> Result<Self, String> {
        let mut t = Self::new(mem, device, irqfd).map_err(|e| e.to_string())?;
        if state.device_type != t.device.device_type() {
            return Err(format!(
                "the snapshot has device type {} here, the configuration gives type {}",
                state.device_type,
                t.device.device_type()
            ));
        }
        if state.queues.len() != t.queues.len()
            || state
                .queues
                .iter()
                .zip(&t.queues)
                .any(|(s, q)| s.max_size != q.max_size)
        {
            return Err("the snapshot's queues do not match the device's".into());
        }
        for (q, s) in t.queues.iter_mut().zip(&state.queues) {
            q.size = s.size;
            q.ready = s.ready;
            q.desc = s.desc;
            q.driver = s.driver;
            q.device = s.device;
        }
        t.status = state.status;
        t.acked_features = state.acked_features & t.offered_features();
        t.device_features_sel = state.device_features_sel;
        t.driver_features_sel = state.driver_features_sel;
        t.queue_sel = state.queue_sel;
        if state.status & status::FEATURES_OK != 0 {
            t.device.ack_features(t.acked_features);
        }
        t.interrupt
            .restore(state.interrupt_status, state.needs_reset);
        if state.activated {
            if state.positions.len() != t.device.queues_in_use(t.acked_features) {
                return Err("the snapshot lacks the queues' positions".into());
            }
            t.try_activate_at(Some(&state.positions))
                .map_err(|e| format!("restarting the device: {e}"))?;
            t.activated = true;
        }
        Ok(t)
    }

    fn activate(&mut self) {
        if let Err(e) = self.try_activate() {
            log::error!(
                "virtio-mmio: cannot start device type {}: {e}",
                self.device.device_type()
            );
            self.interrupt.set_needs_reset();
            return;
        }
        self.activated = true;
    }

    fn try_activate(&mut self) -> Result<(), ActivateError> {
        self.try_activate_at(None)
    }

    /// Builds the queues (at `positions` when restoring) and starts the device.
    fn try_activate_at(
        &mut self,
        positions: Option<&[QueuePosition]>,
    ) -> Result<(), ActivateError> {
        let event_idx = self.acked_features & bit(features::RING_EVENT_IDX) != 0;
        let in_use = self
            .device
            .queues_in_use(self.acked_features)
            .min(self.queues.len());
        for (index, qc) in self.queues.iter().enumerate().skip(in_use) {
            if qc.ready {
                log::debug!("virtio-mmio: queue {index} is set up but unused with these features");
            }
        }
        let queues = self
            .queues
            .iter()
            .take(in_use)
            .enumerate()
            .map(|(index, qc)| {
                let mut q = qc
                    .build(&self.mem, event_idx)
                    .map_err(|reason| ActivateError::Queue { index, reason })?;
                if let Some(p) = positions.and_then(|p| p.get(index)) {
                    p.apply(&mut q);
                }
                Ok(q)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let evts = self
            .queue_evts
            .iter()
            .take(in_use)
            .map(EventFd::try_clone)
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(ActivateError::EventFd)?;
        self.device
            .activate(self.mem.clone(), self.interrupt.clone(), queues, evts)
    }

    /// Device reset: stops the device and returns every register to its power-on value.
    fn reset(&mut self) {
        self.device.reset();
        self.activated = false;
        for q in &mut self.queues {
            *q = QueueConfig::new(q.max_size);
        }
        for evt in &self.queue_evts {
            // Drop notifications that arrived before the reset (EAGAIN when there were none).
            let _ = evt.read();
        }
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.acked_features = 0;
        self.queue_sel = 0;
        self.status = 0;
        self.interrupt.reset();
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= regs::CONFIG {
            if offset < MMIO_WINDOW_SIZE {
                self.device.read_config(offset - regs::CONFIG, data);
            } else {
                data.fill(0);
            }
            return;
        }
        data.fill(0);
        if data.len() != 4 || !offset.is_multiple_of(4) {
            log::debug!("virtio-mmio: {}-byte read at 0x{offset:x}", data.len());
            return;
        }
        data.copy_from_slice(&self.read_reg(offset).to_le_bytes());
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= regs::CONFIG {
            if offset < MMIO_WINDOW_SIZE {
                self.device.write_config(offset - regs::CONFIG, data);
            }
            return;
        }
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            log::debug!("virtio-mmio: {}-byte write at 0x{offset:x}", data.len());
            return;
        };
        if !offset.is_multiple_of(4) {
            return;
        }
        self.write_reg(offset, u32::from_le_bytes(bytes));
    }
}

impl Drop for MmioTransport {
    fn drop(&mut self) {
        self.device.reset();
    }
}

#[cfg(test)]
mod tests;
