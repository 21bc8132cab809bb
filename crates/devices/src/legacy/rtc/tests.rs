use super::*;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// 2026-12-01 10:20:30 UTC, a Tuesday.
const T0: i64 = 1_796_120_430;

struct Fixture {
    rtc: Rtc,
    now: Arc<AtomicI64>,
    irq: EventFd,
}

impl Fixture {
    fn new(start_ns: i64) -> Self {
        let now = Arc::new(AtomicI64::new(start_ns));
        let n = now.clone();
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let rtc = Rtc::new(
            irq.try_clone().unwrap(),
            Box::new(move || i128::from(n.load(Ordering::SeqCst))),
        )
        .unwrap();
        Fixture { rtc, now, irq }
    }

    fn at(secs: i64) -> Self {
        Self::new(secs * 1_000_000_000)
    }

    fn advance_ns(&self, ns: i64) {
        self.now.fetch_add(ns, Ordering::SeqCst);
    }

    fn get(&mut self, reg: u8) -> u8 {
        self.rtc.write(0, &[reg]);
        let mut b = [0u8];
        self.rtc.read(1, &mut b);
        b[0]
    }

    fn set(&mut self, reg: u8, v: u8) {
        self.rtc.write(0, &[reg]);
        self.rtc.write(1, &[v]);
    }

    /// What Linux's mc146818_get_time reads: (sec, min, hour, mday, mon, year, century).
    fn time(&mut self) -> [u8; 7] {
        [
            self.get(REG_SECONDS),
            self.get(REG_MINUTES),
            self.get(REG_HOURS),
            self.get(REG_DAY),
            self.get(REG_MONTH),
            self.get(REG_YEAR),
            self.get(REG_CENTURY),
        ]
    }

    fn irqs(&self) -> u64 {
        self.irq.read().unwrap_or(0)
    }
}

#[test]
fn calendar_round_trips() {
    assert_eq!(days_from_civil(1970, 1, 1), 0);
    assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    assert_eq!(days_from_civil(2038, 1, 19), 24_855);
    assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    for day in (-800_000..800_000).step_by(97) {
        let (y, m, d) = civil_from_days(day);
        assert_eq!(days_from_civil(y, m, d), day, "{y}-{m}-{d}");
    }
    let t = DateTime::from_unix(T0);
    assert_eq!(
        (t.year, t.month, t.day, t.hour, t.minute, t.second),
        (2026, 12, 1, 10, 20, 30)
    );
    assert_eq!(t.weekday(), 3, "Tuesday is day 3 of the RTC's week");
    assert_eq!(t.to_unix(), T0);
}

#[test]
fn power_on_state_is_what_linux_accepts() {
    let mut f = Fixture::at(T0);
    assert_eq!(
        f.get(REG_A) & 0x7f,
        0x26,
        "32.768 kHz time base, 1024 Hz rate"
    );
    assert_eq!(f.get(REG_B), B_24H, "24-hour BCD, interrupts off");
    assert_eq!(f.get(REG_D), D_VRT, "valid RAM and time");
    assert_eq!(f.get(REG_C), 0);
}

#[test]
fn reads_the_host_clock_in_bcd() {
    let mut f = Fixture::at(T0);
    assert_eq!(f.time(), [0x30, 0x20, 0x10, 0x01, 0x12, 0x26, 0x20]);
    assert_eq!(f.get(REG_WEEKDAY), 0x03);
    f.advance_ns(90 * 1_000_000_000);
    assert_eq!(&f.time()[..3], &[0x00, 0x22, 0x10]);
}

#[test]
fn binary_and_twelve_hour_modes() {
    let mut f = Fixture::at(T0 + 5 * 3600); // 15:20:30
    f.set(REG_B, B_DM_BINARY | B_24H);
    assert_eq!(f.time(), [30, 20, 15, 1, 12, 26, 20]);
    f.set(REG_B, B_DM_BINARY);
    assert_eq!(f.get(REG_HOURS), 0x80 | 3, "3 PM");
    f.set(REG_B, 0);
    assert_eq!(f.get(REG_HOURS), 0x80 | 0x03);
    let mut f = Fixture::at(T0 - 10 * 3600); // 00:20:30
    f.set(REG_B, 0);
    assert_eq!(f.get(REG_HOURS), 0x12, "midnight is 12 AM");
}

