//! `-m` sizes: `1024` (MiB), `134217728` (bytes), `512M`, `1.5G`, `2T`, `512MiB`,
//! `size=512M`.

use super::suboptions::{First, SubOpts};
use crate::error::{quote, ConfigError};
use crate::limits::{MAX_MEM_SIZE, MIN_MEM_SIZE};
use crate::validate::human_size;

const MIB: u64 = 1 << 20;

/// The whole `-m` value: `SIZE` or `size=SIZE`.
pub(crate) fn parse_mem_option(option: &str, value: &str) -> Result<u64, ConfigError> {
    let mut s = SubOpts::parse(option, value, First::Auto);
    let size = match (s.positional(), s.take("size")?) {
        (Some(v), None) | (None, Some(v)) => v,
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                option,
                "give the size once (SIZE or size=SIZE)",
            ))
        }
        (None, None) => return Err(ConfigError::MissingValue(option.to_string())),
    };
    s.finish()?;
    parse_mem_size(option, &size)
}

/// One size: decimal digits, an optional fraction and an optional unit suffix, as QEMU takes
/// them (`512M`, `1.5G`, `2T`). A bare number is MiB as in QEMU (`-m 1024`), unless it is
/// only valid as bytes (`-m 134217728`): the two valid ranges do not overlap. With a suffix the
/// range is left to validation. Hexadecimal is refused with its own reason: QEMU would read
/// `-m 0x10000000` as that many MiB, which is never what was meant.
pub(crate) fn parse_mem_size(option: &str, s: &str) -> Result<u64, ConfigError> {
    if s.len() > 2 && (s.starts_with("0x") || s.starts_with("0X")) {
        return Err(ConfigError::invalid(
            option,
            format!(
                "{} is hexadecimal, which memory sizes do not accept (write it in decimal, e.g. 256M or 268435456)",
                quote(s)
            ),
        ));
    }
    let int_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (int, rest) = s.split_at(int_end);
    let (frac, suffix) = match rest.strip_prefix('.') {
        Some(r) => r.split_at(r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len())),
        None => ("", rest),
    };
    if int.is_empty() || (rest.starts_with('.') && frac.is_empty()) {
        return Err(ConfigError::invalid(
            option,
            format!(
                "{} is not a memory size (examples: 1024, 512M, 1.5G, 2G)",
                quote(s)
            ),
        ));
    }
    let too_large =
        || ConfigError::invalid(option, format!("memory size {} is too large", quote(s)));
    let unit: u64 = match suffix.to_ascii_lowercase().as_str() {
        "" if frac.is_empty() => return bare_number(option, int.parse().map_err(|_| too_large())?),
        "" => MIB,
        "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        _ => {
            return Err(ConfigError::invalid(
                option,
                format!(
                    "{} has an unknown size suffix (use K, M, G, T or KiB, MiB, GiB, TiB)",
                    quote(s)
                ),
            ))
        }
    };
    // Exact arithmetic: `int.frac` times the unit must be a whole number of bytes.
    let digits = format!("{int}{frac}");
    let scaled: u128 = digits.parse().map_err(|_| too_large())?;
    let scale = 10u128
        .checked_pow(frac.len() as u32)
        .ok_or_else(too_large)?;
    let bytes = scaled.checked_mul(u128::from(unit)).ok_or_else(too_large)?;
    if bytes % scale != 0 {
        return Err(ConfigError::invalid(
            option,
            format!("memory size {} is not a whole number of bytes", quote(s)),
        ));
    }
    u64::try_from(bytes / scale).map_err(|_| too_large())
}

