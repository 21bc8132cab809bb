//! QMP (QEMU Machine Protocol) management channel of the stratovirt VMM.
//!
//! * [`QmpServer`] listens on a unix socket (`-qmp unix:PATH,server,nowait`
//!   or `-api-channel unix:PATH`), greets every client and serves commands on
//!   a single thread driven by epoll.
//! * [`VmControl`] is what the machine implements for the commands.
//! * [`EventBus`] sends events (`STOP`, `RESUME`, `SHUTDOWN`, ...) to every
//!   client from any thread without ever blocking on a slow client.
//! * [`protocol`] holds the I/O-free wire format (greeting, framing, request
//!   parsing, reply and event serialisation); [`schema`] the argument and
//!   reply types; [`Dispatcher`] maps command names to typed handlers.
//!
//! Framing: a request ends at a newline or as soon as a top-level JSON
//! object is balanced, so both line-oriented clients (`ncat`, `socat`) and
//! `qemu.qmp` (which sends bare objects without a newline) work. Everything
//! the server writes ends with `\r\n`, as QEMU's output does.
//!
//! Threading: the server thread (named `qmp`) owns the listening socket and
//! the client input buffers and runs every command handler, so handlers and
//! [`VmControl`] methods run one at a time on that thread. Client output
//! buffers are shared with [`EventBus`] behind one mutex; the server thread
//! is woken through an eventfd when another thread leaves output queued.

mod args;
pub mod balloon;
pub mod block;
pub mod dispatch;
pub mod error;
pub mod events;
pub mod migration;
pub mod net;
pub mod protocol;
pub mod schema;
pub mod server;

pub use args::parse_arguments;
pub use dispatch::{Context, Dispatcher, Outcome, VmControl};
pub use error::{ErrorClass, QmpError};
pub use events::EventBus;
pub use migration::{MigrateStarted, MigrationInfo, MigrationStatus};
pub use protocol::{Request, GREETING};
pub use schema::{
    CommandInfo, CpuInfo, CpuInstanceProperties, HotpluggableCpu, RunState, StatusInfo, VersionInfo,
};
pub use server::{QmpServer, SocketGuard, StopHandle};
