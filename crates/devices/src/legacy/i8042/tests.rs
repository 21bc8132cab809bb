use super::*;

struct Fixture {
    dev: I8042,
    reset: EventFd,
    kbd: EventFd,
    aux: EventFd,
}

fn fixture() -> Fixture {
    let evt = || EventFd::new(libc::EFD_NONBLOCK).unwrap();
    let (reset, kbd, aux) = (evt(), evt(), evt());
    let dev = I8042::new(
        reset.try_clone().unwrap(),
        Some(I8042Irqs {
            kbd: kbd.try_clone().unwrap(),
            aux: aux.try_clone().unwrap(),
        }),
    );
    Fixture {
        dev,
        reset,
        kbd,
        aux,
    }
}

impl Fixture {
    fn status(&mut self) -> u8 {
        let mut b = [0u8];
        self.dev.read(COMMAND_OFFSET, &mut b);
        b[0]
    }

    fn data(&mut self) -> u8 {
        let mut b = [0u8];
        self.dev.read(0, &mut b);
        b[0]
    }

    /// Linux's __i8042_command: the command, its parameters, then each reply byte, which must
    /// be there at once (Linux would poll for 500 ms, then fail). Returns (replies, statuses).
    fn command(&mut self, cmd: u8, params: &[u8], replies: usize) -> (Vec<u8>, Vec<u8>) {
        assert_eq!(self.status() & 0x02, 0, "input buffer never busy");
        self.dev.write(COMMAND_OFFSET, &[cmd]);
        for &p in params {
            self.dev.write(0, &[p]);
        }
        let mut out = (Vec::new(), Vec::new());
        for _ in 0..replies {
            let s = self.status();
            assert_ne!(
                s & STATUS_OBF,
                0,
                "command 0x{cmd:02x}: no reply (Linux would time out)"
            );
            out.1.push(s);
            out.0.push(self.data());
        }
        out
    }

    fn fired(e: &EventFd) -> u64 {
        e.read().unwrap_or(0)
    }
}

#[test]
fn linux_probe_sequence_answers_at_once() {
    let mut f = fixture();
    // i8042_controller_check: nothing to flush.
    assert_eq!(f.status() & STATUS_OBF, 0);
    // i8042_controller_init: two equal CTR reads, then a write with the keyboard disabled.
    let (ctr, _) = f.command(CMD_READ_CTR, &[], 1);
    let (again, _) = f.command(CMD_READ_CTR, &[], 1);
    assert_eq!(ctr, again);
    assert_ne!(ctr[0] & CTR_XLATE, 0);
    assert_ne!(f.status() & STATUS_UNLOCKED, 0, "no keylock");
    let new_ctr = (ctr[0] | CTR_KBD_DISABLED) & !CTR_KBD_INT;
    f.command(CMD_WRITE_CTR, &[new_ctr], 0);
    assert_eq!(f.command(CMD_READ_CTR, &[], 1).0, [new_ctr]);
    // Self test and port tests.
    assert_eq!(f.command(CMD_SELF_TEST, &[], 1).0, [SELF_TEST_OK]);
    assert_eq!(f.command(CMD_KBD_TEST, &[], 1).0, [0]);
    assert_eq!(f.command(CMD_AUX_TEST, &[], 1).0, [0]);
    // i8042_check_aux: the aux loopback comes back from the aux port.
    let (b, s) = f.command(CMD_AUX_LOOP, &[0x5a], 1);
    assert_eq!(b, [0x5a]);
    assert_ne!(s[0] & STATUS_AUX, 0);
    // Bit assignment test.
    f.command(CMD_AUX_DISABLE, &[], 0);
    assert_ne!(f.command(CMD_READ_CTR, &[], 1).0[0] & CTR_AUX_DISABLED, 0);
    f.command(CMD_AUX_ENABLE, &[], 0);
    assert_eq!(f.command(CMD_READ_CTR, &[], 1).0[0] & CTR_AUX_DISABLED, 0);
    // i8042_set_mux_mode: the third loopback byte comes back unchanged, so no MUX.
    for v in [0xf0, 0x56, 0xa4] {
        assert_eq!(f.command(CMD_AUX_LOOP, &[v], 1).0, [v]);
    }
    // The keyboard loopback comes back from the keyboard port.
    let (b, s) = f.command(CMD_KBD_LOOP, &[0x77], 1);
    assert_eq!((b[0], s[0] & STATUS_AUX), (0x77, 0));
    assert_eq!(f.status() & STATUS_OBF, 0, "nothing left over");
}

