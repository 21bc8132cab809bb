//! The VMM's log: to a file (`-D FILE`, appended, created 0600) or stderr, one line per record
//! with a UTC timestamp, level and thread name. The level comes from `STRATOVIRT_LOG_LEVEL`;
//! without it, `info` when `-D` asked for a log and `warn` otherwise, so that a plain run keeps
//! the terminal to the guest's console (upstream StratoVirt logs nothing without `-D`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// The environment variable that sets the level (error, warn, info, debug, trace, off).
pub const LEVEL_ENV: &str = "STRATOVIRT_LOG_LEVEL";

enum Sink {
    Stderr { tty: bool },
    File(File),
}

struct Logger {
    level: log::LevelFilter,
    sink: Mutex<Sink>,
}

/// The descriptor the log goes to (stderr until [`init`] opens a file), for code that must
/// write without the logger (the SIGSYS handler).
static LOG_FD: AtomicI32 = AtomicI32::new(2);

/// The log's file descriptor: the `-D` file, or 2 (stderr).
pub fn raw_fd() -> i32 {
    LOG_FD.load(Ordering::Relaxed)
}

/// Reports a fatal error: always as the final `stratovirt: <msg>` line on stderr, and in the
/// log too when the log is a file (on stderr that would print the same error twice).
pub fn report_fatal(msg: &str) {
    if raw_fd() != 2 {
        log::error!("{msg}");
    }
    eprintln!("stratovirt: {msg}");
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
pub(crate) fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `2026-11-21T20:31:05.123456Z` for a time since the epoch.
pub fn format_timestamp(since_epoch: std::time::Duration) -> String {
    let secs = since_epoch.as_secs() as i64;
    let (y, mo, d) = civil(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        s / 3600,
        (s / 60) % 60,
        s % 60,
        since_epoch.subsec_micros()
    )
}

/// Parses a level name; None for anything else.
pub fn parse_level(s: &str) -> Option<log::LevelFilter> {
    s.trim().parse().ok()
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let thread = std::thread::current();
        let line = format!(
            "{} {:<5} [{}] {}",
            format_timestamp(now),
            record.level(),
            thread.name().unwrap_or("?"),
            record.args()
        );
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        let _ = match &mut *sink {
            // A raw terminal needs the carriage return.
            Sink::Stderr { tty: true } => write!(std::io::stderr(), "{line}\r\n"),
            Sink::Stderr { tty: false } => writeln!(std::io::stderr(), "{line}"),
            Sink::File(f) => writeln!(f, "{line}"),
        };
    }

    fn flush(&self) {
        if let Sink::File(f) = &mut *self.sink.lock().unwrap_or_else(|e| e.into_inner()) {
            let _ = f.flush();
        }
    }
}

/// The level without `STRATOVIRT_LOG_LEVEL`: `info` when `-D` was given (with or without a
/// file), `warn` otherwise.
pub fn default_level(log_requested: bool) -> log::LevelFilter {
    if log_requested {
        log::LevelFilter::Info
    } else {
        log::LevelFilter::Warn
    }
}

/// The level: `env` (the value of `STRATOVIRT_LOG_LEVEL`, if set) or [`default_level`].
pub fn choose_level(env: Option<&str>, log_requested: bool) -> Result<log::LevelFilter, String> {
    match env {
        Some(v) => parse_level(v).ok_or_else(|| {
            format!("{LEVEL_ENV}={v}: not a log level (off, error, warn, info, debug, trace)")
        }),
        None => Ok(default_level(log_requested)),
    }
}

/// Installs the logger. `file` None logs to stderr; `log_requested` is whether `-D` was given.
pub fn init(file: Option<&Path>, log_requested: bool) -> Result<(), String> {
    let env = std::env::var(LEVEL_ENV).ok();
    let level = choose_level(env.as_deref(), log_requested)?;
    let sink = match file {
        // 0600 whatever the umask: the log names images, sockets and guest details.
        Some(p) => Sink::File(
            OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(p)
                .map_err(|e| format!("-D: cannot open log file {}: {e}", p.display()))?,
        ),
        None => Sink::Stderr {
            // SAFETY: isatty only inspects the descriptor.
            tty: unsafe { libc::isatty(2) } == 1,
        },
    };
    let fd = match &sink {
        Sink::File(f) => f.as_raw_fd(),
        Sink::Stderr { .. } => 2,
    };
    log::set_boxed_logger(Box::new(Logger {
        level,
        sink: Mutex::new(sink),
    }))
    .map_err(|e| format!("logger: {e}"))?;
    // The file lives in the logger for the rest of the process.
    LOG_FD.store(fd, Ordering::Relaxed);
    log::set_max_level(level);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_iso8601() {
        assert_eq!(
            format_timestamp(Duration::ZERO),
            "1970-01-01T00:00:00.000000Z"
        );
        assert_eq!(
            format_timestamp(Duration::from_micros(1_583_908_726_162_739)),
            "2020-03-11T06:38:46.162739Z"
        );
        assert_eq!(
            format_timestamp(Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000000Z"
        );
    }

    #[test]
    fn levels() {
        assert_eq!(parse_level("debug"), Some(log::LevelFilter::Debug));
        assert_eq!(parse_level("INFO"), Some(log::LevelFilter::Info));
        assert_eq!(parse_level("loud"), None);
    }

    #[test]
    fn quiet_unless_asked() {
        use log::LevelFilter::*;
        assert_eq!(choose_level(None, false), Ok(Warn));
        assert_eq!(choose_level(None, true), Ok(Info));
        assert_eq!(choose_level(Some("debug"), false), Ok(Debug));
        assert_eq!(choose_level(Some("off"), true), Ok(Off));
        let e = choose_level(Some("loud"), false).unwrap_err();
        assert!(e.contains("STRATOVIRT_LOG_LEVEL=loud"), "{e}");
    }
}
