//! The i8042 keyboard controller at ports 0x60 (data) and 0x64 (status and command), with
//! IRQ 1 (keyboard port) and IRQ 12 (aux port).
//!
//! The controller answers every command Linux's i8042 probe sends (read and write the command
//! byte, self tests, enable and disable the ports, the aux and keyboard loopbacks, the output
//! port) and delivers its bytes with the interrupts the command byte enables, so the probe and
//! its aux IRQ test finish at once instead of waiting out their timeouts. No keyboard and no
//! mouse are attached: a byte sent to either device is answered with 0xfe and the timeout bit,
//! which is how a controller reports an empty port, so PS/2 drivers give up at once too.
//!
//! The reset line: the pulse command (0xfe, or any 0xf0..=0xfe with bit 0 clear) and a write of
//! the output port with bit 0 clear both reset the machine, which `reboot=k` relies on.

use crate::bus::BusDevice;
use std::collections::VecDeque;
use vmm_sys_util::eventfd::EventFd;

/// Offset of the command port (0x64) from the data port (0x60).
const COMMAND_OFFSET: u64 = 4;

const STATUS_OBF: u8 = 0x01;
const STATUS_SYS: u8 = 0x04;
const STATUS_CMD: u8 = 0x08;
const STATUS_UNLOCKED: u8 = 0x10;
const STATUS_AUX: u8 = 0x20;
const STATUS_TIMEOUT: u8 = 0x40;

const CTR_KBD_INT: u8 = 0x01;
const CTR_AUX_INT: u8 = 0x02;
const CTR_SYS: u8 = 0x04;
const CTR_KBD_DISABLED: u8 = 0x10;
const CTR_AUX_DISABLED: u8 = 0x20;
const CTR_XLATE: u8 = 0x40;

const CMD_READ_CTR: u8 = 0x20;
const CMD_WRITE_CTR: u8 = 0x60;
const CMD_PASSWORD_TEST: u8 = 0xa4;
const CMD_AUX_DISABLE: u8 = 0xa7;
const CMD_AUX_ENABLE: u8 = 0xa8;
const CMD_AUX_TEST: u8 = 0xa9;
const CMD_SELF_TEST: u8 = 0xaa;
const CMD_KBD_TEST: u8 = 0xab;
const CMD_KBD_DISABLE: u8 = 0xad;
const CMD_KBD_ENABLE: u8 = 0xae;
const CMD_READ_INPUT: u8 = 0xc0;
const CMD_READ_OUTPUT: u8 = 0xd0;
const CMD_WRITE_OUTPUT: u8 = 0xd1;
const CMD_KBD_LOOP: u8 = 0xd2;
const CMD_AUX_LOOP: u8 = 0xd3;
const CMD_AUX_SEND: u8 = 0xd4;
const CMD_A20_OFF: u8 = 0xdd;
const CMD_A20_ON: u8 = 0xdf;
const CMD_PULSE_FIRST: u8 = 0xf0;

const SELF_TEST_OK: u8 = 0x55;
const PORT_TEST_OK: u8 = 0x00;
const NO_PASSWORD: u8 = 0xf1;
/// What a port with no device answers (with the timeout bit).
const NO_DEVICE: u8 = 0xfe;
/// Output port: bit 0 is the reset line (active low), bit 1 the A20 gate.
const OUTPUT_RESET_LINE: u8 = 0x01;
const OUTPUT_A20: u8 = 0x02;
const OUTPUT_PORT_DEFAULT: u8 = 0xcf;
/// The controller holds one byte; a few more queue behind it rather than being lost.
const QUEUE_LIMIT: usize = 16;

/// Which port a byte of the output buffer comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Source {
    Kbd,
    Aux,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct OutByte {
    value: u8,
    source: Source,
    timeout: bool,
}

/// The controller's interrupt lines (irqfds of GSI 1 and 12).
pub struct I8042Irqs {
    pub kbd: EventFd,
    pub aux: EventFd,
}

