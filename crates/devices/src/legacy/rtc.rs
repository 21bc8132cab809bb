//! The MC146818 CMOS real-time clock at ports 0x70 (index) and 0x71 (data), IRQ 8.
//!
//! The clock is the host's wall clock plus an offset the guest sets by writing the time
//! registers. Registers follow the data sheet: BCD or binary (register B's DM bit), 12- or
//! 24-hour hours, the century at 0x32, UIP in register A for the last 244 us of each second,
//! register C's flags (update-ended, alarm, periodic) cleared by reading it, and register D's
//! valid-RAM bit. The interrupts enabled in register B are raised on IRQ 8 from a timerfd that
//! the machine's event loop polls ([`Rtc::timer_fd`], [`Rtc::on_timer`]). The other 114 bytes are
//! battery-backed RAM.
//!
//! Without this device Linux's `rtc_cmos` reads 0xff (UIP forever set) and waits out a 1 s
//! timeout, twice per boot.

use crate::bus::BusDevice;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::timerfd::TimerFd;

const REG_SECONDS: u8 = 0x00;
const REG_SECONDS_ALARM: u8 = 0x01;
const REG_MINUTES: u8 = 0x02;
const REG_MINUTES_ALARM: u8 = 0x03;
const REG_HOURS: u8 = 0x04;
const REG_HOURS_ALARM: u8 = 0x05;
const REG_WEEKDAY: u8 = 0x06;
const REG_DAY: u8 = 0x07;
const REG_MONTH: u8 = 0x08;
const REG_YEAR: u8 = 0x09;
const REG_A: u8 = 0x0a;
const REG_B: u8 = 0x0b;
const REG_C: u8 = 0x0c;
const REG_D: u8 = 0x0d;
const REG_CENTURY: u8 = 0x32;

const A_UIP: u8 = 0x80;
/// Divider bits of register A: only the 32.768 kHz time base (010) runs the clock.
const A_DIVIDER_MASK: u8 = 0x70;
const A_DIVIDER_32K: u8 = 0x20;
const A_RATE_MASK: u8 = 0x0f;
const B_SET: u8 = 0x80;
const B_PIE: u8 = 0x40;
const B_AIE: u8 = 0x20;
const B_UIE: u8 = 0x10;
const B_DM_BINARY: u8 = 0x04;
const B_24H: u8 = 0x02;
const C_IRQF: u8 = 0x80;
const C_PF: u8 = 0x40;
const C_AF: u8 = 0x20;
const C_UF: u8 = 0x10;
const D_VRT: u8 = 0x80;
/// An alarm register value of 0xc0..=0xff matches every value ("don't care").
const ALARM_DONT_CARE: u8 = 0xc0;

const NS_PER_SEC: i128 = 1_000_000_000;
/// UIP is set this long before each update (244 us, as on the data sheet).
const UIP_NS: i128 = 244_141;
/// How far back an alarm match is searched: the alarm fields repeat every day.
const DAY_SECS: i64 = 86_400;

/// Where the clock's notion of "now" comes from (the host's wall clock; a fake one in tests).
pub type WallClock = Box<dyn Fn() -> i128 + Send>;

/// The host's CLOCK_REALTIME in nanoseconds since the Unix epoch.
pub fn host_wall_clock() -> i128 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// A calendar time, all fields binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct DateTime {
    year: i64,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u8, d: u8) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

impl DateTime {
    fn from_unix(secs: i64) -> Self {
        let (year, month, day) = civil_from_days(secs.div_euclid(DAY_SECS));
        let t = secs.rem_euclid(DAY_SECS);
        DateTime {
            year,
            month,
            day,
            hour: (t / 3600) as u8,
            minute: (t / 60 % 60) as u8,
            second: (t % 60) as u8,
        }
    }

    fn to_unix(self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * DAY_SECS
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }

    /// 1 (Sunday) ..= 7, as the RTC counts.
    fn weekday(self) -> u8 {
        // 1970-01-01 was a Thursday.
        ((days_from_civil(self.year, self.month, self.day) + 4).rem_euclid(7) + 1) as u8
    }
}

fn to_bcd(v: u8) -> u8 {
    ((v / 10) << 4) | (v % 10)
}

fn from_bcd(v: u8) -> u8 {
    (v >> 4) * 10 + (v & 0x0f)
}

