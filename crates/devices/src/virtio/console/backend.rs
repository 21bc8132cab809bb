//! The host side of the console: the listening Unix socket and its clients.
//!
//! One client at a time is connected. A new one replaces the current client, after a grace
//! period: if it hangs up within [`GRACE`], as a liveness probe does (another `stratovirt`
//! checking whether the socket is in use connects and leaves at once), the current client
//! keeps the console. Without a current client a new one is connected at once.

use sandbox::private::{PrivateListener, SocketFile};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a new client must stay before it replaces the current one.
pub const GRACE: Duration = Duration::from_millis(100);

/// The console's listening socket, created mode 0600 at a path that must not exist.
pub struct ConsoleSocket(PrivateListener);

impl ConsoleSocket {
    /// Listens on a new socket at `path`. An existing path (a stale socket included) is
    /// refused, naming it.
    pub fn bind(path: &Path) -> io::Result<Self> {
        PrivateListener::bind(path, "console socket").map(Self)
    }

    /// The socket file, to remove on the exit path.
    pub fn file(&self) -> SocketFile {
        self.0.file()
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    pub(super) fn listener_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Accepts one pending client; `Ok(None)` when there is none.
    pub(super) fn accept(&self) -> io::Result<Option<Client>> {
        Ok(self.0.accept()?.map(Client::new))
    }
}

/// One connection. Its two directions end separately: a client may stop sending (shut down
/// its side) and still read the guest's output, or have gone while its last input still
/// waits for the guest.
pub(super) struct Client {
    /// Held as a File: its reads and writes are plain read(2) and write(2).
    stream: File,
    /// The client may still send (no end of stream read yet).
    pub input_open: bool,
    /// The client may still read (no hang-up or write error seen).
    pub output_open: bool,
    pub since: Instant,
    /// Bytes written to it so far.
    pub sent: u64,
    /// Its socket took no more at the last write (the guest waits for it).
    pub full: bool,
}

/// What a read from the client gave.
pub(super) enum Input {
    Data(usize),
    /// Nothing to read now.
    Empty,
    /// End of its input (or a read error).
    Ended,
}

impl Client {
    fn new(fd: OwnedFd) -> Self {
        Self {
            stream: File::from(fd),
            input_open: true,
            output_open: true,
            since: Instant::now(),
            sent: 0,
            full: false,
        }
    }

    pub fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    pub fn is_gone(&self) -> bool {
        !self.input_open && !self.output_open
    }

    /// Reads what the client sent, at most `buf.len()` bytes.
    pub fn read(&mut self, buf: &mut [u8]) -> Input {
        loop {
            match self.stream.read(buf) {
                Ok(0) => {
                    self.input_open = false;
                    return Input::Ended;
                }
                Ok(n) => return Input::Data(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Input::Empty,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("console: reading from the client: {e}");
                    self.input_open = false;
                    return Input::Ended;
                }
            }
        }
    }

    /// Writes as much of `data` as the socket takes now; a write error ends the client's
    /// output.
    pub fn write(&mut self, data: &[u8]) -> usize {
        loop {
            match self.stream.write(data) {
                Ok(n) => {
                    if self.full {
                        log::debug!("console: the client reads again after {} bytes", self.sent);
                        self.full = false;
                    }
                    self.sent += n as u64;
                    return n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !self.full {
                        log::debug!(
                            "console: the client's socket is full after {} bytes",
                            self.sent
                        );
                        self.full = true;
                    }
                    return 0;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("console: writing to the client: {e}");
                    self.output_open = false;
                    return 0;
                }
            }
        }
    }
}
