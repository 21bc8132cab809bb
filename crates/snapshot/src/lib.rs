//! The snapshot format: a directory with two files.
//!
//! - `state`: a header (magic, format version, architecture, CPU vendor), then the machine's
//!   state tree as JSON (every component's `Persist` state, and the configuration it needs), then
//!   a CRC-64 over everything before it. Loading reads at most [`format::MAX_STATE_SIZE`] bytes
//!   and refuses a bad magic, another version, architecture or vendor, a short file or a wrong
//!   checksum before looking at the contents.
//! - `memory`: guest RAM, region after region at the file offsets the state records, sparse:
//!   pages the guest never wrote and zero pages are holes, so the file's allocated size is about
//!   the memory the guest used. A restore maps it copy-on-write and reads nothing up front.
//!
//! Both are written under temporary names, synced and renamed (`memory` first, `state` last),
//! so a crash mid-save never leaves a directory that looks like a complete snapshot.

pub mod crc64;
pub mod dir;
pub mod format;
pub mod memory;

pub use dir::{SnapshotDir, MEMORY_FILE, STATE_FILE};
pub use format::{FormatError, Header};
