//! Guest RAM into the sparse `memory` file.
//!
//! Only pages that can hold data are read: those resident in the VMM's mappings (`mincore`;
//! a page the guest never touched is not) and, for a VM that was itself restored, the data
//! extents of the file its memory is mapped from. Of those, zero pages are skipped too, and
//! runs of the rest are written at their place in the file, which stays a hole everywhere
//! else. On a host with swap enabled a swapped-out page is not resident, so there every page
//! is read.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

pub const PAGE_SIZE: usize = 4096;

/// One guest RAM region as the save sees it.
pub struct Region {
    host: *const u8,
    len: usize,
    /// Where the region goes in the memory file.
    pub file_offset: u64,
    /// Byte ranges of the region (offset, length) that may hold data although not resident:
    /// a restored VM's template pages that were never copied.
    pub may_hold_data: Vec<(u64, u64)>,
}

impl Region {
    /// # Safety
    /// `host..host + len` must be a readable mapping, page-aligned, that stays mapped and is
    /// not written while the save runs (the VM is paused and its devices are quiet).
    pub unsafe fn new(host: *const u8, len: usize, file_offset: u64) -> Self {
        Region {
            host,
            len,
            file_offset,
            may_hold_data: Vec::new(),
        }
    }
}

/// What a save wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteStats {
    /// Pages read (resident or possibly holding data).
    pub pages_read: u64,
    /// Bytes written to the file (non-zero pages).
    pub bytes_written: u64,
}

/// Whether the host has swap, in which case residency says nothing about contents.
fn host_has_swap() -> bool {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("SwapTotal:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|v| v != "0"))
        })
        .unwrap_or(true)
}

