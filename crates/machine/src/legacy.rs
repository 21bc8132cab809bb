//! The legacy PC devices of the microvm on the port I/O bus: the 8250 UART (COM1), the i8042,
//! the CMOS RTC, the boot-complete port and the ports that need only an answer.

use crate::layout::{I8042_AUX_IRQ, I8042_KBD_IRQ, RTC_IRQ, SERIAL_IRQ};
use crate::snapshot::LegacyState;
use devices::legacy::{
    rtc, BootSignal, I8042Args, I8042Irqs, PortSink, Rtc, RtcArgs, SerialArgs, SerialDevice, I8042,
};
use devices::Bus;
use devices::Persist;
use kvm_ioctls::VmFd;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use vmm_sys_util::eventfd::EventFd;

/// The RTC's index port, whose writes KVM may record instead of exiting: the index only
/// matters to the next access of the data port (0x71), which exits.
pub const COALESCED_PORTS: &[(u16, u32)] = &[(0x70, 1)];

/// What the event loop serves of the legacy devices.
pub struct LegacyDevices {
    pub serial: Arc<Mutex<SerialDevice>>,
    /// Signalled when the guest has drained the UART's receive FIFO.
    pub serial_input_ready: Arc<EventFd>,
    /// Signalled when the guest resets the machine through the i8042.
    pub reset_evt: EventFd,
    /// The RTC, whose interrupt timer the event loop polls.
    pub rtc: Arc<Mutex<Rtc>>,
    pub i8042: Arc<Mutex<I8042>>,
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

/// Creates the legacy devices (as a snapshot saved them, given `restore`), wires their
/// interrupts and puts them on `pio`. The UART writes to `serial_out`.
pub fn attach_legacy_devices(
    vm: &VmFd,
    pio: &mut Bus,
    serial_out: Box<dyn Write + Send>,
    start: Instant,
    restore: Option<&LegacyState>,
) -> Result<LegacyDevices, String> {
    let bus_err = |e: devices::BusError| e.to_string();
    let serial_input_ready = Arc::new(eventfd("serial")?);
    let serial_irq = irqfd(vm, SERIAL_IRQ, "serial")?;
    let serial = match restore {
        None => SerialDevice::new(serial_irq, serial_input_ready.clone(), serial_out),
        Some(st) => SerialDevice::restore(
            SerialArgs {
                irq: serial_irq,
                input_ready: serial_input_ready.clone(),
                out: serial_out,
            },
            &st.serial,
        )?,
    };
    let serial = Arc::new(Mutex::new(serial));
    pio.insert(serial.clone(), 0x3f8, 8).map_err(bus_err)?;

    let reset_evt = eventfd("reset")?;
    let irqs = I8042Irqs {
        kbd: irqfd(vm, I8042_KBD_IRQ, "i8042 keyboard")?,
        aux: irqfd(vm, I8042_AUX_IRQ, "i8042 aux")?,
    };
    let reset = reset_evt.try_clone().map_err(|e| format!("reset: {e}"))?;
    let i8042 = match restore {
        None => I8042::new(reset, Some(irqs)),
        Some(st) => match I8042::restore(
            I8042Args {
                reset_evt: reset,
                irqs: Some(irqs),
            },
            &st.i8042,
        ) {
            Ok(d) => d,
            Err(never) => match never {},
        },
    };
    let i8042 = Arc::new(Mutex::new(i8042));
    pio.insert(i8042.clone(), 0x60, 5).map_err(bus_err)?;

    let rtc_irq = irqfd(vm, RTC_IRQ, "RTC")?;
    let rtc = match restore {
        None => Rtc::new(rtc_irq, Box::new(rtc::host_wall_clock)),
        Some(st) => Rtc::restore(
            RtcArgs {
                irq: rtc_irq,
                clock: Box::new(rtc::host_wall_clock),
            },
            &st.rtc,
        ),
    }
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
        i8042,
    })
}
