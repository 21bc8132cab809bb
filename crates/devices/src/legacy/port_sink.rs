//! Ports a guest pokes that need no emulation beyond an answer, and the boot-complete signal.

use crate::bus::BusDevice;
use std::time::Instant;

/// Reads all-ones, ignores writes (the POST port 0x80, PCI config probes on a PCI-less machine).
pub struct PortSink;

impl BusDevice for PortSink {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn write(&mut self, _offset: u64, _data: &[u8]) {}
}

/// The value a guest writes to port 0x3f0 when it has finished booting.
pub const BOOT_COMPLETE_MAGIC: u8 = 123;

/// Port 0x3f0: logs how long the guest took to boot when it writes [`BOOT_COMPLETE_MAGIC`].
pub struct BootSignal {
    start: Instant,
    pub booted_after: Option<std::time::Duration>,
}

impl BootSignal {
    pub fn new(start: Instant) -> Self {
        BootSignal {
            start,
            booted_after: None,
        }
    }
}

impl BusDevice for BootSignal {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == 0 && data.first() == Some(&BOOT_COMPLETE_MAGIC) && self.booted_after.is_none()
        {
            let t = self.start.elapsed();
            self.booted_after = Some(t);
            log::info!("guest boot completed {} us after start", t.as_micros());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_signal_records_once() {
        let mut b = BootSignal::new(Instant::now());
        b.write(0, &[1]);
        assert!(b.booted_after.is_none());
        b.write(0, &[BOOT_COMPLETE_MAGIC]);
        let first = b.booted_after.unwrap();
        b.write(0, &[BOOT_COMPLETE_MAGIC]);
        assert_eq!(b.booted_after.unwrap(), first);
        let mut d = [0u8; 2];
        PortSink.read(0, &mut d);
        assert_eq!(d, [0xff, 0xff]);
    }
}