/// Which pages of a region to read: resident ones (`mincore`), every one if swap is on, and
/// the region's `may_hold_data` ranges.
fn candidates(r: &Region, swap: bool) -> io::Result<Vec<bool>> {
    let pages = r.len.div_ceil(PAGE_SIZE);
    let mut want = vec![swap; pages];
    if !swap {
        let mut vec = vec![0u8; pages];
        // SAFETY: the range is a mapping (Region::new's contract) and `vec` has one byte per
        // page of it, as mincore(2) requires.
        let rc = unsafe { libc::mincore(r.host as *mut libc::c_void, r.len, vec.as_mut_ptr()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        for (w, v) in want.iter_mut().zip(&vec) {
            *w = v & 1 != 0;
        }
    }
    for &(off, len) in &r.may_hold_data {
        let first = (off as usize / PAGE_SIZE).min(pages);
        let last = ((off + len) as usize).div_ceil(PAGE_SIZE).min(pages);
        want[first..last].fill(true);
    }
    Ok(want)
}

fn page_is_zero(p: &[u8]) -> bool {
    // SAFETY: u64 has no invalid bit patterns; align_to only yields the aligned middle.
    let (head, words, tail) = unsafe { p.align_to::<u64>() };
    head.iter().all(|&b| b == 0) && words.iter().all(|&w| w == 0) && tail.iter().all(|&b| b == 0)
}

/// Writes every region into `file` (already sized; holes where nothing is written).
pub fn write_regions(file: &File, regions: &[Region]) -> io::Result<WriteStats> {
    let swap = host_has_swap();
    let mut stats = WriteStats::default();
    for r in regions {
        let want = candidates(r, swap)?;
        // SAFETY: Region::new's contract: the whole range is mapped and quiet.
        let mem = unsafe { std::slice::from_raw_parts(r.host, r.len) };
        let mut run: Option<usize> = None; // first page of the current run of data pages
        for page in 0..=want.len() {
            let data = page < want.len() && want[page] && {
                stats.pages_read += 1;
                let start = page * PAGE_SIZE;
                !page_is_zero(&mem[start..(start + PAGE_SIZE).min(r.len)])
            };
            match (data, run) {
                (true, None) => run = Some(page),
                (false, Some(first)) => {
                    let (start, end) = (first * PAGE_SIZE, (page * PAGE_SIZE).min(r.len));
                    file.write_all_at(&mem[start..end], r.file_offset + start as u64)?;
                    stats.bytes_written += (end - start) as u64;
                    run = None;
                }
                _ => {}
            }
        }
    }
    Ok(stats)
}

/// The data extents (offset, length) of `file` between `start` and `start + len`, relative to
/// `start`, from SEEK_DATA/SEEK_HOLE: where a file-backed region may hold data.
pub fn data_extents(file: &File, start: u64, len: u64) -> io::Result<Vec<(u64, u64)>> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    let end = start + len;
    let mut out = Vec::new();
    let mut pos = start;
    while pos < end {
        // SAFETY: lseek on an owned descriptor; no memory is involved.
        let data = unsafe { libc::lseek(fd, pos as libc::off_t, libc::SEEK_DATA) };
        if data < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENXIO) {
                break; // no data after pos
            }
            return Err(e);
        }
        let data = data as u64;
        if data >= end {
            break;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data as libc::off_t, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(io::Error::last_os_error());
        }
        let hole = (hole as u64).min(end);
        out.push((data - start, hole - data));
        pos = hole;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    struct Anon {
        ptr: *mut u8,
        len: usize,
    }

    impl Anon {
        fn new(len: usize) -> Self {
            // SAFETY: a fresh private anonymous mapping, unmapped in Drop.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            assert_ne!(ptr, libc::MAP_FAILED);
            Anon {
                ptr: ptr as *mut u8,
                len,
            }
        }
        fn write(&self, off: usize, v: u8, n: usize) {
            assert!(off + n <= self.len);
            // SAFETY: within the mapping.
            unsafe { std::ptr::write_bytes(self.ptr.add(off), v, n) };
        }
        fn region(&self, file_offset: u64) -> Region {
            // SAFETY: the mapping lives as long as the test uses the region.
            unsafe { Region::new(self.ptr, self.len, file_offset) }
        }
    }

    impl Drop for Anon {
        fn drop(&mut self) {
            // SAFETY: unmaps what new() mapped.
            unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
        }
    }

    fn tmpfile(name: &str) -> (std::path::PathBuf, File) {
        let p = std::env::temp_dir().join(format!("sv-snapmem-{}-{name}", std::process::id()));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        (p, f)
    }

    #[test]
    fn only_written_non_zero_pages_are_stored() {
        let mem = Anon::new(64 << 20);
        mem.write(0, 0xaa, 10); // page 0
        mem.write(5 * PAGE_SIZE, 0x55, 3 * PAGE_SIZE); // pages 5..8
        mem.write(100 * PAGE_SIZE, 0, PAGE_SIZE); // touched but zero
        mem.write((64 << 20) - 1, 7, 1); // the last byte
        let (p, f) = tmpfile("sparse");
        f.set_len((64 << 20) + 8192).unwrap();
        let stats = write_regions(&f, &[mem.region(8192)]).unwrap();
        assert_eq!(stats.bytes_written, 5 * PAGE_SIZE as u64);
        assert!(
            stats.pages_read < 16,
            "untouched pages are not read: {stats:?}"
        );
        // The layout is kept: each byte at its region offset plus the file offset.
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, 8192 + 5 * PAGE_SIZE as u64 + 100)
            .unwrap();
        assert_eq!(b[0], 0x55);
        f.read_exact_at(&mut b, 8192 + (64 << 20) - 1).unwrap();
        assert_eq!(b[0], 7);
        f.read_exact_at(&mut b, 8192 + 100 * PAGE_SIZE as u64)
            .unwrap();
        assert_eq!(b[0], 0);
        // Allocated size is about what was written (the file system may round up).
        let allocated = f.metadata().unwrap().blocks() * 512;
        assert!(allocated <= 64 * 1024, "{allocated} bytes allocated");
        let ext = data_extents(&f, 8192, 64 << 20).unwrap();
        assert!(
            ext.iter().any(|&(o, _)| o == 5 * PAGE_SIZE as u64),
            "{ext:?}"
        );
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn extents_of_a_template_are_read_even_when_not_resident() {
        let (p, template) = tmpfile("template");
        template.set_len(1 << 20).unwrap();
        template
            .write_all_at(&[9u8; PAGE_SIZE], 3 * PAGE_SIZE as u64)
            .unwrap();
        let ext = data_extents(&template, 0, 1 << 20).unwrap();
        assert_eq!(ext, vec![(3 * PAGE_SIZE as u64, PAGE_SIZE as u64)]);
        let mem = Anon::new(1 << 20);
        let mut r = mem.region(0);
        r.may_hold_data = ext;
        // Nothing of the mapping is resident, yet the template's page is a candidate.
        let want = candidates(&r, false).unwrap();
        assert_eq!(want.iter().filter(|&&w| w).count(), 1);
        assert!(want[3]);
        mem.write(3 * PAGE_SIZE, 9, PAGE_SIZE);
        let (q, out) = tmpfile("out");
        out.set_len(1 << 20).unwrap();
        let stats = write_regions(&out, &[r]).unwrap();
        assert_eq!(stats.bytes_written, PAGE_SIZE as u64);
        for f in [p, q] {
            std::fs::remove_file(f).unwrap();
        }
    }
}
