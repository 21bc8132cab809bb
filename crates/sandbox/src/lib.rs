//! Process concerns: the log, and (with the hardening work) seccomp filters and daemon mode.

pub mod logger;
