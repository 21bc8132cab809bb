//! A NIC slot: what one virtio-net device shows the guest (MAC, link) and holds (its backend),
//! shared by the vCPU thread (configuration reads, start and reset), the device's thread and
//! the QMP thread (hot-plug).
//!
//! Locks: `inner` is held by start, reset, attach and detach for their whole length (they wait
//! for the device's thread, which never takes it), `config` and `interrupt` only to copy or
//! update a few words. Order: `inner`, then `config`, then `interrupt`.

use super::backend::NicBackend;
use super::config::format_mac;
use super::worker::WorkerHandle;
use crate::bus::lock;
use crate::virtio::{Interrupt, InterruptKind};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

/// What the configuration space shows, and what the guest has seen of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigState {
    pub mac: [u8; 6],
    /// A TAP is in the slot.
    pub link_up: bool,
    /// Bumped on every change, for the ConfigGeneration register.
    pub generation: u32,
    /// The driver has negotiated features since the last reset, so it has read the MAC (Linux
    /// reads it once, at probe) and will not read it again until it resets the device.
    pub mac_read: bool,
    /// The features the driver accepted (0 before it negotiates).
    pub acked: u64,
    /// The TAP's interface name, while one is plugged.
    pub tap: Option<String>,
    /// The backend moves frames in the host kernel (`vhost=on`).
    pub vhost: bool,
}

/// Frame counters (for the log; the guest has its own).
#[derive(Debug, Default)]
pub struct Stats {
    pub rx_frames: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub rx_dropped: AtomicU64,
    pub rx_errors: AtomicU64,
    pub tx_frames: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub tx_dropped: AtomicU64,
    pub tx_errors: AtomicU64,
}

pub(super) struct Inner {
    /// The backend while no thread serves the device (it owns it otherwise).
    pub backend: Option<NicBackend>,
    pub worker: Option<WorkerHandle>,
}

pub struct NicSlot {
    pub index: usize,
    config: Mutex<ConfigState>,
    interrupt: Mutex<Option<Arc<Interrupt>>>,
    pub(super) inner: Mutex<Inner>,
    pub stats: Stats,
}

/// Why a NIC slot refused a hot-plug request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("NIC slot {0} already holds a TAP")]
    SlotBusy(usize),
    #[error("NIC slot {0} holds no TAP")]
    SlotEmpty(usize),
    #[error("eth{index} has MAC {now} since the guest's driver started it and a running Linux guest does not read it again; plug in without mac, or with mac {now}")]
    MacFixed { index: usize, now: String },
    #[error("{0}")]
    Backend(String),
}

impl NicSlot {
    pub fn new(index: usize, mac: [u8; 6], backend: Option<NicBackend>) -> Self {
        let config = ConfigState {
            mac,
            link_up: backend.is_some(),
            tap: backend.as_ref().map(|b| b.tap.name().to_string()),
            vhost: backend.as_ref().is_some_and(|b| b.vhost.is_some()),
            ..Default::default()
        };
        Self {
            index,
            config: Mutex::new(config),
            interrupt: Mutex::new(None),
            inner: Mutex::new(Inner {
                backend,
                worker: None,
            }),
            stats: Stats::default(),
        }
    }

    pub fn config(&self) -> ConfigState {
        lock(&self.config).clone()
    }

    pub(super) fn set_interrupt(&self, interrupt: Option<Arc<Interrupt>>) {
        *lock(&self.interrupt) = interrupt;
    }

    pub(super) fn restore_config(&self, c: ConfigState) {
        *lock(&self.config) = c;
    }

    pub(super) fn set_acked(&self, acked: u64) {
        let mut c = lock(&self.config);
        c.acked = acked;
        c.mac_read = true;
    }

    pub(super) fn clear_negotiation(&self) {
        let mut c = lock(&self.config);
        c.acked = 0;
        c.mac_read = false;
    }

    /// Shows an empty slot (its backend is gone).
    pub(super) fn clear_backend(&self) {
        self.publish(|c| {
            c.link_up = false;
            c.tap = None;
            c.vhost = false;
        });
    }

    /// Shows the link as up or down and tells a running driver.
    pub(super) fn set_link(&self, up: bool) {
        self.publish(|c| c.link_up = up);
    }

    fn publish(&self, change: impl FnOnce(&mut ConfigState)) {
        {
            let mut c = lock(&self.config);
            change(&mut c);
            c.generation = c.generation.wrapping_add(1);
        }
        if let Some(irq) = lock(&self.interrupt).as_ref() {
            if let Err(e) = irq.trigger(InterruptKind::ConfigChange) {
                log::error!("virtio-net {}: cannot raise config-change: {e}", self.index);
            }
        }
    }
}

/// A handle on a NIC slot for the machine and the QMP thread: hot-plug works through it while
/// the guest runs. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct NetHandle {
    pub(super) slot: Arc<NicSlot>,
}

impl NetHandle {
    /// The slot index given to [`super::Net::new`] (0 is eth0).
    pub fn index(&self) -> usize {
        self.slot.index
    }

    /// The MAC address the guest sees.
    pub fn mac(&self) -> [u8; 6] {
        self.slot.config().mac
    }

    /// Whether a TAP is plugged in.
    pub fn is_attached(&self) -> bool {
        self.slot.config().link_up
    }

    /// The plugged TAP's interface name.
    pub fn tap_name(&self) -> Option<String> {
        self.slot.config().tap
    }

    /// What the guest and the device have agreed on, and what the slot holds.
    pub fn state(&self) -> ConfigState {
        self.slot.config()
    }

    /// Frame counters.
    pub fn stats(&self) -> &Stats {
        &self.slot.stats
    }

    /// Plugs `backend` into the empty slot; with `mac`, the guest must not have read another
    /// MAC yet. The guest sees the link come up through a config-change interrupt. On failure
    /// nothing changed, and the backend comes back when it is still whole.
    pub fn attach(
        &self,
        backend: NicBackend,
        mac: Option<[u8; 6]>,
    ) -> Result<(), (NetError, Option<NicBackend>)> {
        let mut inner = lock(&self.slot.inner);
        let c = self.slot.config();
        if c.link_up || inner.backend.is_some() {
            return Err((NetError::SlotBusy(self.slot.index), Some(backend)));
        }
        if let Some(m) = mac {
            if m != c.mac && c.mac_read {
                let e = NetError::MacFixed {
                    index: self.slot.index,
                    now: format_mac(&c.mac),
                };
                return Err((e, Some(backend)));
            }
        }
        let name = backend.tap.name().to_string();
        let vhost = backend.vhost.is_some();
        match inner.worker.as_ref() {
            Some(w) => w
                .attach(backend)
                .map_err(|(back, why)| (NetError::Backend(format!("TAP {name}: {why}")), back))?,
            None => inner.backend = Some(backend),
        }
        self.slot.publish(|c| {
            if let Some(m) = mac {
                c.mac = m;
            }
            c.link_up = true;
            c.tap = Some(name);
            c.vhost = vhost;
        });
        Ok(())
    }

    /// Unplugs the TAP: the guest sees the link go down; the backend is returned (dropping it
    /// closes the TAP and the vhost device).
    pub fn detach(&self) -> Result<NicBackend, NetError> {
        let mut inner = lock(&self.slot.inner);
        let backend = match inner.worker.as_ref() {
            Some(w) => w.detach(),
            None => inner.backend.take(),
        };
        let backend = backend.ok_or(NetError::SlotEmpty(self.slot.index))?;
        self.slot.publish(|c| {
            c.link_up = false;
            c.tap = None;
            c.vhost = false;
        });
        Ok(backend)
    }
}
