//! Turning one descriptor chain into a block request (virtio 1.x section 5.2.6), checking
//! everything the guest controls. Nothing here touches the disk.
//!
//! Layout accepted: a device-readable 16-byte header (`type`, `reserved`, `sector`) at the start
//! of the first descriptor; data descriptors; a status byte at the end of the last descriptor,
//! which must be device-writable. Data for OUT, DISCARD and WRITE_ZEROES is device-readable and
//! may start in the header descriptor after the header; data for IN and GET_ID is
//! device-writable and may end in the status descriptor before the status byte.

use virtio_queue::desc::split::Descriptor;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory, GuestMemoryMmap, Permissions};

/// Size of the request header (`struct virtio_blk_req` up to the data).
pub const HEADER_LEN: u32 = 16;

/// The request types this device knows (`VIRTIO_BLK_T_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestType {
    In,
    Out,
    Flush,
    GetId,
    Discard,
    WriteZeroes,
    Unsupported(u32),
}

impl From<u32> for RequestType {
    fn from(t: u32) -> Self {
        match t {
            0 => RequestType::In,
            1 => RequestType::Out,
            4 => RequestType::Flush,
            8 => RequestType::GetId,
            11 => RequestType::Discard,
            13 => RequestType::WriteZeroes,
            other => RequestType::Unsupported(other),
        }
    }
}

impl RequestType {
    /// Whether the data flows from the device into guest buffers.
    fn device_writes_data(self) -> bool {
        matches!(self, RequestType::In | RequestType::GetId)
    }

    /// Whether the data flows from guest buffers to the device.
    fn device_reads_data(self) -> bool {
        matches!(
            self,
            RequestType::Out | RequestType::Discard | RequestType::WriteZeroes
        )
    }
}

/// A guest buffer: checked to lie inside guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub addr: GuestAddress,
    pub len: u32,
}

/// A well-formed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub request_type: RequestType,
    pub sector: u64,
    /// The data buffers in order (none of zero length).
    pub data: Vec<Segment>,
    /// Sum of the data buffer lengths.
    pub data_len: u64,
    /// Where the status byte goes (inside guest memory).
    pub status: GuestAddress,
}

/// What is wrong with a chain.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty descriptor chain")]
    Empty,
    #[error("descriptor chain longer than {0} descriptors")]
    TooLong(usize),
    #[error("descriptor chain does not end (loop, bad next index or unreadable descriptor)")]
    Unterminated,
    #[error("no device-writable status byte at the end of the chain")]
    NoStatus,
    #[error("no request header")]
    NoHeader,
    #[error("request header is device-writable")]
    HeaderWritable,
    #[error("request header descriptor of {0} bytes (at least 16 needed)")]
    HeaderTooShort(u32),
    #[error("buffer 0x{0:x}+0x{1:x} is outside guest memory")]
    OutOfMemory(u64, u32),
    #[error("data descriptor in the wrong direction for a {0:?} request")]
    WrongDirection(RequestType),
    #[error("data length {0} is not a multiple of 512")]
    UnalignedLength(u64),
}

/// A chain that cannot be executed, and where its status byte goes if it has a usable one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    pub error: ParseError,
    pub status: Option<GuestAddress>,
}

fn in_memory(mem: &GuestMemoryMmap, addr: GuestAddress, len: u32) -> Result<(), ParseError> {
    let end_ok = addr.checked_add(u64::from(len)).is_some();
    if end_ok && mem.check_range(addr, len as usize, Permissions::ReadWrite) {
        Ok(())
    } else {
        Err(ParseError::OutOfMemory(addr.raw_value(), len))
    }
}

/// Parses the descriptors of one chain (as yielded by `DescriptorChain`), reading the header
/// from `mem`. At most `max_descs` descriptors are looked at.
pub fn parse(
    descs: impl IntoIterator<Item = Descriptor>,
    mem: &GuestMemoryMmap,
    max_descs: usize,
) -> Result<Request, Rejected> {
    let reject = |error| Rejected {
        error,
        status: None,
    };
    let mut chain = Vec::new();
    for d in descs {
        if chain.len() == max_descs {
            return Err(reject(ParseError::TooLong(max_descs)));
        }
        chain.push(d);
    }
    let last = *chain.last().ok_or(reject(ParseError::Empty))?;
    // `DescriptorChain` stops early (without an error) on a loop, an out-of-range next index
    // or an unreadable descriptor: the last one it yields then still says "next".
    if last.has_next() {
        return Err(reject(ParseError::Unterminated));
    }
    if !last.is_write_only() || last.len() == 0 {
        return Err(reject(ParseError::NoStatus));
    }
    let status = last
        .addr()
        .checked_add(u64::from(last.len()) - 1)
        .filter(|&a| in_memory(mem, a, 1).is_ok())
        .ok_or(reject(ParseError::NoStatus))?;
    let reject = |error| Rejected {
        error,
        status: Some(status),
    };

    if chain.len() < 2 {
        return Err(reject(ParseError::NoHeader));
    }
    let head = chain[0];
    if head.is_write_only() {
        return Err(reject(ParseError::HeaderWritable));
    }
    if head.len() < HEADER_LEN {
        return Err(reject(ParseError::HeaderTooShort(head.len())));
    }
    in_memory(mem, head.addr(), head.len()).map_err(reject)?;
    let mut header = [0u8; HEADER_LEN as usize];
    mem.read_slice(&mut header, head.addr())
        .map_err(|_| reject(ParseError::OutOfMemory(head.addr().raw_value(), HEADER_LEN)))?;
    let request_type = RequestType::from(u32::from_le_bytes([
        header[0], header[1], header[2], header[3],
    ]));
    let sector = u64::from_le_bytes([
        header[8], header[9], header[10], header[11], header[12], header[13], header[14],
        header[15],
    ]);

    let mut data = Vec::new();
    let middle = &chain[1..chain.len() - 1];
    if request_type.device_reads_data() {
        if head.len() > HEADER_LEN {
            // `head` is in memory, so the address after the header is too.
            data.push(Segment {
                addr: head.addr().unchecked_add(u64::from(HEADER_LEN)),
                len: head.len() - HEADER_LEN,
            });
        }
        for d in middle {
            if d.is_write_only() {
                return Err(reject(ParseError::WrongDirection(request_type)));
            }
            data.push(Segment {
                addr: d.addr(),
                len: d.len(),
            });
        }
    } else if request_type.device_writes_data() {
        for d in middle {
            if !d.is_write_only() {
                return Err(reject(ParseError::WrongDirection(request_type)));
            }
            data.push(Segment {
                addr: d.addr(),
                len: d.len(),
            });
        }
        if last.len() > 1 {
            data.push(Segment {
                addr: last.addr(),
                len: last.len() - 1,
            });
        }
    }
    // FLUSH carries no data and unknown types are answered without looking at theirs.
    data.retain(|s| s.len > 0);
    let mut data_len = 0u64;
    for s in &data {
        in_memory(mem, s.addr, s.len).map_err(reject)?;
        data_len += u64::from(s.len);
    }
    if matches!(request_type, RequestType::In | RequestType::Out)
        && !data_len.is_multiple_of(super::SECTOR_SIZE)
    {
        return Err(reject(ParseError::UnalignedLength(data_len)));
    }
    Ok(Request {
        request_type,
        sector,
        data,
        data_len,
        status,
    })
}

#[cfg(test)]
mod tests;
