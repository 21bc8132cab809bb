//! A raw disk image (a regular file or a block device) opened for a virtio-blk device.

use super::aligned::AlignedBuf;
use super::SECTOR_SIZE;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Errors about disk images and disk slots.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("cannot open disk image {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error(
        "cannot open disk image {} with direct=on: its file system refuses O_DIRECT ({source}); use direct=off",
        path.display()
    )]
    DirectUnsupported { path: PathBuf, source: io::Error },
    #[error(
        "disk image {} is in use by another process (it holds a lock on the image); refusing to open it {}",
        path.display(), if *read_only { "read-only" } else { "for writing" }
    )]
    InUse { path: PathBuf, read_only: bool },
    #[error("cannot lock disk image {}: {source}", path.display())]
    Lock { path: PathBuf, source: io::Error },
    #[error("disk image {} is not a regular file or a block device", path.display())]
    NotADisk { path: PathBuf },
    #[error("cannot get the size of disk image {}: {source}", path.display())]
    Size { path: PathBuf, source: io::Error },
    #[error("cannot flush disk image {}: {source}", path.display())]
    Flush { path: PathBuf, source: io::Error },
    #[error("disk slot {0} already holds a disk")]
    SlotBusy(usize),
    #[error("disk slot {0} holds no disk")]
    SlotEmpty(usize),
}

/// An open disk image, locked as QEMU locks it (shared read-only, exclusive read-write) for as
/// long as it is open. All I/O is positioned (`pread`/`pwrite`), so `&self` suffices.
#[derive(Debug)]
pub struct BlockBackend {
    file: File,
    path: PathBuf,
    read_only: bool,
    direct: bool,
    /// Size in 512-byte sectors (the file size rounded down).
    capacity: u64,
}

/// The error for a failed `open`: EINVAL with O_DIRECT means the file system refuses it.
fn open_error(path: &Path, direct: bool, source: io::Error) -> BlockError {
    let path = path.to_path_buf();
    if direct && source.raw_os_error() == Some(libc::EINVAL) {
        BlockError::DirectUnsupported { path, source }
    } else {
        BlockError::Open { path, source }
    }
}

