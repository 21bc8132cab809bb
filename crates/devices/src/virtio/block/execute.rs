//! Executing a parsed request against the disk in the slot, synchronously.
//!
//! Data moves through an aligned bounce buffer in chunks: guest buffers need no alignment, and
//! the same path serves O_DIRECT and buffered images.

use super::aligned::AlignedBuf;
use super::request::{Request, RequestType, Segment};
use super::slot::Disk;
use super::{MAX_DISCARD_SECTORS, SECTOR_SIZE};
use std::io;
use vm_memory::{Bytes, GuestMemoryMmap};

/// `VIRTIO_BLK_S_*`.
pub const S_OK: u8 = 0;
pub const S_IOERR: u8 = 1;
pub const S_UNSUPP: u8 = 2;

/// `VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP`.
const WRITE_ZEROES_UNMAP: u32 = 1;
/// Size of one `struct virtio_blk_discard_write_zeroes`.
const DISCARD_SEGMENT_LEN: u64 = 16;

/// How a request ended: the status byte and how many data bytes went into guest buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub status: u8,
    pub written: u32,
}

#[derive(Debug)]
enum Failure {
    NoDisk,
    ReadOnly,
    OutOfRange,
    BadSegments,
    Unsupported,
    Guest,
    Host(io::Error),
}

/// Walks the data segments of a request, copying to or from guest memory.
struct Cursor<'a> {
    mem: &'a GuestMemoryMmap,
    segs: &'a [Segment],
    index: usize,
    offset: u32,
}

impl<'a> Cursor<'a> {
    fn new(mem: &'a GuestMemoryMmap, segs: &'a [Segment]) -> Self {
        Self {
            mem,
            segs,
            index: 0,
            offset: 0,
        }
    }

    /// Calls `f(segment piece, position in buf)` for the next `len` bytes of segments.
    fn walk(
        &mut self,
        len: usize,
        mut f: impl FnMut(Segment, usize) -> Result<(), Failure>,
    ) -> Result<(), Failure> {
        let mut done = 0usize;
        while done < len {
            let seg = self.segs.get(self.index).ok_or(Failure::Guest)?;
            let avail = (seg.len - self.offset) as usize;
            let n = avail.min(len - done);
            let piece = Segment {
                addr: vm_memory::GuestAddress(seg.addr.0 + u64::from(self.offset)),
                len: n as u32,
            };
            f(piece, done)?;
            done += n;
            self.offset += n as u32;
            if self.offset == seg.len {
                self.index += 1;
                self.offset = 0;
            }
        }
        Ok(())
    }

    /// Copies `src` into the next guest bytes.
    fn write_from(&mut self, src: &[u8]) -> Result<(), Failure> {
        let mem = self.mem;
        self.walk(src.len(), |p, at| {
            mem.write_slice(&src[at..at + p.len as usize], p.addr)
                .map_err(|_| Failure::Guest)
        })
    }

    /// Fills `dst` from the next guest bytes.
    fn read_into(&mut self, dst: &mut [u8]) -> Result<(), Failure> {
        let mem = self.mem;
        self.walk(dst.len(), |p, at| {
            mem.read_slice(&mut dst[at..at + p.len as usize], p.addr)
                .map_err(|_| Failure::Guest)
        })
    }
}

/// Byte offset of `sectors` sectors starting at `sector`, if they all lie on the disk.
fn disk_range(disk: &Disk, sector: u64, bytes: u64) -> Result<u64, Failure> {
    let start = sector.checked_mul(SECTOR_SIZE).ok_or(Failure::OutOfRange)?;
    let end = start.checked_add(bytes).ok_or(Failure::OutOfRange)?;
    let size = disk.backend.capacity() * SECTOR_SIZE;
    if end > size {
        return Err(Failure::OutOfRange);
    }
    Ok(start)
}

fn writable(disk: &Disk) -> Result<(), Failure> {
    if disk.backend.read_only() {
        Err(Failure::ReadOnly)
    } else {
        Ok(())
    }
}

fn read(
    req: &Request,
    mem: &GuestMemoryMmap,
    disk: &Disk,
    buf: &mut AlignedBuf,
    written: &mut u32,
) -> Result<(), Failure> {
    let mut offset = disk_range(disk, req.sector, req.data_len)?;
    let mut left = req.data_len;
    let mut cursor = Cursor::new(mem, &req.data);
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        let chunk = &mut buf.as_mut_slice()[..n];
        disk.backend.read_at(chunk, offset).map_err(Failure::Host)?;
        cursor.write_from(chunk)?;
        *written += n as u32;
        offset += n as u64;
        left -= n as u64;
    }
    Ok(())
}

