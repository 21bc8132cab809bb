//! 8250/16550 UART at 0x3f8 (COM1): polled transmit, interrupt-driven
//! receive (IRQ 4) into a ring buffer the shell reads from.
//!
//! Output is not locked: only the boot CPU prints, except for exception
//! reports, which may interleave with it.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};

use crate::cpu::{inb, outb};
use testkernel::num::{fmt_dec, fmt_hex, NUM_BUF};

/// I/O base of COM1.
pub const COM1: u16 = 0x3f8;
/// ISA IRQ of COM1.
pub const COM1_IRQ: u8 = 4;

const THR: u16 = 0; // transmit holding (DLAB=0)
const RBR: u16 = 0; // receive buffer (DLAB=0)
const DLL: u16 = 0; // divisor low (DLAB=1)
const IER: u16 = 1; // interrupt enable (DLAB=0)
const DLM: u16 = 1; // divisor high (DLAB=1)
const FCR: u16 = 2; // FIFO control (write)
const IIR: u16 = 2; // interrupt identification (read)
const LCR: u16 = 3; // line control
const MCR: u16 = 4; // modem control
const LSR: u16 = 5; // line status

const LSR_DR: u8 = 0x01; // data ready
const LSR_THRE: u8 = 0x20; // transmit holding register empty
const IER_RDA: u8 = 0x01; // received data available interrupt
/// Longest wait for THRE, in polls, before sending anyway (no UART there).
const THRE_POLLS: u32 = 10_000;

/// Bytes that may still be written before LSR has to be polled again: 16
/// after THRE when the FIFO is on (the FIFO is empty then), else 1.
static TX_ROOM: AtomicU8 = AtomicU8::new(0);
static TX_BURST: AtomicU8 = AtomicU8::new(1);

/// Sets 115200 8N1, enables the FIFOs, leaves interrupts off.
pub fn init() {
    outb(COM1 + IER, 0);
    outb(COM1 + LCR, 0x80);
    outb(COM1 + DLL, 1);
    outb(COM1 + DLM, 0);
    outb(COM1 + LCR, 0x03);
    // FIFO on, both cleared, receive trigger level 1 byte.
    outb(COM1 + FCR, 0x07);
    // DTR, RTS and OUT2 (OUT2 gates the interrupt line on PC UARTs).
    outb(COM1 + MCR, 0x0b);
    let fifo = inb(COM1 + IIR) & 0xc0 == 0xc0;
    TX_BURST.store(if fifo { 16 } else { 1 }, Ordering::Relaxed);
    TX_ROOM.store(0, Ordering::Relaxed);
}

/// Turns on the receive interrupt and takes anything already waiting.
pub fn enable_rx_irq() {
    outb(COM1 + IER, IER_RDA);
    on_irq();
}

fn put_raw(b: u8) {
    let mut room = TX_ROOM.load(Ordering::Relaxed);
    if room == 0 {
        let mut polls = 0;
        while inb(COM1 + LSR) & LSR_THRE == 0 && polls < THRE_POLLS {
            polls += 1;
        }
        room = TX_BURST.load(Ordering::Relaxed);
    }
    outb(COM1 + THR, b);
    TX_ROOM.store(room - 1, Ordering::Relaxed);
}

/// Writes bytes, turning `\n` into `\r\n`.
pub fn write(bytes: &[u8]) {
    for &b in bytes {
        if b == b'\n' {
            put_raw(b'\r');
        }
        put_raw(b);
    }
}

/// Writes a string (see [`write`]).
pub fn puts(s: &str) {
    write(s.as_bytes());
}

/// Writes `v` in decimal.
pub fn dec(v: u64) {
    let mut buf = [0; NUM_BUF];
    write(fmt_dec(v, &mut buf));
}

/// Writes `v` as `0x...` hex.
pub fn hex(v: u64) {
    let mut buf = [0; NUM_BUF];
    write(fmt_hex(v, 1, &mut buf));
}

/// Writes `v` as `0x` and exactly 16 hex digits.
pub fn hex16(v: u64) {
    let mut buf = [0; NUM_BUF];
    write(fmt_hex(v, 16, &mut buf));
}

/// `core::fmt` sink, for panic messages.
pub struct Writer;

impl core::fmt::Write for Writer {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        puts(s);
        Ok(())
    }
}

/// Receive ring buffer: filled by the IRQ handler, drained by the shell.
/// Both run on the boot CPU; head/tail are atomics so either side only ever
/// touches slots the other has published.
const RX_SIZE: usize = 256;

struct RxRing {
    buf: UnsafeCell<[u8; RX_SIZE]>,
    head: AtomicU32, // next slot to write (producer)
    tail: AtomicU32, // next slot to read (consumer)
}

// SAFETY: single producer (the IRQ handler) and single consumer (the shell)
// each own the slots between the indices as described above.
unsafe impl Sync for RxRing {}

static RX: RxRing = RxRing {
    buf: UnsafeCell::new([0; RX_SIZE]),
    head: AtomicU32::new(0),
    tail: AtomicU32::new(0),
};
/// Bytes dropped because the ring was full.
static RX_DROPPED: AtomicU32 = AtomicU32::new(0);

/// IRQ 4 handler: moves every received byte into the ring.
pub fn on_irq() {
    let mut n = 0;
    while inb(COM1 + LSR) & LSR_DR != 0 && n < 64 {
        let b = inb(COM1 + RBR);
        let head = RX.head.load(Ordering::Relaxed);
        let tail = RX.tail.load(Ordering::Acquire);
        if head.wrapping_sub(tail) as usize >= RX_SIZE {
            RX_DROPPED.fetch_add(1, Ordering::Relaxed);
        } else {
            // SAFETY: slot `head` is not readable by the consumer until
            // `head` is published below.
            unsafe { (*RX.buf.get())[head as usize % RX_SIZE] = b };
            RX.head.store(head.wrapping_add(1), Ordering::Release);
        }
        n += 1;
    }
}

/// Next received byte, if any.
pub fn read_byte() -> Option<u8> {
    let tail = RX.tail.load(Ordering::Relaxed);
    let head = RX.head.load(Ordering::Acquire);
    if head == tail {
        return None;
    }
    // SAFETY: slot `tail` was published by the producer (head != tail) and
    // is not rewritten until `tail` moves past it.
    let b = unsafe { (*RX.buf.get())[tail as usize % RX_SIZE] };
    RX.tail.store(tail.wrapping_add(1), Ordering::Release);
    Some(b)
}