/// The CMOS RTC and its RAM.
pub struct Rtc {
    /// The selected register (bit 7 of the index port is the NMI mask, which is ignored).
    index: u8,
    /// Registers A, B and D, the alarm registers and the RAM; the time registers are computed.
    cmos: [u8; 128],
    /// Guest time minus host time, in nanoseconds.
    offset_ns: i128,
    /// The time held while register B's SET bit is on (the guest is writing a new time).
    held: Option<DateTime>,
    /// Register C's flags (without IRQF).
    flags: u8,
    /// The guest time up to which update, alarm and periodic events have been counted.
    checked_ns: i128,
    /// The IRQ line is asserted (IRQF set and not yet cleared by a read of register C).
    irq_raised: bool,
    clock: WallClock,
    irq: EventFd,
    timer: TimerFd,
}

impl Rtc {
    /// An RTC reading `clock` that raises `irq` (the irqfd of GSI 8).
    pub fn new(irq: EventFd, clock: WallClock) -> std::io::Result<Self> {
        let mut cmos = [0u8; 128];
        // 32.768 kHz time base, 1024 Hz periodic rate; 24-hour BCD; valid RAM and time.
        cmos[REG_A as usize] = A_DIVIDER_32K | 0x06;
        cmos[REG_B as usize] = B_24H;
        cmos[REG_D as usize] = D_VRT;
        let now = clock();
        Ok(Rtc {
            index: 0,
            cmos,
            offset_ns: 0,
            held: None,
            flags: 0,
            checked_ns: now,
            irq_raised: false,
            clock,
            irq,
            timer: TimerFd::new().map_err(std::io::Error::from)?,
        })
    }

    /// The timer the event loop polls; call [`Rtc::on_timer`] when it is readable.
    pub fn timer_fd(&self) -> RawFd {
        self.timer.as_raw_fd()
    }

    /// A due interrupt: updates the flags, raises IRQ 8, arms the next one.
    pub fn on_timer(&mut self) {
        let _ = self.timer.clear();
        let now = self.guest_now();
        self.advance(now);
        self.arm(now);
    }

    fn reg(&self, r: u8) -> u8 {
        self.cmos[r as usize]
    }

    fn binary(&self) -> bool {
        self.reg(REG_B) & B_DM_BINARY != 0
    }

    fn running(&self) -> bool {
        self.held.is_none() && self.reg(REG_A) & A_DIVIDER_MASK == A_DIVIDER_32K
    }

    fn guest_now(&self) -> i128 {
        (self.clock)() + self.offset_ns
    }

    fn now_datetime(&self) -> DateTime {
        self.held
            .unwrap_or_else(|| DateTime::from_unix(self.guest_now().div_euclid(NS_PER_SEC) as i64))
    }

    /// A binary value as the guest reads it (BCD unless DM is set).
    fn encode(&self, v: u8) -> u8 {
        if self.binary() {
            v
        } else {
            to_bcd(v)
        }
    }

    fn decode(&self, v: u8) -> u8 {
        if self.binary() {
            v
        } else {
            from_bcd(v)
        }
    }

    fn encode_hour(&self, h: u8) -> u8 {
        if self.reg(REG_B) & B_24H != 0 {
            return self.encode(h);
        }
        let pm = if h >= 12 { 0x80 } else { 0 };
        let h12 = match h % 12 {
            0 => 12,
            x => x,
        };
        self.encode(h12) | pm
    }

    fn decode_hour(&self, v: u8) -> u8 {
        if self.reg(REG_B) & B_24H != 0 {
            return self.decode(v);
        }
        let h12 = self.decode(v & 0x7f) % 12;
        if v & 0x80 != 0 {
            h12 + 12
        } else {
            h12
        }
    }

    /// Counts the events between the last check and `now` into register C's flags.
    fn advance(&mut self, now: i128) {
        let from = self.checked_ns;
        self.checked_ns = now;
        if now <= from || !self.running() {
            return;
        }
        // Update-ended: a second boundary in (from, now].
        let first = from.div_euclid(NS_PER_SEC) + 1;
        let last = now.div_euclid(NS_PER_SEC);
        if last >= first {
            self.flags |= C_UF;
            if self.alarm_matches_between(first as i64, last as i64) {
                self.flags |= C_AF;
            }
        }
        if let Some(period) = self.periodic_ns() {
            if now.div_euclid(period) > from.div_euclid(period) {
                self.flags |= C_PF;
            }
        }
        self.update_irq();
    }

