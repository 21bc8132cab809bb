//! Loading the kernel image (raw `vmlinux.bin`, ELF vmlinux or bzImage) and the initrd.

use crate::layout::{HIMEM_START, KERNEL_START, MMIO_HOLE_START};
use linux_loader::loader::bootparam::setup_header;
use linux_loader::loader::bzimage::BzImage;
use linux_loader::loader::elf::Elf;
use linux_loader::loader::KernelLoader;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use vm_memory::{
    Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion,
};

/// Errors loading the kernel or initrd, each naming the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot open {kind} {path}: {err}")]
    Open {
        kind: &'static str,
        path: String,
        err: std::io::Error,
    },
    #[error("{kind} {path} is empty")]
    Empty { kind: &'static str, path: String },
    #[error("cannot read {kind} {path}: {err}")]
    Read {
        kind: &'static str,
        path: String,
        err: std::io::Error,
    },
    #[error("kernel {path} is not a valid {format} image: {err}")]
    Invalid {
        path: String,
        format: &'static str,
        err: linux_loader::loader::Error,
    },
    #[error(
        "kernel {path} is not a kernel image: {reason} (expected an ELF vmlinux, a bzImage or a raw vmlinux.bin)"
    )]
    Implausible { path: String, reason: String },
    #[error("{kind} {path} ({size} bytes) is larger than guest memory ({mem} MiB)")]
    LargerThanMemory {
        kind: &'static str,
        path: String,
        size: u64,
        mem: u64,
    },
    #[error("{kind} {path} ({size} bytes) does not fit in guest memory at 0x{addr:x}")]
    TooBig {
        kind: &'static str,
        path: String,
        size: u64,
        addr: u64,
    },
}

/// The kernel formats we boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    /// `objcopy -O binary` of vmlinux, loaded at 16 MiB and entered there in 64-bit mode.
    Raw,
    Elf,
    BzImage,
}

/// What the loader learned about the kernel.
#[derive(Debug, Clone)]
pub struct LoadedKernel {
    pub format: KernelFormat,
    /// 64-bit entry point.
    pub entry: u64,
    /// First address after the kernel.
    pub end: u64,
    /// The bzImage setup header, to be copied into `boot_params`.
    pub setup_header: Option<setup_header>,
}

/// A raw `vmlinux.bin` starts with the kernel's entry code; anything shorter than a page, or
/// whose first page is all zeros, would run garbage (a file of zeros executes `add` forever).
pub const MIN_RAW_KERNEL: u64 = 4096;
/// How much of the image [`load_kernel`] looks at to tell the format and plausibility.
const HEAD: u64 = 4096;

/// Why an image that is neither ELF nor bzImage cannot be a raw `vmlinux.bin`, if it cannot.
pub fn raw_implausible(size: u64, head: &[u8]) -> Option<String> {
    if size < MIN_RAW_KERNEL {
        return Some(format!(
            "it is {size} bytes, smaller than one page ({MIN_RAW_KERNEL} bytes)"
        ));
    }
    if head.iter().all(|&b| b == 0) {
        return Some("its first page is all zeros".into());
    }
    None
}

/// Tells the format from the first bytes of the image.
pub fn detect_format(head: &[u8]) -> KernelFormat {
    if head.len() >= 4 && &head[0..4] == b"\x7fELF" {
        KernelFormat::Elf
    } else if head.len() >= 0x206 && &head[0x202..0x206] == b"HdrS" {
        KernelFormat::BzImage
    } else {
        KernelFormat::Raw
    }
}

fn open(kind: &'static str, path: &Path) -> Result<(File, u64), LoadError> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|err| LoadError::Open {
        kind,
        path: name.clone(),
        err,
    })?;
    let size = file
        .metadata()
        .map_err(|err| LoadError::Read {
            kind,
            path: name.clone(),
            err,
        })?
        .len();
    if size == 0 {
        return Err(LoadError::Empty { kind, path: name });
    }
    Ok((file, size))
}