/// The i8042 at ports 0x60..=0x64.
pub struct I8042 {
    reset_evt: EventFd,
    irqs: Option<I8042Irqs>,
    ctr: u8,
    output_port: u8,
    out: VecDeque<OutByte>,
    /// The last byte read, which the data port repeats while the buffer is empty.
    last: u8,
    /// A command waiting for its data byte.
    pending: Option<u8>,
    /// The last write went to the command port (status bit 3).
    last_was_command: bool,
    /// The controller's RAM (byte 0 is the command byte), for commands 0x21..=0x3f, 0x61..=0x7f.
    ram: [u8; 32],
}

impl I8042 {
    /// A controller that signals `reset_evt` on a CPU reset and raises `irqs` (none in unit
    /// tests of the reset line alone).
    pub fn new(reset_evt: EventFd, irqs: Option<I8042Irqs>) -> Self {
        I8042 {
            reset_evt,
            irqs,
            // What a BIOS leaves: both interrupts on, system flag, translation.
            ctr: CTR_KBD_INT | CTR_AUX_INT | CTR_SYS | CTR_XLATE,
            output_port: OUTPUT_PORT_DEFAULT,
            out: VecDeque::new(),
            last: 0,
            pending: None,
            last_was_command: true,
            ram: [0; 32],
        }
    }

    fn status(&self) -> u8 {
        let mut s = STATUS_UNLOCKED;
        if self.ctr & CTR_SYS != 0 {
            s |= STATUS_SYS;
        }
        if self.last_was_command {
            s |= STATUS_CMD;
        }
        if let Some(b) = self.out.front() {
            s |= STATUS_OBF;
            if b.source == Source::Aux {
                s |= STATUS_AUX;
            }
            if b.timeout {
                s |= STATUS_TIMEOUT;
            }
        }
        s
    }

    fn push(&mut self, value: u8, source: Source, timeout: bool) {
        if self.out.len() >= QUEUE_LIMIT {
            log::debug!("i8042: output buffer full, byte 0x{value:02x} dropped");
            return;
        }
        self.out.push_back(OutByte {
            value,
            source,
            timeout,
        });
        if self.out.len() == 1 {
            self.interrupt();
        }
    }

    /// Raises the interrupt of the byte at the head of the buffer, if its port's is enabled.
    fn interrupt(&self) {
        let (Some(irqs), Some(head)) = (&self.irqs, self.out.front()) else {
            return;
        };
        let evt = match head.source {
            Source::Kbd if self.ctr & CTR_KBD_INT != 0 => &irqs.kbd,
            Source::Aux if self.ctr & CTR_AUX_INT != 0 => &irqs.aux,
            _ => return,
        };
        if let Err(e) = evt.write(1) {
            log::error!("i8042: cannot raise the interrupt: {e}");
        }
    }

    fn reset_cpu(&self) {
        if let Err(e) = self.reset_evt.write(1) {
            log::error!("i8042: cannot signal the reset: {e}");
        }
    }

    fn set_ctr(&mut self, v: u8) {
        self.ctr = v;
        self.ram[0] = v;
        // Enabling an interrupt with a byte waiting delivers it.
        self.interrupt();
    }

    fn command(&mut self, cmd: u8) {
        match cmd {
            CMD_READ_CTR => self.push(self.ctr, Source::Kbd, false),
            0x21..=0x3f => self.push(self.ram[usize::from(cmd & 0x1f)], Source::Kbd, false),
            CMD_WRITE_CTR..=0x7f
            | CMD_WRITE_OUTPUT
            | CMD_KBD_LOOP
            | CMD_AUX_LOOP
            | CMD_AUX_SEND => self.pending = Some(cmd),
            CMD_PASSWORD_TEST => self.push(NO_PASSWORD, Source::Kbd, false),
            CMD_AUX_DISABLE => self.ctr |= CTR_AUX_DISABLED,
            CMD_AUX_ENABLE => self.ctr &= !CTR_AUX_DISABLED,
            CMD_AUX_TEST | CMD_KBD_TEST => self.push(PORT_TEST_OK, Source::Kbd, false),
            CMD_SELF_TEST => self.push(SELF_TEST_OK, Source::Kbd, false),
            CMD_KBD_DISABLE => self.ctr |= CTR_KBD_DISABLED,
            CMD_KBD_ENABLE => self.ctr &= !CTR_KBD_DISABLED,
            // Input port: keyboard not inhibited.
            CMD_READ_INPUT => self.push(0x80, Source::Kbd, false),
            CMD_READ_OUTPUT => self.push(self.output_port, Source::Kbd, false),
            CMD_A20_OFF => self.output_port &= !OUTPUT_A20,
            CMD_A20_ON => self.output_port |= OUTPUT_A20,
            // Pulse output lines: a clear bit 0 pulses the reset line.
            CMD_PULSE_FIRST..=0xff if cmd & OUTPUT_RESET_LINE == 0 => self.reset_cpu(),
            _ => log::debug!("i8042: command 0x{cmd:02x} ignored"),
        }
        self.ram[0] = self.ctr;
    }

