//! The part of the i8042 keyboard controller that `reboot=k` needs: the CPU reset pulse.

use crate::bus::BusDevice;
use vmm_sys_util::eventfd::EventFd;

/// Offset of the command port (0x64) from the data port (0x60).
const COMMAND_OFFSET: u64 = 4;
/// "Pulse output line 0": resets the CPU.
const CMD_RESET_CPU: u8 = 0xfe;

/// Signals `reset_evt` when the guest pulses the reset line. Sits at ports 0x60..=0x64.
pub struct I8042 {
    reset_evt: EventFd,
}

impl I8042 {
    pub fn new(reset_evt: EventFd) -> Self {
        I8042 { reset_evt }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        // Status register: output buffer empty, input buffer empty, system flag set.
        data.fill(0);
        if offset == COMMAND_OFFSET {
            if let Some(b) = data.first_mut() {
                *b = 0x04;
            }
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == COMMAND_OFFSET && data.first() == Some(&CMD_RESET_CPU) {
            if let Err(e) = self.reset_evt.write(1) {
                log::error!("i8042: cannot signal the reset: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_pulse_signals() {
        let evt = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut dev = I8042::new(evt.try_clone().unwrap());
        dev.write(0, &[0xfe]);
        assert!(evt.read().is_err(), "a data-port write is not a reset");
        dev.write(4, &[0xd1]);
        assert!(evt.read().is_err());
        dev.write(4, &[0xfe]);
        assert_eq!(evt.read().unwrap(), 1);
        let mut b = [0u8];
        dev.read(4, &mut b);
        assert_eq!(b[0], 0x04);
    }
}