/// Loads the kernel at `path` into `mem`.
pub fn load_kernel(mem: &GuestMemoryMmap, path: &Path) -> Result<LoadedKernel, LoadError> {
    let name = path.display().to_string();
    let (mut file, size) = open("kernel", path)?;
    let mem_size = mem.iter().map(|r| r.len()).sum::<u64>();
    if size > mem_size {
        return Err(LoadError::LargerThanMemory {
            kind: "kernel",
            path: name,
            size,
            mem: mem_size >> 20,
        });
    }
    let mut head = vec![0u8; HEAD.min(size) as usize];
    file.read_exact(&mut head)
        .and_then(|_| file.seek(SeekFrom::Start(0)).map(|_| ()))
        .map_err(|err| LoadError::Read {
            kind: "kernel",
            path: name.clone(),
            err,
        })?;
    let format = detect_format(&head);
    let highmem = Some(GuestAddress(HIMEM_START));
    let invalid = |format: &'static str| {
        let path = name.clone();
        move |err| LoadError::Invalid { path, format, err }
    };
    match format {
        KernelFormat::Elf => {
            let r = Elf::load(mem, None, &mut file, highmem).map_err(invalid("ELF"))?;
            Ok(LoadedKernel {
                format,
                entry: r.kernel_load.raw_value(),
                end: r.kernel_end,
                setup_header: None,
            })
        }
        KernelFormat::BzImage => {
            let r = BzImage::load(mem, None, &mut file, highmem).map_err(invalid("bzImage"))?;
            let hdr = r.setup_header;
            // The 64-bit entry is 0x200 past the start of the protected-mode code.
            Ok(LoadedKernel {
                format,
                entry: r.kernel_load.raw_value() + 0x200,
                end: r.kernel_end,
                setup_header: hdr,
            })
        }
        KernelFormat::Raw => {
            if let Some(reason) = raw_implausible(size, &head) {
                return Err(LoadError::Implausible { path: name, reason });
            }
            let end = KERNEL_START + size;
            let fits = end <= mem.last_addr().raw_value().min(MMIO_HOLE_START);
            copy_in(
                mem,
                "kernel",
                name,
                &mut file,
                size,
                fits.then_some(KERNEL_START),
                KERNEL_START,
            )?;
            Ok(LoadedKernel {
                format,
                entry: KERNEL_START,
                end,
                setup_header: None,
            })
        }
    }
}

/// Loads the initrd as high as allowed: page aligned, below `addr_max` and the end of low RAM,
/// above the kernel. Returns (address, size).
pub fn load_initrd(
    mem: &GuestMemoryMmap,
    path: &Path,
    kernel_end: u64,
    addr_max: u64,
) -> Result<(u64, u64), LoadError> {
    let name = path.display().to_string();
    let (mut file, size) = open("initrd", path)?;
    let low_end = (mem.last_addr().raw_value() + 1).min(MMIO_HOLE_START);
    let top = low_end.min(addr_max.saturating_add(1));
    let addr = top.checked_sub(size).map(|a| a & !0xfff);
    let addr = addr.filter(|a| *a >= kernel_end);
    let addr = copy_in(mem, "initrd", name, &mut file, size, addr, kernel_end)?;
    Ok((addr, size))
}