    fn data(&mut self, v: u8) {
        match self.pending.take() {
            Some(CMD_WRITE_CTR) => self.set_ctr(v),
            Some(cmd @ 0x61..=0x7f) => self.ram[usize::from(cmd & 0x1f)] = v,
            Some(CMD_WRITE_OUTPUT) => {
                self.output_port = v;
                if v & OUTPUT_RESET_LINE == 0 {
                    self.reset_cpu();
                }
            }
            Some(CMD_KBD_LOOP) => self.push(v, Source::Kbd, false),
            Some(CMD_AUX_LOOP) => self.push(v, Source::Aux, false),
            // A byte for the mouse, or (no command pending) for the keyboard: neither is there.
            Some(CMD_AUX_SEND) => self.push(NO_DEVICE, Source::Aux, true),
            _ => {
                // Writing to the keyboard re-enables its interface, as on real controllers.
                self.ctr &= !CTR_KBD_DISABLED;
                self.push(NO_DEVICE, Source::Kbd, true);
            }
        }
    }
}

/// The controller's snapshot state.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct I8042State {
    ctr: u8,
    output_port: u8,
    out: Vec<OutByte>,
    last: u8,
    pending: Option<u8>,
    last_was_command: bool,
    ram: Vec<u8>,
}

/// What a restored controller needs: the reset event and its interrupt lines.
pub struct I8042Args {
    pub reset_evt: EventFd,
    pub irqs: Option<I8042Irqs>,
}

impl crate::Persist for I8042 {
    type State = I8042State;
    type ConstructorArgs = I8042Args;
    type Error = std::convert::Infallible;

    fn save(&self) -> I8042State {
        I8042State {
            ctr: self.ctr,
            output_port: self.output_port,
            out: self.out.iter().copied().collect(),
            last: self.last,
            pending: self.pending,
            last_was_command: self.last_was_command,
            ram: self.ram.to_vec(),
        }
    }

    fn restore(args: I8042Args, st: &I8042State) -> Result<Self, Self::Error> {
        let mut dev = I8042::new(args.reset_evt, args.irqs);
        dev.ctr = st.ctr;
        dev.output_port = st.output_port;
        dev.out = st.out.iter().copied().take(QUEUE_LIMIT).collect();
        dev.last = st.last;
        dev.pending = st.pending;
        dev.last_was_command = st.last_was_command;
        let n = st.ram.len().min(dev.ram.len());
        dev.ram[..n].copy_from_slice(&st.ram[..n]);
        Ok(dev)
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let Some(b) = data.first_mut() else { return };
        match offset {
            0 => {
                if let Some(byte) = self.out.pop_front() {
                    self.last = byte.value;
                    self.interrupt();
                }
                *b = self.last;
            }
            COMMAND_OFFSET => *b = self.status(),
            _ => *b = 0xff,
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&v) = data.first() else { return };
        match offset {
            0 => {
                self.last_was_command = false;
                self.data(v);
            }
            COMMAND_OFFSET => {
                self.last_was_command = true;
                // A new command abandons one still waiting for its data byte.
                self.pending = None;
                self.command(v);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
