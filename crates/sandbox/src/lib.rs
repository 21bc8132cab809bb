//! Process concerns: the log, seccomp filters per thread kind, daemon mode and the pidfile,
//! private sockets, and the last-resort clean-ups a signal handler may run.

pub mod daemon;
pub mod last_resort;
pub mod logger;
pub mod pidfile;
pub mod private;
pub mod seccomp;
mod stackbuf;
#[cfg(test)]
mod test_util;
