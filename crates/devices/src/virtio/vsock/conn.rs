//! One connection of the userspace device: a guest stream socket and the host Unix stream it
//! is joined to, with the virtio-vsock credit accounting of both directions (virtio 1.x
//! 5.10.6.3).
//!
//! Guest to host: the guest may have at most [`CONN_BUF`] bytes in flight (our `buf_alloc`);
//! they wait in `tx` until the host stream takes them, and `fwd_cnt` counts what left. A
//! packet past that credit breaks the protocol. Host to guest: nothing is buffered here; bytes
//! are read from the host stream straight into the guest's receive buffers, at most as many as
//! the guest's credit (`peer_buf_alloc - (rx_cnt - peer_fwd_cnt)`) allows, so a guest that
//! does not read stops the host's writer through its socket.

use super::packet::{shutdown, Header, HOST_CID, TYPE_STREAM};
use super::CONN_BUF;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Instant;

/// Where a connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// A host program connected (`CONNECT <port>` sent); the guest has not answered.
    Requested {
        deadline: Instant,
    },
    Established,
    /// Both ends are finished with it: waiting for the guest's RST after our full SHUTDOWN,
    /// or for buffered bytes to reach the host after the guest's, until the deadline.
    Closing {
        deadline: Instant,
    },
}

/// Control packets waiting for a receive buffer (bits).
pub mod pending {
    pub const REQUEST: u8 = 1;
    pub const RESPONSE: u8 = 2;
    pub const SHUTDOWN: u8 = 4;
    pub const CREDIT_UPDATE: u8 = 8;
    pub const CREDIT_REQUEST: u8 = 16;
    pub const RST: u8 = 32;
}

/// What a read from the host stream gave.
pub enum HostRead {
    Data(usize),
    /// Nothing to read now.
    Empty,
    /// The host will send nothing more (end of stream or an error).
    Ended,
}

pub struct Conn {
    /// The host stream; None once both of its directions are finished.
    stream: Option<File>,
    pub phase: Phase,
    /// The host's port (ours) and the guest's.
    pub local_port: u32,
    pub peer_port: u32,
    /// Guest bytes waiting for the host stream (at most CONN_BUF).
    pub tx: VecDeque<u8>,
    /// `OK <port>\n`, written to a host-initiated stream once the guest accepts.
    pub reply: Vec<u8>,
    pub fwd_cnt: u32,
    /// The `fwd_cnt` the guest last heard of.
    pub fwd_cnt_sent: u32,
    /// Bytes sent to the guest, and its last word on its buffer.
    pub rx_cnt: u32,
    pub peer_buf_alloc: u32,
    pub peer_fwd_cnt: u32,
    /// The host may still send / receive.
    pub host_in: bool,
    pub host_out: bool,
    /// SHUTDOWN flags the guest sent, and those we sent it.
    pub guest_shut: u32,
    pub sent_shut: u32,
    pub write_shut: bool,
    pub pending: u8,
    /// The host stream was ready to read at the last poll.
    pub readable: bool,
    /// The host hung up (a hung-up socket is always ready: stop watching it for that).
    pub hup: bool,
    /// A CREDIT_REQUEST went out since the guest last gave credit.
    pub credit_asked: bool,
}

impl Conn {
    pub fn new(stream: OwnedFd, local_port: u32, peer_port: u32, phase: Phase) -> Self {
        Conn {
            stream: Some(File::from(stream)),
            phase,
            local_port,
            peer_port,
            tx: VecDeque::new(),
            reply: Vec::new(),
            fwd_cnt: 0,
            fwd_cnt_sent: 0,
            rx_cnt: 0,
            peer_buf_alloc: 0,
            peer_fwd_cnt: 0,
            host_in: true,
            host_out: true,
            guest_shut: 0,
            sent_shut: 0,
            write_shut: false,
            pending: 0,
            readable: false,
            hup: false,
            credit_asked: false,
        }
    }