fn bare_number(option: &str, n: u64) -> Result<u64, ConfigError> {
    let range = MIN_MEM_SIZE..=MAX_MEM_SIZE;
    match n.checked_mul(MIB) {
        Some(bytes) if range.contains(&bytes) => Ok(bytes),
        _ if range.contains(&n) => Ok(n),
        _ => Err(ConfigError::invalid(
            option,
            format!(
                "memory size {n} is out of range {}..={} (a bare number is MiB, or bytes from {MIN_MEM_SIZE})",
                human_size(MIN_MEM_SIZE),
                human_size(MAX_MEM_SIZE)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem(s: &str) -> Result<u64, String> {
        parse_mem_option("-m", s).map_err(|e| e.to_string())
    }

    #[test]
    fn table() {
        assert_eq!(mem("1024"), Ok(1 << 30));
        assert_eq!(mem("128"), Ok(128 << 20));
        assert_eq!(mem("524288"), Ok(512 << 30));
        assert_eq!(mem("512M"), Ok(512 << 20));
        assert_eq!(mem("2G"), Ok(2 << 30));
        assert_eq!(mem("134217728"), Ok(128 << 20));
        assert_eq!(mem("549755813888"), Ok(512 << 30));
        assert_eq!(mem("805306368"), Ok(768 << 20));
        assert_eq!(mem("size=512M"), Ok(512 << 20));
        assert_eq!(mem("size=1024"), Ok(1 << 30));
    }

    #[test]
    fn suffix_spellings() {
        for s in [
            "512M",
            "512m",
            "512MiB",
            "512mib",
            "524288K",
            "524288k",
            "524288KiB",
        ] {
            assert_eq!(mem(s), Ok(512 << 20), "{s}");
        }
        for s in ["1G", "1g", "1GiB", "1gib"] {
            assert_eq!(mem(s), Ok(1 << 30), "{s}");
        }
        assert_eq!(mem("1T"), Ok(1 << 40));
        assert_eq!(mem("134217728B"), Ok(128 << 20));
    }

    #[test]
    fn bare_numbers_out_of_both_ranges() {
        let want = "-m: memory size 127 is out of range 128 MiB..=512 GiB (a bare number is MiB, or bytes from 134217728)";
        assert_eq!(mem("127"), Err(want.to_string()));
        let e = mem("100000000").unwrap_err();
        assert!(
            e.starts_with("-m: memory size 100000000 is out of range"),
            "{e}"
        );
        assert!(mem("0").is_err());
        assert!(mem("524289").unwrap_err().contains("out of range"));
        assert!(mem("549755813889").unwrap_err().contains("out of range"));
    }

    #[test]
    fn fractions_as_qemu_takes_them() {
        assert_eq!(mem("1.5G"), Ok(1536 << 20));
        assert_eq!(mem("0.5T"), Ok(512 << 30));
        assert_eq!(mem("1.25GiB"), Ok(1280 << 20));
        assert_eq!(mem("1024.0M"), Ok(1 << 30));
        assert_eq!(
            mem("512.5"),
            Ok((512 << 20) + (512 << 10)),
            "a bare fraction is MiB"
        );
        assert_eq!(
            mem("1.0000001K"),
            Err("-m: memory size `1.0000001K` is not a whole number of bytes".into())
        );
        assert!(mem("1.99999999999999999999999999999999999999999G")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn hexadecimal_is_refused_with_its_reason() {
        for s in ["0x10000000", "0X8000000", "0x400M"] {
            let e = mem(s).unwrap_err();
            assert!(e.contains("is hexadecimal"), "{e}");
            assert!(e.contains("256M"), "{e}");
        }
        assert!(mem("0x").unwrap_err().contains("unknown size suffix"));
    }

    #[test]
    fn suffixed_values_are_not_range_checked_here() {
        assert_eq!(mem("100M"), Ok(100 << 20));
        assert_eq!(mem("1024G"), Ok(1024 << 30));
    }

    #[test]
    fn malformed() {
        assert_eq!(
            mem("512X"),
            Err(
                "-m: `512X` has an unknown size suffix (use K, M, G, T or KiB, MiB, GiB, TiB)"
                    .into()
            )
        );
        assert_eq!(
            mem("abc"),
            Err("-m: `abc` is not a memory size (examples: 1024, 512M, 1.5G, 2G)".into())
        );
        assert!(mem("512 M").unwrap_err().contains("unknown size suffix"));
        assert!(mem("1.").unwrap_err().contains("not a memory size"));
        assert!(mem(".5G").unwrap_err().contains("not a memory size"));
        assert!(mem("1.5.5G").unwrap_err().contains("unknown size suffix"));
        assert!(mem("-512M").unwrap_err().contains("not a memory size"));
        assert!(mem("99999999999999999999")
            .unwrap_err()
            .contains("too large"));
        assert!(mem("99999999999G").unwrap_err().contains("too large"));
        assert_eq!(
            mem("512M,slots=2").unwrap_err(),
            "-m: unknown key `slots` (allowed: size)"
        );
        assert_eq!(
            mem("512M,size=1G").unwrap_err(),
            "-m: give the size once (SIZE or size=SIZE)"
        );
    }
}