    /// Whether an update at any second in `first..=last` matches the alarm registers.
    fn alarm_matches_between(&self, first: i64, last: i64) -> bool {
        let first = first.max(last - DAY_SECS);
        (first..=last).any(|s| self.alarm_matches(DateTime::from_unix(s)))
    }

    fn alarm_matches(&self, t: DateTime) -> bool {
        let field = |reg: u8, value: u8| {
            let a = self.reg(reg);
            a >= ALARM_DONT_CARE || a == value
        };
        field(REG_SECONDS_ALARM, self.encode(t.second))
            && field(REG_MINUTES_ALARM, self.encode(t.minute))
            && field(REG_HOURS_ALARM, self.encode_hour(t.hour))
    }

    /// The periodic interrupt's period (register A's rate), if it runs.
    fn periodic_ns(&self) -> Option<i128> {
        let rate = self.reg(REG_A) & A_RATE_MASK;
        let hz: i128 = match rate {
            0 => return None,
            1 | 2 => 32_768 >> (8 - rate),
            r => 32_768 >> (r - 1),
        };
        Some(NS_PER_SEC / hz)
    }

    fn irq_flags(&self) -> u8 {
        let b = self.reg(REG_B);
        let mut on = 0;
        if b & B_UIE != 0 {
            on |= C_UF;
        }
        if b & B_AIE != 0 {
            on |= C_AF;
        }
        if b & B_PIE != 0 {
            on |= C_PF;
        }
        self.flags & on
    }

    /// Raises IRQ 8 on IRQF's rising edge.
    fn update_irq(&mut self) {
        if self.irq_flags() != 0 && !self.irq_raised {
            self.irq_raised = true;
            if let Err(e) = self.irq.write(1) {
                log::error!("rtc: cannot raise IRQ 8: {e}");
            }
        }
    }

    /// Arms the timer for the next event that would raise the line, or disarms it.
    fn arm(&mut self, now: i128) {
        let b = self.reg(REG_B);
        let next = if self.irq_raised || !self.running() {
            None
        } else {
            let mut next: Option<i128> = None;
            let mut earliest = |t: i128| next = Some(next.map_or(t, |n: i128| n.min(t)));
            if b & (B_UIE | B_AIE) != 0 {
                // Alarms are checked at each update; waking once a second is cheap.
                earliest((now.div_euclid(NS_PER_SEC) + 1) * NS_PER_SEC);
            }
            if b & B_PIE != 0 {
                if let Some(p) = self.periodic_ns() {
                    earliest((now.div_euclid(p) + 1) * p);
                }
            }
            next
        };
        let result = match next {
            Some(t) => {
                let wait = (t - now).max(1_000) as u64;
                self.timer.reset(Duration::from_nanos(wait), None)
            }
            None => self.timer.clear(),
        };
        if let Err(e) = result {
            log::error!("rtc: cannot arm the interrupt timer: {e}");
        }
    }

    fn read_register(&mut self, r: u8) -> u8 {
        let now = self.guest_now();
        match r {
            REG_SECONDS => self.encode(self.now_datetime().second),
            REG_MINUTES => self.encode(self.now_datetime().minute),
            REG_HOURS => self.encode_hour(self.now_datetime().hour),
            REG_WEEKDAY => self.encode(self.now_datetime().weekday()),
            REG_DAY => self.encode(self.now_datetime().day),
            REG_MONTH => self.encode(self.now_datetime().month),
            REG_YEAR => self.encode(self.now_datetime().year.rem_euclid(100) as u8),
            REG_CENTURY => self.encode(self.now_datetime().year.div_euclid(100).clamp(0, 99) as u8),
            REG_A => {
                let uip = self.running() && now.rem_euclid(NS_PER_SEC) >= NS_PER_SEC - UIP_NS;
                self.reg(REG_A) | if uip { A_UIP } else { 0 }
            }
            REG_C => {
                self.advance(now);
                let irqf = if self.irq_flags() != 0 { C_IRQF } else { 0 };
                let value = self.flags | irqf;
                self.flags = 0;
                self.irq_raised = false;
                self.arm(now);
                value
            }
            r => self.reg(r),
        }
    }