#[test]
fn aux_irq_test_gets_irq_12() {
    let mut f = fixture();
    Fixture::fired(&f.aux);
    // i8042_enable_aux_port, then the loopback without polling: the byte must arrive by IRQ 12.
    let (ctr, _) = f.command(CMD_READ_CTR, &[], 1);
    f.command(
        CMD_WRITE_CTR,
        &[(ctr[0] | CTR_AUX_INT) & !CTR_AUX_DISABLED],
        0,
    );
    Fixture::fired(&f.aux);
    Fixture::fired(&f.kbd);
    f.dev.write(COMMAND_OFFSET, &[CMD_AUX_LOOP]);
    f.dev.write(0, &[0xa5]);
    assert_eq!(Fixture::fired(&f.aux), 1);
    assert_eq!(Fixture::fired(&f.kbd), 0);
    assert_eq!(
        f.status() & (STATUS_OBF | STATUS_AUX),
        STATUS_OBF | STATUS_AUX
    );
    assert_eq!(f.data(), 0xa5);
    // Interrupts off: bytes are still there, but no IRQ.
    f.command(CMD_WRITE_CTR, &[CTR_SYS], 0);
    f.dev.write(COMMAND_OFFSET, &[CMD_AUX_LOOP]);
    f.dev.write(0, &[1]);
    assert_eq!(Fixture::fired(&f.aux), 0);
    // Turning the interrupt on with a byte waiting raises it.
    f.command(CMD_WRITE_CTR, &[CTR_SYS | CTR_AUX_INT], 0);
    assert_eq!(Fixture::fired(&f.aux), 1);
    assert_eq!(f.data(), 1);
}

#[test]
fn empty_ports_answer_with_a_timeout() {
    let mut f = fixture();
    f.command(CMD_WRITE_CTR, &[CTR_SYS | CTR_KBD_INT | CTR_AUX_INT], 0);
    Fixture::fired(&f.kbd);
    // A keyboard command (0xf2, get ID) with no keyboard.
    f.dev.write(0, &[0xf2]);
    assert_eq!(Fixture::fired(&f.kbd), 1);
    let s = f.status();
    assert_eq!(
        s & (STATUS_OBF | STATUS_TIMEOUT | STATUS_AUX),
        STATUS_OBF | STATUS_TIMEOUT
    );
    assert_eq!(f.data(), NO_DEVICE);
    // A mouse command (0xd4 then the byte) with no mouse.
    f.dev.write(COMMAND_OFFSET, &[CMD_AUX_SEND]);
    f.dev.write(0, &[0xff]);
    assert_eq!(Fixture::fired(&f.aux), 1);
    let s = f.status();
    assert_eq!(
        s & (STATUS_TIMEOUT | STATUS_AUX),
        STATUS_TIMEOUT | STATUS_AUX
    );
    assert_eq!(f.data(), NO_DEVICE);
    assert_eq!(f.status() & (STATUS_OBF | STATUS_TIMEOUT), 0);
}

#[test]
fn queued_bytes_raise_one_interrupt_each() {
    let mut f = fixture();
    f.command(CMD_WRITE_CTR, &[CTR_SYS | CTR_KBD_INT], 0);
    Fixture::fired(&f.kbd);
    f.dev.write(COMMAND_OFFSET, &[CMD_READ_CTR]);
    f.dev.write(COMMAND_OFFSET, &[CMD_SELF_TEST]);
    assert_eq!(Fixture::fired(&f.kbd), 1, "the first byte");
    assert_eq!(f.data(), CTR_SYS | CTR_KBD_INT);
    assert_eq!(
        Fixture::fired(&f.kbd),
        1,
        "the next byte once the first is read"
    );
    assert_eq!(f.data(), SELF_TEST_OK);
    assert_eq!(Fixture::fired(&f.kbd), 0);
    // An empty buffer repeats the last byte, and the queue is bounded.
    assert_eq!(f.data(), SELF_TEST_OK);
    for _ in 0..100 {
        f.dev.write(COMMAND_OFFSET, &[CMD_SELF_TEST]);
    }
    let mut n = 0;
    while f.status() & STATUS_OBF != 0 {
        f.data();
        n += 1;
    }
    assert_eq!(n, QUEUE_LIMIT);
}