#[test]
fn uip_is_set_only_just_before_an_update() {
    let mut f = Fixture::new(T0 * 1_000_000_000 + 999_800_000);
    assert_ne!(f.get(REG_A) & A_UIP, 0);
    f.advance_ns(300_000);
    assert_eq!(f.get(REG_A) & A_UIP, 0);
    f.advance_ns(500_000_000);
    assert_eq!(f.get(REG_A) & A_UIP, 0);
    // A write cannot set UIP, and a halted clock never shows it.
    f.set(REG_A, 0xa6);
    assert_eq!(f.get(REG_A), 0x26);
}

#[test]
fn setting_the_time_as_linux_does() {
    // mc146818_set_time: SET on, write the fields, SET off; the clock then runs from there.
    let mut f = Fixture::at(T0);
    f.set(REG_B, B_SET | B_24H);
    for (reg, v) in [
        (REG_SECONDS, 0x59),
        (REG_MINUTES, 0x59),
        (REG_HOURS, 0x23),
        (REG_DAY, 0x31),
        (REG_MONTH, 0x12),
        (REG_YEAR, 0x99),
        (REG_CENTURY, 0x19),
    ] {
        f.set(reg, v);
    }
    f.advance_ns(3 * 1_000_000_000);
    assert_eq!(
        f.time(),
        [0x59, 0x59, 0x23, 0x31, 0x12, 0x99, 0x19],
        "held while SET is on"
    );
    f.set(REG_B, B_24H);
    // The first update comes half a second after SET is cleared.
    f.advance_ns(400_000_000);
    assert_eq!(f.get(REG_SECONDS), 0x59);
    f.advance_ns(200_000_000);
    assert_eq!(
        f.time(),
        [0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x20],
        "rolls into 2000"
    );
    assert_eq!(f.get(REG_WEEKDAY), 0x07, "2000-01-01 was a Saturday");
}

#[test]
fn a_field_written_while_running_changes_only_that_field() {
    let mut f = Fixture::at(T0);
    f.set(REG_MINUTES, 0x45);
    assert_eq!(&f.time()[..3], &[0x30, 0x45, 0x10]);
    f.advance_ns(1_000_000_000);
    assert_eq!(&f.time()[..3], &[0x31, 0x45, 0x10]);
}

#[test]
fn register_c_flags_and_clear_on_read() {
    let mut f = Fixture::new(T0 * 1_000_000_000 + 100_000_000);
    assert_eq!(f.get(REG_C), 0);
    f.advance_ns(950_000_000);
    assert_eq!(
        f.get(REG_C),
        C_UF | C_PF,
        "an update and periodic ticks; no IRQF without enables"
    );
    assert_eq!(f.get(REG_C), 0, "reading clears");
    // Alarm at 10:20:33 (BCD); the periodic rate 0 stops PF.
    f.set(REG_A, 0x20);
    f.set(REG_SECONDS_ALARM, 0x33);
    f.set(REG_MINUTES_ALARM, 0x20);
    f.set(REG_HOURS_ALARM, 0x10);
    f.advance_ns(1_000_000_000); // 10:20:32
    assert_eq!(f.get(REG_C), C_UF);
    f.advance_ns(1_000_000_000); // 10:20:33
    assert_eq!(f.get(REG_C), C_UF | C_AF);
    // Don't-care alarm fields match every second.
    f.set(REG_HOURS_ALARM, 0xff);
    f.set(REG_MINUTES_ALARM, 0xc0);
    f.set(REG_SECONDS_ALARM, 0xc0);
    f.advance_ns(1_000_000_000);
    assert_eq!(f.get(REG_C), C_UF | C_AF);
    // Periodic at 2 Hz (rate 15).
    f.set(REG_A, 0x2f);
    f.advance_ns(600_000_000);
    assert_ne!(f.get(REG_C) & C_PF, 0);
}

