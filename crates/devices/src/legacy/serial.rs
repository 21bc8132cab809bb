//! The 8250 UART at 0x3f8 (IRQ 4), built on `vm-superio`.
//!
//! Output goes to a writer (the terminal with `-serial stdio`, nowhere otherwise). Input is pushed
//! by the event loop with [`SerialDevice::enqueue`]; when the guest drains the receive FIFO the
//! `input_ready` event fires so the loop can read more from the host.

use crate::bus::BusDevice;
use std::io::{self, Write};
use std::sync::Arc;
use vm_superio::serial::SerialEvents;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

/// Raises the UART interrupt through an irqfd.
pub struct IrqTrigger(EventFd);

impl Trigger for IrqTrigger {
    type E = io::Error;
    fn trigger(&self) -> io::Result<()> {
        self.0.write(1)
    }
}

/// Tells the event loop that the guest emptied the receive FIFO.
pub struct SerialInput {
    input_ready: Arc<EventFd>,
}

impl SerialEvents for SerialInput {
    fn buffer_read(&self) {}
    fn out_byte(&self) {}
    fn tx_lost_byte(&self) {}
    fn in_buffer_empty(&self) {
        let _ = self.input_ready.write(1);
    }
}

/// A writer that flushes every write, so a prompt without a newline reaches the terminal.
pub struct Unbuffered<W: Write>(pub W);

impl<W: Write> Write for Unbuffered<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.0.write(buf)?;
        self.0.flush()?;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

type Uart = Serial<IrqTrigger, SerialInput, Box<dyn Write + Send>>;

/// The UART as a bus device.
pub struct SerialDevice {
    uart: Uart,
}

impl SerialDevice {
    /// `irq` is the eventfd registered as the irqfd of GSI 4; `input_ready` is signalled when the
    /// guest has room for more input.
    pub fn new(irq: EventFd, input_ready: Arc<EventFd>, out: Box<dyn Write + Send>) -> Self {
        SerialDevice {
            uart: Serial::with_events(IrqTrigger(irq), SerialInput { input_ready }, out),
        }
    }

    /// Room left in the receive FIFO.
    pub fn input_capacity(&self) -> usize {
        self.uart.fifo_capacity()
    }

    /// Queues host input for the guest and raises the interrupt; returns how many bytes fit.
    pub fn enqueue(&mut self, bytes: &[u8]) -> usize {
        let room = self.uart.fifo_capacity().min(bytes.len());
        if room == 0 {
            return 0;
        }
        match self.uart.enqueue_raw_bytes(&bytes[..room]) {
            Ok(n) => n,
            Err(e) => {
                log::warn!("serial: input dropped: {e:?}");
                0
            }
        }
    }
}

/// The UART's snapshot state: its registers and the bytes in its receive FIFO.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SerialDeviceState {
    baud_divisor_low: u8,
    baud_divisor_high: u8,
    interrupt_enable: u8,
    interrupt_identification: u8,
    line_control: u8,
    line_status: u8,
    modem_control: u8,
    modem_status: u8,
    scratch: u8,
    in_buffer: Vec<u8>,
}

/// What a restored UART needs: its IRQ line, the input-room event and where output goes.
pub struct SerialArgs {
    pub irq: EventFd,
    pub input_ready: Arc<EventFd>,
    pub out: Box<dyn Write + Send>,
}

impl crate::Persist for SerialDevice {
    type State = SerialDeviceState;
    type ConstructorArgs = SerialArgs;
    type Error = String;

    fn save(&self) -> SerialDeviceState {
        let s = self.uart.state();
        SerialDeviceState {
            baud_divisor_low: s.baud_divisor_low,
            baud_divisor_high: s.baud_divisor_high,
            interrupt_enable: s.interrupt_enable,
            interrupt_identification: s.interrupt_identification,
            line_control: s.line_control,
            line_status: s.line_status,
            modem_control: s.modem_control,
            modem_status: s.modem_status,
            scratch: s.scratch,
            in_buffer: s.in_buffer,
        }
    }

