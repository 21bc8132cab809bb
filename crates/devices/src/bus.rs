//! An address bus that routes port I/O or MMIO accesses to the device owning the range.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A device that answers reads and writes on a bus.
///
/// `offset` is relative to the start of the range the device was inserted at.
pub trait BusDevice: Send {
    /// Fills `data` with what the device returns for a read at `offset`.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// Handles a write of `data` at `offset`.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// Errors from inserting into a bus.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    #[error("bus range 0x{base:x}+0x{len:x} overlaps an existing device")]
    Overlap { base: u64, len: u64 },
    #[error("bus range at 0x{0:x} has zero length")]
    ZeroLength(u64),
}

#[derive(Clone)]
struct Entry {
    len: u64,
    device: Arc<Mutex<dyn BusDevice>>,
}

/// Routes accesses by address. Cloning shares nothing: insert before cloning.
#[derive(Clone, Default)]
pub struct Bus {
    devices: BTreeMap<u64, Entry>,
}

impl Bus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts `device` at `[base, base + len)`.
    pub fn insert(
        &mut self,
        device: Arc<Mutex<dyn BusDevice>>,
        base: u64,
        len: u64,
    ) -> Result<(), BusError> {
        if len == 0 {
            return Err(BusError::ZeroLength(base));
        }
        let end = base
            .checked_add(len)
            .ok_or(BusError::Overlap { base, len })?;
        if let Some((&b, e)) = self.devices.range(..end).next_back() {
            if b + e.len > base {
                return Err(BusError::Overlap { base, len });
            }
        }
        self.devices.insert(base, Entry { len, device });
        Ok(())
    }

    /// Removes the device inserted at `base`.
    pub fn remove(&mut self, base: u64) -> bool {
        self.devices.remove(&base).is_some()
    }

    fn find(&self, addr: u64) -> Option<(u64, &Entry)> {
        let (&base, entry) = self.devices.range(..=addr).next_back()?;
        (addr - base < entry.len).then_some((addr - base, entry))
    }

    /// Reads from the device at `addr`; returns false (and leaves `data` alone) when none is there.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr) {
            Some((offset, entry)) => {
                lock(&entry.device).read(offset, data);
                true
            }
            None => false,
        }
    }

    /// Writes to the device at `addr`; returns false when none is there.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr) {
            Some((offset, entry)) => {
                lock(&entry.device).write(offset, data);
                true
            }
            None => false,
        }
    }
}

/// Locks a device, recovering from a poisoned lock (a panicking device thread must not take
/// every vCPU down with it).
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo(u8);
    impl BusDevice for Echo {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(self.0.wrapping_add(offset as u8));
        }
        fn write(&mut self, _offset: u64, data: &[u8]) {
            self.0 = data[0];
        }
    }

    #[test]
    fn routes_by_range_and_offset() {
        let mut bus = Bus::new();
        bus.insert(Arc::new(Mutex::new(Echo(10))), 0x3f8, 8)
            .unwrap();
        bus.insert(Arc::new(Mutex::new(Echo(20))), 0x60, 1).unwrap();
        let mut b = [0u8; 1];
        assert!(bus.read(0x3f9, &mut b));
        assert_eq!(b[0], 11);
        assert!(bus.read(0x60, &mut b));
        assert_eq!(b[0], 20);
        assert!(!bus.read(0x61, &mut b));
        assert!(!bus.read(0x400, &mut b));
        assert!(bus.write(0x3f8, &[5]));
        assert!(bus.read(0x3f8, &mut b));
        assert_eq!(b[0], 5);
    }

    #[test]
    fn rejects_overlap_and_empty() {
        let mut bus = Bus::new();
        bus.insert(Arc::new(Mutex::new(Echo(0))), 0x100, 0x10)
            .unwrap();
        let d = Arc::new(Mutex::new(Echo(0)));
        assert!(bus.insert(d.clone(), 0x10f, 1).is_err());
        assert!(bus.insert(d.clone(), 0xf8, 0x10).is_err());
        assert!(bus.insert(d.clone(), 0x50, 0).is_err());
        assert!(bus.insert(d.clone(), u64::MAX, 2).is_err());
        bus.insert(d, 0x110, 1).unwrap();
        assert!(bus.remove(0x110));
        assert!(!bus.remove(0x110));
    }
}