    fn write_register(&mut self, r: u8, v: u8) {
        let now = self.guest_now();
        match r {
            REG_SECONDS | REG_MINUTES | REG_HOURS | REG_WEEKDAY | REG_DAY | REG_MONTH
            | REG_YEAR | REG_CENTURY => {
                let mut t = self.now_datetime();
                match r {
                    REG_SECONDS => t.second = self.decode(v).min(59),
                    REG_MINUTES => t.minute = self.decode(v).min(59),
                    REG_HOURS => t.hour = self.decode_hour(v).min(23),
                    REG_DAY => t.day = self.decode(v).clamp(1, 31),
                    REG_MONTH => t.month = self.decode(v).clamp(1, 12),
                    REG_YEAR => {
                        t.year = t.year.div_euclid(100) * 100 + i64::from(self.decode(v) % 100)
                    }
                    REG_CENTURY => {
                        t.year = i64::from(self.decode(v)) * 100 + t.year.rem_euclid(100)
                    }
                    // The weekday follows from the date.
                    _ => {}
                }
                match &mut self.held {
                    Some(h) => *h = t,
                    // A write while the clock runs takes effect at once, keeping the phase.
                    None => self.set_time(t, now.rem_euclid(NS_PER_SEC)),
                }
            }
            REG_A => {
                self.advance(now);
                self.cmos[REG_A as usize] = v & !A_UIP;
                self.arm(now);
            }
            REG_B => {
                self.advance(now);
                let mut v = v;
                if v & B_SET != 0 {
                    // SET halts updates and clears UIE (data sheet); the guest writes the time.
                    v &= !B_UIE;
                    if self.held.is_none() {
                        self.held = Some(self.now_datetime());
                    }
                } else if let Some(t) = self.held.take() {
                    // The first update comes half a second after SET is cleared.
                    self.set_time(t, NS_PER_SEC / 2);
                }
                self.cmos[REG_B as usize] = v;
                self.checked_ns = self.guest_now();
                self.update_irq();
                self.arm(self.checked_ns);
            }
            REG_C | REG_D => {}
            r => self.cmos[r as usize] = v,
        }
    }

    /// Makes the guest clock read `t` plus `phase_ns` now.
    fn set_time(&mut self, t: DateTime, phase_ns: i128) {
        let host = (self.clock)();
        self.offset_ns = i128::from(t.to_unix()) * NS_PER_SEC + phase_ns - host;
        self.checked_ns = self.guest_now();
    }
}

/// The RTC's snapshot state. The clock offset is kept against the host's wall clock, so a
/// restored guest reads the time of day of the host it runs on, as it did before.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RtcState {
    index: u8,
    cmos: Vec<u8>,
    offset_ns: i128,
    held: Option<DateTime>,
    flags: u8,
    /// Guest time up to which events were counted, relative to "now" at the save.
    checked_ago_ns: i128,
    irq_raised: bool,
}

/// What a restored RTC needs: its IRQ line and the clock it reads.
pub struct RtcArgs {
    pub irq: EventFd,
    pub clock: WallClock,
}

impl crate::Persist for Rtc {
    type State = RtcState;
    type ConstructorArgs = RtcArgs;
    type Error = std::io::Error;

    fn save(&self) -> RtcState {
        RtcState {
            index: self.index,
            cmos: self.cmos.to_vec(),
            offset_ns: self.offset_ns,
            held: self.held,
            flags: self.flags,
            checked_ago_ns: self.guest_now() - self.checked_ns,
            irq_raised: self.irq_raised,
        }
    }

    fn restore(args: RtcArgs, state: &RtcState) -> std::io::Result<Self> {
        let mut rtc = Rtc::new(args.irq, args.clock)?;
        let n = state.cmos.len().min(rtc.cmos.len());
        rtc.cmos[..n].copy_from_slice(&state.cmos[..n]);
        rtc.index = state.index & 0x7f;
        rtc.offset_ns = state.offset_ns;
        rtc.held = state.held;
        rtc.flags = state.flags;
        rtc.irq_raised = state.irq_raised;
        // Events between the save and now are counted at the next read, as if no time had
        // passed while the VM was away.
        rtc.checked_ns = rtc.guest_now() - state.checked_ago_ns.max(0);
        let now = rtc.guest_now();
        rtc.arm(now);
        Ok(rtc)
    }
}

impl BusDevice for Rtc {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        if let (1, Some(b)) = (offset, data.first_mut()) {
            *b = self.read_register(self.index);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&v) = data.first() else { return };
        match offset {
            0 => self.index = v & 0x7f,
            1 => self.write_register(self.index, v),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