    fn restore(args: SerialArgs, st: &SerialDeviceState) -> Result<Self, String> {
        let state = vm_superio::serial::SerialState {
            baud_divisor_low: st.baud_divisor_low,
            baud_divisor_high: st.baud_divisor_high,
            interrupt_enable: st.interrupt_enable,
            interrupt_identification: st.interrupt_identification,
            line_control: st.line_control,
            line_status: st.line_status,
            modem_control: st.modem_control,
            modem_status: st.modem_status,
            scratch: st.scratch,
            in_buffer: st.in_buffer.clone(),
        };
        let uart = Serial::from_state(
            &state,
            IrqTrigger(args.irq),
            SerialInput {
                input_ready: args.input_ready,
            },
            args.out,
        )
        .map_err(|e| format!("serial state: {e:?}"))?;
        Ok(SerialDevice { uart })
    }
}

impl BusDevice for SerialDevice {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let (Some(b), Ok(off)) = (data.first_mut(), u8::try_from(offset)) {
            *b = self.uart.read(off);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Some(&b), Ok(off)) = (data.first(), u8::try_from(offset)) {
            if let Err(e) = self.uart.write(off, b) {
                log::debug!("serial: write at offset {off}: {e:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn transmits_and_receives() {
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let ready = Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        let out = Shared::default();
        let mut dev = SerialDevice::new(
            irq.try_clone().unwrap(),
            ready.clone(),
            Box::new(out.clone()),
        );
        dev.write(0, b"h");
        dev.write(0, b"i");
        assert_eq!(out.0.lock().unwrap().as_slice(), b"hi");

        // Enable the receive-data interrupt, then feed input.
        dev.write(1, &[0x01]);
        assert_eq!(dev.enqueue(b"ok"), 2);
        assert_eq!(irq.read().unwrap(), 1);
        let mut b = [0u8];
        dev.read(5, &mut b);
        assert_eq!(b[0] & 1, 1, "LSR data ready");
        dev.read(0, &mut b);
        assert_eq!(b[0], b'o');
        dev.read(0, &mut b);
        assert_eq!(b[0], b'k');
        assert_eq!(ready.read().unwrap(), 1, "drained FIFO re-arms input");
        // Offsets beyond a byte are ignored, never a panic.
        dev.write(0x1_0000, &[1]);
        dev.read(0x1_0000, &mut b);
    }

    #[test]
    fn save_and_restore_keep_registers_and_pending_input() {
        use crate::Persist;
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let ready = Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        let mut dev = SerialDevice::new(
            irq.try_clone().unwrap(),
            ready.clone(),
            Box::new(io::sink()),
        );
        dev.write(1, &[0x01]); // receive interrupt on
        dev.write(7, &[0x5a]); // scratch
        dev.enqueue(b"xy");
        let state = dev.save();
        let out = Shared::default();
        let mut back = SerialDevice::restore(
            SerialArgs {
                irq: irq.try_clone().unwrap(),
                input_ready: ready,
                out: Box::new(out.clone()),
            },
            &state,
        )
        .unwrap();
        assert_eq!(back.save(), state);
        let mut b = [0u8];
        back.read(7, &mut b);
        assert_eq!(b[0], 0x5a);
        back.read(0, &mut b);
        assert_eq!(b[0], b'x', "pending input survives");
        back.write(0, b"!");
        assert_eq!(
            out.0.lock().unwrap().as_slice(),
            b"!",
            "output goes to the new writer"
        );
    }

    #[test]
    fn fifo_full_takes_what_fits() {
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let ready = Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        let mut dev = SerialDevice::new(irq, ready, Box::new(io::sink()));
        let cap = dev.input_capacity();
        let big = vec![b'x'; cap + 10];
        assert_eq!(dev.enqueue(&big), cap);
        assert_eq!(dev.enqueue(b"y"), 0);
    }
}
