//! The legacy PC devices of the microvm on the port I/O bus: the 8250 UART (COM1), the i8042,
//! the CMOS RTC, the boot-complete port and the ports that need only an answer.

use crate::layout::{I8042_AUX_IRQ, I8042_KBD_IRQ, RTC_IRQ, SERIAL_IRQ};
use devices::legacy::{rtc, BootSignal, I8042Irqs, PortSink, Rtc, SerialDevice, I8042};
use devices::Bus;
use kvm_ioctls::VmFd;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use vmm_sys_util::eventfd::EventFd;

/// What the event loop serves of the legacy devices.
pub struct LegacyDevices {
    pub serial: Arc<Mutex<SerialDevice>>,
    /// Signalled when the guest has drained the UART's receive FIFO.
    pub serial_input_ready: Arc<EventFd>,
    /// Signalled when the guest resets the machine through the i8042.
    pub reset_evt: EventFd,
    /// The RTC, whose interrupt timer the event loop polls.
    pub rtc: Arc<Mutex<Rtc>>,
}

fn irqfd(vm: &VmFd, gsi: u32, what: &str) -> Result<EventFd, String> {
    let evt = EventFd::new(libc::EFD_NONBLOCK).map_err(|e| format!("{what} irq: {e}"))?;
    vm.register_irqfd(&evt, gsi)
        .map_err(|e| format!("register the {what} irqfd (IRQ {gsi}): {e}"))?;
    Ok(evt)
}

fn eventfd(what: &str) -> Result<EventFd, String> {
    EventFd::new(libc::EFD_NONBLOCK).map_err(|e| format!("{what}: {e}"))
}

/// Creates the legacy devices, wires their interrupts and puts them on `pio`. The UART writes
/// to `serial_out`.
pub fn attach_legacy_devices(
    vm: &VmFd,
    pio: &mut Bus,
    serial_out: Box<dyn Write + Send>,
    start: Instant,
) -> Result<LegacyDevices, String> {
    let bus_err = |e: devices::BusError| e.to_string();
    let serial_input_ready = Arc::new(eventfd("serial")?);
    let serial = Arc::new(Mutex::new(SerialDevice::new(
        irqfd(vm, SERIAL_IRQ, "serial")?,
        serial_input_ready.clone(),
        serial_out,
    )));
    pio.insert(serial.clone(), 0x3f8, 8).map_err(bus_err)?;

    let reset_evt = eventfd("reset")?;
    let irqs = I8042Irqs {
        kbd: irqfd(vm, I8042_KBD_IRQ, "i8042 keyboard")?,
        aux: irqfd(vm, I8042_AUX_IRQ, "i8042 aux")?,
    };
    let reset = reset_evt.try_clone().map_err(|e| format!("reset: {e}"))?;
    pio.insert(Arc::new(Mutex::new(I8042::new(reset, Some(irqs)))), 0x60, 5)
        .map_err(bus_err)?;

    let rtc = Rtc::new(irqfd(vm, RTC_IRQ, "RTC")?, Box::new(rtc::host_wall_clock))
        .map_err(|e| format!("RTC timer: {e}"))?;
    let rtc = Arc::new(Mutex::new(rtc));
    pio.insert(rtc.clone(), 0x70, 2).map_err(bus_err)?;

    pio.insert(Arc::new(Mutex::new(BootSignal::new(start))), 0x3f0, 1)
        .map_err(bus_err)?;
    // The POST port, and PCI configuration probes on a machine without PCI.
    pio.insert(Arc::new(Mutex::new(PortSink)), 0x80, 1)
        .map_err(bus_err)?;
    pio.insert(Arc::new(Mutex::new(PortSink)), 0xcf8, 8)
        .map_err(bus_err)?;
    Ok(LegacyDevices {
        serial,
        serial_input_ready,
        reset_evt,
        rtc,
    })
}
