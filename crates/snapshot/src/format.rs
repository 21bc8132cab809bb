//! The `state` file: header, JSON body, CRC-64.
//!
//! ```text
//! offset  size  field
//!      0     8  magic "SVSNAPST"
//!      8     4  format version (little-endian)
//!     12    16  architecture, NUL-padded ("x86_64")
//!     28    16  CPU vendor, NUL-padded (CPUID leaf 0: "AuthenticAMD", "GenuineIntel")
//!     44     8  body length N
//!     52     N  body: the machine's state tree, JSON
//!   52+N     8  CRC-64/XZ of bytes 0..52+N
//! ```

use crate::crc64::crc64;

pub const MAGIC: [u8; 8] = *b"SVSNAPST";
/// Bumped whenever the body's meaning changes; older or newer snapshots are refused.
pub const FORMAT_VERSION: u32 = 1;
/// A state file is never larger than this (254 vCPUs' registers and every device fit easily).
pub const MAX_STATE_SIZE: u64 = 64 << 20;
const HEADER_LEN: usize = 52;
const NAME_LEN: usize = 16;

/// Why a state file cannot be loaded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("not a stratovirt snapshot (bad magic)")]
    Magic,
    #[error("snapshot format version {found}, this stratovirt reads version {FORMAT_VERSION}")]
    Version { found: u32 },
    #[error("snapshot taken on {found}, this host is {expected}")]
    Arch { found: String, expected: String },
    #[error("snapshot taken on a {found} CPU, this host's is {expected}")]
    Vendor { found: String, expected: String },
    #[error("the state file is truncated ({0} bytes)")]
    Truncated(u64),
    #[error("the state file is {0} bytes, more than a snapshot can be")]
    TooLarge(u64),
    #[error("the state file is corrupt (checksum mismatch)")]
    Checksum,
}

/// What the header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub arch: String,
    pub cpu_vendor: String,
}

impl Header {
    /// The header of a snapshot taken now, on this host.
    pub fn this_host() -> Header {
        Header {
            version: FORMAT_VERSION,
            arch: std::env::consts::ARCH.to_string(),
            cpu_vendor: cpu_vendor(),
        }
    }
}

/// The CPU vendor string of CPUID leaf 0.
pub fn cpu_vendor() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        let r = std::arch::x86_64::__cpuid(0);
        let mut v = Vec::with_capacity(12);
        for w in [r.ebx, r.edx, r.ecx] {
            v.extend_from_slice(&w.to_le_bytes());
        }
        String::from_utf8_lossy(&v).into_owned()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        String::from("unknown")
    }
}

fn name_field(s: &str) -> [u8; NAME_LEN] {
    let mut f = [0u8; NAME_LEN];
    let n = s.len().min(NAME_LEN);
    f[..n].copy_from_slice(&s.as_bytes()[..n]);
    f
}

fn name_of(f: &[u8]) -> String {
    let end = f.iter().position(|&b| b == 0).unwrap_or(f.len());
    String::from_utf8_lossy(&f[..end]).into_owned()
}

/// A whole state file: header, `body`, checksum.
pub fn encode(header: &Header, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + 8);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&header.version.to_le_bytes());
    out.extend_from_slice(&name_field(&header.arch));
    out.extend_from_slice(&name_field(&header.cpu_vendor));
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(body);
    let crc = crc64(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Checks a state file against `expected` (this host) and returns its body.
pub fn decode<'a>(bytes: &'a [u8], expected: &Header) -> Result<&'a [u8], FormatError> {
    let len = bytes.len() as u64;
    if len > MAX_STATE_SIZE {
        return Err(FormatError::TooLarge(len));
    }
    if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
        return Err(if bytes.len() < MAGIC.len() {
            FormatError::Truncated(len)
        } else {
            FormatError::Magic
        });
    }
    if bytes.len() < HEADER_LEN + 8 {
        return Err(FormatError::Truncated(len));
    }
    let body_len = u64::from_le_bytes(bytes[44..52].try_into().expect("8 bytes"));
    let end = (HEADER_LEN as u64).checked_add(body_len);
    if end.and_then(|e| e.checked_add(8)) != Some(len) {
        return Err(FormatError::Truncated(len));
    }
    let end = end.expect("checked") as usize;
    let stored = u64::from_le_bytes(bytes[end..end + 8].try_into().expect("8 bytes"));
    if crc64(&bytes[..end]) != stored {
        return Err(FormatError::Checksum);
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(FormatError::Version { found: version });
    }
    let arch = name_of(&bytes[12..28]);
    if arch != expected.arch {
        return Err(FormatError::Arch {
            found: arch,
            expected: expected.arch.clone(),
        });
    }
    let vendor = name_of(&bytes[28..44]);
    if vendor != expected.cpu_vendor {
        return Err(FormatError::Vendor {
            found: vendor,
            expected: expected.cpu_vendor.clone(),
        });
    }
    Ok(&bytes[HEADER_LEN..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Header {
        Header {
            version: FORMAT_VERSION,
            arch: "x86_64".into(),
            cpu_vendor: "AuthenticAMD".into(),
        }
    }

    #[test]
    fn round_trip() {
        let f = encode(&host(), b"{\"a\":1}");
        assert_eq!(decode(&f, &host()), Ok(&b"{\"a\":1}"[..]));
    }

    #[test]
    fn every_byte_is_covered() {
        let f = encode(&host(), b"{\"vcpus\":[1,2,3]}");
        for i in 0..f.len() {
            let mut g = f.clone();
            g[i] ^= 0x40;
            assert!(
                decode(&g, &host()).is_err(),
                "flipping byte {i} went unnoticed"
            );
        }
        for n in 0..f.len() {
            assert!(decode(&f[..n], &host()).is_err(), "truncated to {n}");
        }
        let mut longer = f.clone();
        longer.push(0);
        assert!(decode(&longer, &host()).is_err());
    }

    #[test]
    fn other_version_arch_or_vendor_is_named() {
        let mut h = host();
        h.version = 7;
        let f = encode(&h, b"{}");
        assert_eq!(decode(&f, &host()), Err(FormatError::Version { found: 7 }));
        let mut h = host();
        h.cpu_vendor = "GenuineIntel".into();
        let e = decode(&encode(&h, b"{}"), &host()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "snapshot taken on a GenuineIntel CPU, this host's is AuthenticAMD"
        );
        let mut h = host();
        h.arch = "aarch64".into();
        assert!(matches!(
            decode(&encode(&h, b"{}"), &host()),
            Err(FormatError::Arch { .. })
        ));
        assert_eq!(
            decode(
                b"NOTASNAPSHOTxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
                &host()
            ),
            Err(FormatError::Magic)
        );
    }

    #[test]
    fn this_host_has_a_vendor() {
        let h = Header::this_host();
        assert_eq!(h.version, FORMAT_VERSION);
        assert!(!h.cpu_vendor.is_empty());
    }
}