    pub fn fd(&self) -> Option<RawFd> {
        self.stream.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// A header from us for this connection, carrying our credit.
    pub fn header(&mut self, guest_cid: u64, op: u16) -> Header {
        self.fwd_cnt_sent = self.fwd_cnt;
        Header {
            src_cid: HOST_CID,
            dst_cid: guest_cid,
            src_port: self.local_port,
            dst_port: self.peer_port,
            len: 0,
            type_: TYPE_STREAM,
            op,
            flags: 0,
            buf_alloc: CONN_BUF as u32,
            fwd_cnt: self.fwd_cnt,
        }
    }

    /// What the guest says of its receive buffer in every packet.
    pub fn peer_credit(&mut self, h: &Header) {
        if h.buf_alloc != self.peer_buf_alloc || h.fwd_cnt != self.peer_fwd_cnt {
            self.credit_asked = false;
        }
        self.peer_buf_alloc = h.buf_alloc;
        self.peer_fwd_cnt = h.fwd_cnt;
    }

    /// Bytes the guest can take now.
    pub fn peer_free(&self) -> u32 {
        let in_flight = self.rx_cnt.wrapping_sub(self.peer_fwd_cnt);
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    /// Room left in our buffer: the guest's credit.
    pub fn our_free(&self) -> usize {
        CONN_BUF - self.tx.len().min(CONN_BUF)
    }

    /// Host data can go to the guest (given buffers and credit).
    pub fn wants_to_send(&self) -> bool {
        self.phase == Phase::Established
            && self.host_in
            && self.guest_shut & shutdown::RCV == 0
            && self.stream.is_some()
    }

    /// Guest bytes for the host. Bytes the host can no longer take are counted as forwarded
    /// and dropped, so the guest's credit keeps flowing.
    pub fn push(&mut self, data: &[u8]) {
        if self.host_out {
            self.tx.extend(data);
        } else {
            self.forwarded(data.len());
        }
    }

    fn forwarded(&mut self, n: usize) {
        self.fwd_cnt = self.fwd_cnt.wrapping_add(n as u32);
        if self.fwd_cnt.wrapping_sub(self.fwd_cnt_sent) as usize >= CONN_BUF / 4 {
            self.pending |= pending::CREDIT_UPDATE;
        }
    }

    /// Reads host data into `buf`.
    pub fn read(&mut self, buf: &mut [u8]) -> HostRead {
        let Some(s) = self.stream.as_mut() else {
            return HostRead::Ended;
        };
        loop {
            match s.read(buf) {
                Ok(0) => return HostRead::Ended,
                Ok(n) => return HostRead::Data(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return HostRead::Empty,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("vsock: reading a host stream: {e}");
                    return HostRead::Ended;
                }
            }
        }
    }

    /// The host will send no more.
    pub fn host_input_ended(&mut self) {
        self.host_in = false;
        self.readable = false;
        self.update_shutdown();
    }

    /// Writes what waits for the host as far as the stream takes it now.
    pub fn flush(&mut self) {
        while self.host_out {
            let Some(s) = self.stream.as_mut() else { break };
            let (buf, is_reply) = if !self.reply.is_empty() {
                (&self.reply[..], true)
            } else if !self.tx.is_empty() {
                (self.tx.as_slices().0, false)
            } else {
                break;
            };
            match s.write(buf) {
                Ok(n) if is_reply => {
                    self.reply.drain(..n);
                }
                Ok(n) => {
                    self.tx.drain(..n);
                    self.forwarded(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("vsock: writing a host stream: {e}");
                    self.host_output_ended();
                }
            }
        }
        if self.tx.is_empty() && self.tx.capacity() > 64 * 1024 {
            self.tx = VecDeque::new();
        }
        if self.guest_shut & shutdown::SEND != 0 && self.tx.is_empty() && !self.write_shut {
            self.write_shut = true;
            if let Some(fd) = self.fd() {
                // SAFETY: shutdown(2) on a socket this connection owns.
                unsafe { libc::shutdown(fd, libc::SHUT_WR) };
            }
        }
    }

    /// The host takes no more: what waits for it is dropped (counted as forwarded).
    pub fn host_output_ended(&mut self) {
        self.host_out = false;
        let n = self.tx.len();
        self.tx = VecDeque::new();
        self.reply.clear();
        self.forwarded(n);
        self.update_shutdown();
    }

    /// Tells the guest which directions of the host stream are finished.
    fn update_shutdown(&mut self) {
        if self.phase != Phase::Established {
            return;
        }
        let mut want = 0;
        if !self.host_in {
            want |= shutdown::SEND;
        }
        if !self.host_out {
            want |= shutdown::RCV;
        }
        if want & !self.sent_shut != 0 {
            self.pending |= pending::SHUTDOWN;
        }
        if !self.host_in && !self.host_out {
            // Nothing is left to do with the stream.
            self.stream = None;
        }
    }

    /// Whether the stream has output waiting.
    pub fn has_output(&self) -> bool {
        self.host_out && (!self.reply.is_empty() || !self.tx.is_empty())
    }

    /// Closes the host stream (the host program sees the end of both directions).
    pub fn close_stream(&mut self) {
        self.stream = None;
    }
}