#[test]
fn update_interrupt_fires_once_until_register_c_is_read() {
    let mut f = Fixture::new(T0 * 1_000_000_000 + 500_000_000);
    f.set(REG_A, 0x20);
    f.set(REG_B, B_24H | B_UIE);
    assert_eq!(f.irqs(), 0);
    assert!(
        f.rtc.timer.is_armed().unwrap(),
        "the next update is scheduled"
    );
    f.advance_ns(600_000_000);
    f.rtc.on_timer();
    assert_eq!(f.irqs(), 1);
    assert!(
        !f.rtc.timer.is_armed().unwrap(),
        "nothing more until the guest reads C"
    );
    f.advance_ns(1_000_000_000);
    f.rtc.on_timer();
    assert_eq!(f.irqs(), 0, "the line is still up: no second edge");
    assert_eq!(f.get(REG_C), C_IRQF | C_UF);
    assert!(f.rtc.timer.is_armed().unwrap());
    f.advance_ns(1_000_000_000);
    f.rtc.on_timer();
    assert_eq!(f.irqs(), 1);
    // Turning the interrupt off stops the timer.
    f.get(REG_C);
    f.set(REG_B, B_24H);
    assert!(!f.rtc.timer.is_armed().unwrap());
}

#[test]
fn alarm_interrupt_after_a_long_sleep() {
    let mut f = Fixture::at(T0);
    f.set(REG_A, 0x20);
    f.set(REG_SECONDS_ALARM, 0x00);
    f.set(REG_MINUTES_ALARM, 0x00);
    f.set(REG_HOURS_ALARM, 0x12);
    f.set(REG_B, B_24H | B_AIE);
    f.advance_ns(3 * 3600 * 1_000_000_000); // 13:20:30: 12:00:00 went by
    f.rtc.on_timer();
    assert_eq!(f.irqs(), 1);
    assert_eq!(f.get(REG_C), C_IRQF | C_AF | C_UF);
}

#[test]
fn ram_is_kept_and_status_registers_are_read_only() {
    let mut f = Fixture::at(T0);
    for r in 0x0e..0x80u8 {
        if r != REG_CENTURY {
            f.set(r, r ^ 0x5a);
        }
    }
    for r in 0x0e..0x80u8 {
        if r != REG_CENTURY {
            assert_eq!(f.get(r), r ^ 0x5a);
        }
    }
    f.set(REG_D, 0);
    assert_eq!(f.get(REG_D), D_VRT);
    f.set(REG_C, 0xff);
    assert_eq!(f.get(REG_C), 0);
    // The NMI-mask bit of the index is ignored; the index port reads all-ones.
    f.rtc.write(0, &[0x80 | REG_D]);
    let mut b = [0u8];
    f.rtc.read(1, &mut b);
    assert_eq!(b[0], D_VRT);
    f.rtc.read(0, &mut b);
    assert_eq!(b[0], 0xff);
    // Odd accesses never panic.
    f.rtc.write(1, &[]);
    f.rtc.read(7, &mut b);
    f.rtc.write(9, &[1]);
}

#[test]
fn save_and_restore_keep_the_time_registers_and_ram() {
    use crate::Persist;
    let mut f = Fixture::at(T0);
    f.set(REG_B, B_24H | B_DM_BINARY);
    f.set(0x40, 0xab);
    f.set(REG_HOURS, 3);
    f.set(REG_SECONDS_ALARM, 0xc0);
    let state = f.rtc.save();
    let now = f.now.clone();
    let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    let mut g = Fixture {
        rtc: Rtc::restore(
            RtcArgs {
                irq: irq.try_clone().unwrap(),
                clock: Box::new(move || i128::from(now.load(Ordering::SeqCst))),
            },
            &state,
        )
        .unwrap(),
        now: f.now.clone(),
        irq,
    };
    assert_eq!(g.rtc.save(), state);
    assert_eq!(g.get(REG_HOURS), 3);
    assert_eq!(g.get(0x40), 0xab);
    assert_eq!(g.get(REG_B), B_24H | B_DM_BINARY);
    let back: RtcState = serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
    assert_eq!(back, state);
}