impl BlockBackend {
    /// Opens the image at `path`, read-only or read-write, with O_DIRECT when `direct`.
    pub fn open(path: impl AsRef<Path>, read_only: bool, direct: bool) -> Result<Self, BlockError> {
        let path = path.as_ref();
        let mut options = OpenOptions::new();
        options.read(true).write(!read_only);
        if direct {
            options.custom_flags(libc::O_DIRECT);
        }
        let mut file = options
            .open(path)
            .map_err(|e| open_error(path, direct, e))?;
        let meta = file.metadata().map_err(|source| BlockError::Size {
            path: path.to_path_buf(),
            source,
        })?;
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_file() && !meta.file_type().is_block_device() {
            return Err(BlockError::NotADisk {
                path: path.to_path_buf(),
            });
        }
        match super::image_lock::lock_image(&file, read_only) {
            Ok(super::image_lock::Locked::Yes) => {}
            Ok(super::image_lock::Locked::Unsupported) => log::warn!(
                "disk image {}: its file system has no locks; opened without one",
                path.display()
            ),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(BlockError::InUse {
                    path: path.to_path_buf(),
                    read_only,
                })
            }
            Err(source) => {
                return Err(BlockError::Lock {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
        // SEEK_END gives the size of block devices too (their metadata length is 0).
        let size = file
            .seek(SeekFrom::End(0))
            .map_err(|source| BlockError::Size {
                path: path.to_path_buf(),
                source,
            })?;
        let backend = Self {
            file,
            path: path.to_path_buf(),
            read_only,
            direct,
            capacity: size / SECTOR_SIZE,
        };
        if direct && backend.capacity > 0 {
            // Some file systems accept O_DIRECT at open and refuse the I/O; find out now, with
            // the 512-byte granularity the guest will use, rather than on the guest's first read.
            let mut probe = AlignedBuf::new(SECTOR_SIZE as usize);
            if let Err(e) = backend.read_at(probe.as_mut_slice(), 0) {
                return Err(open_error(path, direct, e));
            }
        }
        Ok(backend)
    }

    /// The path the image was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn read_only(&self) -> bool {
        self.read_only
    }

    pub fn direct(&self) -> bool {
        self.direct
    }

    /// Size in 512-byte sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Makes every completed write durable (`fdatasync`).
    pub fn flush(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Reads exactly `buf.len()` bytes at `offset` (with O_DIRECT, `buf`, its length and
    /// `offset` must be sector-aligned).
    pub(crate) fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    /// Writes all of `buf` at `offset` (same alignment rules as [`Self::read_at`]).
    pub(crate) fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    /// Deallocates `[offset, offset + len)`, keeping the file size; the range reads as zeros
    /// afterwards.
    pub(crate) fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
        self.fallocate(
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        )
    }

    /// Zeroes `[offset, offset + len)` without writing data, keeping the file size.
    pub(crate) fn zero_range(&self, offset: u64, len: u64) -> io::Result<()> {
        self.fallocate(
            libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        )
    }

    fn fallocate(&self, mode: libc::c_int, offset: u64, len: u64) -> io::Result<()> {
        let offset = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let len =
            libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        loop {
            // SAFETY: fallocate only reads its integer arguments; the fd is owned by `self.file`
            // and open for the duration of the call.
            let r = unsafe { libc::fallocate(self.file.as_raw_fd(), mode, offset, len) };
            if r == 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::tempfile::TempFile;

    fn image(len: u64) -> TempFile {
        let f = TempFile::new_with_prefix("/tmp/sv-blk-backend").unwrap();
        f.as_file().set_len(len).unwrap();
        f
    }

    #[test]
    fn capacity_is_size_in_sectors_rounded_down() {
        let f = image(512 * 10 + 100);
        let b = BlockBackend::open(f.as_path(), false, false).unwrap();
        assert_eq!(b.capacity(), 10);
        assert!(!b.read_only());
        assert!(!b.direct());
        assert_eq!(b.path(), f.as_path());
    }

    #[test]
    fn a_second_writer_is_refused_naming_the_image() {
        let f = image(4096);
        let first = BlockBackend::open(f.as_path(), false, false).unwrap();
        let e = BlockBackend::open(f.as_path(), false, false).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "disk image {} is in use by another process (it holds a lock on the image); refusing to open it for writing",
                f.as_path().display()
            )
        );
        let e = BlockBackend::open(f.as_path(), true, false).unwrap_err();
        assert!(
            e.to_string().ends_with("refusing to open it read-only"),
            "{e}"
        );
        drop(first);
        let r1 = BlockBackend::open(f.as_path(), true, false).unwrap();
        let _r2 = BlockBackend::open(f.as_path(), true, true).unwrap();
        assert!(matches!(
            BlockBackend::open(f.as_path(), false, false),
            Err(BlockError::InUse {
                read_only: false,
                ..
            })
        ));
        drop(r1);
    }

    #[test]
    fn missing_file_error_names_it() {
        let e = BlockBackend::open("/nonexistent/disk.img", false, false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot open disk image /nonexistent/disk.img: No such file or directory (os error 2)"
        );
        // With direct=on the error is still about the missing file.
        let e = BlockBackend::open("/nonexistent/disk.img", false, true).unwrap_err();
        assert!(matches!(e, BlockError::Open { .. }), "{e}");
    }

    #[test]
    fn directory_is_not_a_disk() {
        let e = BlockBackend::open("/tmp", true, false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "disk image /tmp is not a regular file or a block device"
        );
    }

    #[test]
    fn read_only_open_refuses_writes() {
        let f = image(4096);
        let b = BlockBackend::open(f.as_path(), true, false).unwrap();
        assert!(b.read_only());
        let mut buf = [1u8; 512];
        b.read_at(&mut buf, 0).unwrap();
        assert_eq!(buf, [0u8; 512]);
        assert!(b.write_at(&buf, 0).is_err(), "read-only fd refuses writes");
    }

    #[test]
    fn direct_refused_error_says_use_direct_off() {
        let e = open_error(
            Path::new("/dev/shm/x.img"),
            true,
            io::Error::from_raw_os_error(libc::EINVAL),
        );
        let msg = e.to_string();
        assert!(
            msg.starts_with("cannot open disk image /dev/shm/x.img with direct=on"),
            "{msg}"
        );
        assert!(msg.contains("O_DIRECT"), "{msg}");
        assert!(msg.ends_with("use direct=off"), "{msg}");
        // EINVAL without direct is an ordinary open error.
        let e = open_error(
            Path::new("/x"),
            false,
            io::Error::from_raw_os_error(libc::EINVAL),
        );
        assert!(matches!(e, BlockError::Open { .. }));
    }

    #[test]
    fn real_file_system_refusing_o_direct() {
        // procfs refuses O_DIRECT at open with EINVAL (tmpfs accepts it since Linux 6.6).
        let e = BlockBackend::open("/proc/version", true, true).unwrap_err();
        assert!(matches!(e, BlockError::DirectUnsupported { .. }), "{e}");
        assert!(e.to_string().contains("use direct=off"));
    }

    #[test]
    fn direct_io_on_tmp() {
        let f = image(8192);
        let b = BlockBackend::open(f.as_path(), false, true).unwrap();
        assert!(b.direct());
        let mut buf = AlignedBuf::new(4096);
        buf.as_mut_slice().fill(0x5a);
        b.write_at(buf.as_mut_slice(), 4096).unwrap();
        b.flush().unwrap();
        let mut back = AlignedBuf::new(512);
        b.read_at(back.as_mut_slice(), 4096 + 512).unwrap();
        assert!(back.as_mut_slice().iter().all(|&x| x == 0x5a));
    }

    #[test]
    fn punch_and_zero_ranges_read_back_zero() {
        let f = image(0);
        std::fs::write(f.as_path(), vec![0xffu8; 16384]).unwrap();
        let b = BlockBackend::open(f.as_path(), false, false).unwrap();
        b.punch_hole(0, 4096).unwrap();
        b.zero_range(8192, 512).unwrap();
        let data = std::fs::read(f.as_path()).unwrap();
        assert_eq!(data.len(), 16384, "size kept");
        assert!(data[..4096].iter().all(|&x| x == 0));
        assert!(data[4096..8192].iter().all(|&x| x == 0xff));
        assert!(data[8192..8704].iter().all(|&x| x == 0));
        assert!(data[8704..].iter().all(|&x| x == 0xff));
    }
}
