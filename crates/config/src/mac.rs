//! MAC addresses: `0e:90:df:9f:a8:88`.

use crate::error::quote;

/// Parse six colon-separated hex bytes, e.g. `0e:90:df:9f:a8:88`.
/// The error says what was wrong, for the caller to prefix with the option.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let bad = || {
        format!(
            "bad MAC address {} (expected six hex bytes like 0e:90:df:9f:a8:88)",
            quote(s)
        )
    };
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in mac.iter_mut() {
        let part = parts.next().ok_or_else(bad)?;
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(mac)
}

/// The usual lower-case colon form.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_good_macs() {
        assert_eq!(
            parse_mac("0e:90:df:9f:a8:88").unwrap(),
            [0x0e, 0x90, 0xdf, 0x9f, 0xa8, 0x88]
        );
        assert_eq!(
            parse_mac("AA:BB:CC:DD:EE:FF").unwrap(),
            [0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]
        );
    }

    #[test]
    fn rejects_bad_macs() {
        for bad in [
            "",
            "0e:90:df:9f:a8",
            "0e:90:df:9f:a8:88:00",
            "0e:90:df:9f:a8:8",
            "0e:90:df:9f:a8:zz",
            "0e-90-df-9f-a8-88",
            "0e:90:df:9f:a8:+8",
            "0e:90:df:9f:a8:888",
        ] {
            let e = parse_mac(bad).unwrap_err();
            assert!(e.contains("bad MAC address"), "{bad}: {e}");
        }
    }

    #[test]
    fn formats() {
        assert_eq!(
            format_mac(&[0x0e, 0x90, 0xdf, 0x9f, 0xa8, 0x88]),
            "0e:90:df:9f:a8:88"
        );
    }
}