#[test]
fn reset_line() {
    let mut f = fixture();
    f.dev.write(0, &[0xfe]);
    assert!(f.reset.read().is_err(), "a data-port write is not a reset");
    assert_eq!(f.data(), NO_DEVICE, "it went to the (absent) keyboard");
    f.dev.write(COMMAND_OFFSET, &[0xff]);
    assert!(f.reset.read().is_err(), "0xff pulses no line");
    f.dev.write(COMMAND_OFFSET, &[0xfe]);
    assert_eq!(f.reset.read().unwrap(), 1, "reboot=k: pulse the reset line");
    // The output port, written with the reset line low.
    assert_eq!(f.command(CMD_READ_OUTPUT, &[], 1).0, [OUTPUT_PORT_DEFAULT]);
    f.command(
        CMD_WRITE_OUTPUT,
        &[OUTPUT_PORT_DEFAULT | OUTPUT_RESET_LINE],
        0,
    );
    assert!(f.reset.read().is_err());
    f.command(CMD_WRITE_OUTPUT, &[0xce], 0);
    assert_eq!(f.reset.read().unwrap(), 1);
    // A command abandons an unfinished one: this data byte goes to the (absent) keyboard.
    f.dev.write(COMMAND_OFFSET, &[CMD_WRITE_OUTPUT]);
    f.dev.write(COMMAND_OFFSET, &[CMD_A20_ON]);
    f.dev.write(0, &[0x00]);
    assert!(f.reset.read().is_err());
    assert_eq!(f.data(), NO_DEVICE);
}

#[test]
fn controller_ram_and_odd_accesses() {
    let mut f = fixture();
    f.command(0x65, &[0x99], 0);
    assert_eq!(f.command(0x25, &[], 1).0, [0x99]);
    assert_eq!(f.command(CMD_PASSWORD_TEST, &[], 1).0, [NO_PASSWORD]);
    // Byte 0 of the RAM is the command byte.
    f.command(CMD_WRITE_CTR, &[0x47], 0);
    assert_eq!(f.command(0x20, &[], 1).0, [0x47]);
    let mut b = [0u8; 4];
    f.dev.read(2, &mut b);
    f.dev.write(3, &[1]);
    f.dev.write(0, &[]);
    f.dev.read(0, &mut []);
    // Without interrupt lines (unit use), nothing breaks either.
    let mut bare = I8042::new(EventFd::new(libc::EFD_NONBLOCK).unwrap(), None);
    bare.write(COMMAND_OFFSET, &[CMD_SELF_TEST]);
    bare.read(0, &mut b[..1]);
    assert_eq!(b[0], SELF_TEST_OK);
}

#[test]
fn save_and_restore_keep_the_command_byte_and_queued_bytes() {
    use crate::Persist;
    let mut f = fixture();
    f.command(CMD_WRITE_CTR, &[0x47], 0);
    f.dev.write(COMMAND_OFFSET, &[CMD_SELF_TEST]);
    f.dev.write(COMMAND_OFFSET, &[CMD_WRITE_OUTPUT]); // waiting for its data byte
    let state = f.dev.save();
    let mut back = I8042::restore(
        I8042Args {
            reset_evt: f.reset.try_clone().unwrap(),
            irqs: None,
        },
        &state,
    )
    .unwrap();
    assert_eq!(back.save(), state);
    let mut b = [0u8];
    back.read(0, &mut b);
    assert_eq!(b[0], SELF_TEST_OK);
    back.write(0, &[0xce]);
    assert_eq!(
        f.reset.read().unwrap(),
        1,
        "the pending output-port write completes"
    );
}