/// Copies `size` bytes of `file` into guest memory at `addr`, or fails with `TooBig` (naming
/// `wanted`) when no address fits.
fn copy_in(
    mem: &GuestMemoryMmap,
    kind: &'static str,
    path: String,
    file: &mut File,
    size: u64,
    addr: Option<u64>,
    wanted: u64,
) -> Result<u64, LoadError> {
    let Some(addr) = addr else {
        return Err(LoadError::TooBig {
            kind,
            path,
            size,
            addr: wanted,
        });
    };
    mem.read_exact_volatile_from(GuestAddress(addr), file, size as usize)
        .map_err(|e| LoadError::Read {
            kind,
            path,
            err: std::io::Error::other(e.to_string()),
        })?;
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn mem() -> GuestMemoryMmap {
        crate::memory::create_guest_memory(128 << 20).unwrap()
    }

    fn temp(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("sv-kernel-{}-{name}", std::process::id()));
        std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
        p
    }

    #[test]
    fn detects_formats() {
        assert_eq!(detect_format(b"\x7fELF\x02\x01"), KernelFormat::Elf);
        let mut bz = vec![0u8; 0x400];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        assert_eq!(detect_format(&bz), KernelFormat::BzImage);
        assert_eq!(detect_format(&[0x48, 0x31, 0xc0]), KernelFormat::Raw);
    }

    #[test]
    fn raw_kernel_lands_at_16m() {
        let m = mem();
        let mut raw = vec![0xf4, 0x90, 0x90];
        raw.resize(MIN_RAW_KERNEL as usize, 0);
        let p = temp("raw", &raw);
        let k = load_kernel(&m, &p).unwrap();
        assert_eq!(k.format, KernelFormat::Raw);
        assert_eq!(k.entry, 0x100_0000);
        assert_eq!(m.read_obj::<u8>(GuestAddress(0x100_0000)).unwrap(), 0xf4);
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn bad_kernels_are_named_errors() {
        let m = mem();
        let missing = std::path::Path::new("/nonexistent/vmlinux.bin");
        let e = load_kernel(&m, missing).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/vmlinux.bin"), "{e}");
        let empty = temp("empty", b"");
        assert!(load_kernel(&m, &empty)
            .unwrap_err()
            .to_string()
            .contains("is empty"));
        let mut elf = b"\x7fELF".to_vec();
        elf.extend_from_slice(&[0xffu8; 200]);
        let bad = temp("badelf", &elf);
        let e = load_kernel(&m, &bad).unwrap_err().to_string();
        assert!(e.contains("not a valid ELF image"), "{e}");
        let mut bz = vec![0u8; 0x400];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        let badbz = temp("badbz", &bz);
        let e = load_kernel(&m, &badbz).unwrap_err().to_string();
        assert!(e.contains("not a valid bzImage image"), "{e}");
        for p in [empty, bad, badbz] {
            std::fs::remove_file(p).unwrap();
        }
    }

    #[test]
    fn implausible_raw_kernels_are_refused_with_the_reason() {
        let m = mem();
        let tiny = temp("tiny", b"abcdef");
        let e = load_kernel(&m, &tiny).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "kernel {} is not a kernel image: it is 6 bytes, smaller than one page (4096 bytes) (expected an ELF vmlinux, a bzImage or a raw vmlinux.bin)",
                tiny.display()
            )
        );
        let mut zeros = vec![0u8; 64 << 10];
        let z = temp("zeros", &zeros);
        let e = load_kernel(&m, &z).unwrap_err().to_string();
        assert!(e.contains("its first page is all zeros"), "{e}");
        // Code after a zero page is still refused; code in the first page is not.
        zeros[4096] = 0xf4;
        std::fs::write(&z, &zeros).unwrap();
        assert!(load_kernel(&m, &z).is_err());
        zeros[4095] = 0xf4;
        std::fs::write(&z, &zeros).unwrap();
        load_kernel(&m, &z).unwrap();
        // Larger than all of guest memory: said so, before anything is read.
        let big = temp("big", b"");
        std::fs::File::options()
            .write(true)
            .open(&big)
            .unwrap()
            .set_len((128 << 20) + 1)
            .unwrap();
        let e = load_kernel(&m, &big).unwrap_err().to_string();
        assert!(
            e.ends_with(&format!(
                "({} bytes) is larger than guest memory (128 MiB)",
                (128 << 20) + 1
            )),
            "{e}"
        );
        // Within memory but not from 16 MiB on.
        let fits_not = temp("fitsnot", b"");
        std::fs::File::options()
            .write(true)
            .open(&fits_not)
            .unwrap()
            .set_len(120 << 20)
            .unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&fits_not)
            .and_then(|f| std::os::unix::fs::FileExt::write_at(&f, &[0xf4], 0))
            .unwrap();
        let e = load_kernel(&m, &fits_not).unwrap_err().to_string();
        assert!(
            e.contains("does not fit in guest memory at 0x1000000"),
            "{e}"
        );
        for p in [tiny, z, big, fits_not] {
            std::fs::remove_file(p).unwrap();
        }
    }

    #[test]
    fn bzimage_payload_loads_at_code32_start_and_enters_0x200_in() {
        let m = mem();
        let mut bz = vec![0u8; 1024];
        bz[0x1f1] = 1; // setup_sects: the payload starts at 1024
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        bz[0x206..0x208].copy_from_slice(&0x020cu16.to_le_bytes());
        bz[0x211] = 1; // LOADED_HIGH
        bz[0x214..0x218].copy_from_slice(&0x20_0000u32.to_le_bytes());
        bz.extend_from_slice(&[0xf4; 0x200]);
        bz.extend_from_slice(&[0x90, 0xeb, 0xfe]);
        let p = temp("bz", &bz);
        let k = load_kernel(&m, &p).unwrap();
        assert_eq!(k.format, KernelFormat::BzImage);
        assert_eq!(k.entry, 0x20_0200);
        assert_eq!(k.end, 0x20_0203);
        assert_eq!(m.read_obj::<u8>(GuestAddress(0x20_0200)).unwrap(), 0x90);
        let hdr = k.setup_header.unwrap();
        assert_eq!({ hdr.version }, 0x020c);
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn initrd_goes_high_and_aligned() {
        let m = mem();
        let p = temp("initrd", &[7u8; 5000]);
        let (addr, size) = load_initrd(&m, &p, 0x200_0000, 0x37ff_ffff).unwrap();
        assert_eq!(size, 5000);
        assert_eq!(addr & 0xfff, 0);
        assert!(addr + size <= 128 << 20);
        assert!(addr > (128 << 20) - 0x3000);
        assert_eq!(m.read_obj::<u8>(GuestAddress(addr + 4999)).unwrap(), 7);
        let e = load_initrd(&m, &p, 128 << 20, 0x37ff_ffff).unwrap_err();
        assert!(e.to_string().contains("does not fit"));
        std::fs::remove_file(p).unwrap();
    }
}