fn write(
    req: &Request,
    mem: &GuestMemoryMmap,
    disk: &Disk,
    buf: &mut AlignedBuf,
) -> Result<(), Failure> {
    writable(disk)?;
    let mut offset = disk_range(disk, req.sector, req.data_len)?;
    let mut left = req.data_len;
    let mut cursor = Cursor::new(mem, &req.data);
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        let chunk = &mut buf.as_mut_slice()[..n];
        cursor.read_into(chunk)?;
        disk.backend
            .write_at(chunk, offset)
            .map_err(Failure::Host)?;
        offset += n as u64;
        left -= n as u64;
    }
    Ok(())
}

fn get_id(
    req: &Request,
    mem: &GuestMemoryMmap,
    disk: &Disk,
    written: &mut u32,
) -> Result<(), Failure> {
    let n = (req.data_len as usize).min(disk.serial.len());
    Cursor::new(mem, &req.data).write_from(&disk.serial[..n])?;
    *written = n as u32;
    Ok(())
}

/// DISCARD and WRITE_ZEROES: one `{sector, num_sectors, flags}` segment (max_*_seg is 1).
fn discard_or_zero(
    req: &Request,
    mem: &GuestMemoryMmap,
    disk: &Disk,
    buf: &mut AlignedBuf,
) -> Result<(), Failure> {
    writable(disk)?;
    if req.data_len != DISCARD_SEGMENT_LEN {
        return Err(Failure::BadSegments);
    }
    let mut seg = [0u8; DISCARD_SEGMENT_LEN as usize];
    Cursor::new(mem, &req.data).read_into(&mut seg)?;
    let sector = u64::from_le_bytes(seg[0..8].try_into().unwrap_or_default());
    let num = u32::from_le_bytes(seg[8..12].try_into().unwrap_or_default());
    let flags = u32::from_le_bytes(seg[12..16].try_into().unwrap_or_default());
    let allowed_flags = match req.request_type {
        RequestType::WriteZeroes => WRITE_ZEROES_UNMAP,
        _ => 0,
    };
    if flags & !allowed_flags != 0 {
        return Err(Failure::Unsupported);
    }
    if num > MAX_DISCARD_SECTORS {
        return Err(Failure::OutOfRange);
    }
    let len = u64::from(num) * SECTOR_SIZE;
    let offset = disk_range(disk, sector, len)?;
    if req.request_type == RequestType::Discard {
        return match disk.backend.punch_hole(offset, len) {
            // Discarding is a hint: a file system that cannot deallocate keeps the data.
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(()),
            r => r.map_err(Failure::Host),
        };
    }
    match disk.backend.zero_range(offset, len) {
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {}
        r => return r.map_err(Failure::Host),
    }
    // No ZERO_RANGE (e.g. a block device): write zeros.
    buf.as_mut_slice().fill(0);
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        disk.backend
            .write_at(&buf.as_mut_slice()[..n], offset + done)
            .map_err(Failure::Host)?;
        done += n as u64;
    }
    Ok(())
}

/// Executes `req` against `disk` (`None`: an empty slot, where every request fails).
pub fn execute(
    req: &Request,
    mem: &GuestMemoryMmap,
    disk: Option<&Disk>,
    buf: &mut AlignedBuf,
) -> Outcome {
    let mut written = 0u32;
    let result = match (req.request_type, disk) {
        (RequestType::Unsupported(_), _) => Err(Failure::Unsupported),
        (_, None) => Err(Failure::NoDisk),
        (RequestType::In, Some(d)) => read(req, mem, d, buf, &mut written),
        (RequestType::Out, Some(d)) => write(req, mem, d, buf),
        (RequestType::Flush, Some(d)) => d.backend.flush().map_err(Failure::Host),
        (RequestType::GetId, Some(d)) => get_id(req, mem, d, &mut written),
        (RequestType::Discard | RequestType::WriteZeroes, Some(d)) => {
            discard_or_zero(req, mem, d, buf)
        }
    };
    let status = match result {
        Ok(()) => S_OK,
        Err(Failure::Unsupported) => S_UNSUPP,
        Err(Failure::Host(e)) => {
            if let Some(d) = disk {
                log::error!(
                    "virtio-blk: {:?} at sector {} on {}: {e}",
                    req.request_type,
                    req.sector,
                    d.backend.path().display()
                );
            }
            S_IOERR
        }
        Err(f) => {
            log::debug!(
                "virtio-blk: {:?} at sector {} failed: {f:?}",
                req.request_type,
                req.sector
            );
            S_IOERR
        }
    };
    Outcome { status, written }
}

#[cfg(test)]
mod tests;
