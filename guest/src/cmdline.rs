//! Kernel command line: splitting into parameters the way Linux's `next_arg`
//! does, and the `virtio_mmio.device=<size>@<base>:<irq>[:<id>]` parameter as
//! `drivers/virtio/virtio_mmio.c` parses it.

use crate::fixedvec::FixedVec;
use crate::num::{memparse, parse_auto, parse_radix};

/// Iterator over `(name, value)` parameters of a command line.
///
/// Parameters are separated by whitespace; double quotes group whitespace
/// into a parameter and are stripped from the value (`a="b c"` gives `a`,
/// `b c`). Parsing stops at a bare `--` (the rest belongs to init).
pub struct Params<'a> {
    rest: &'a [u8],
}

/// The parameters of `cmdline`.
pub fn params(cmdline: &[u8]) -> Params<'_> {
    Params { rest: cmdline }
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

impl<'a> Iterator for Params<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        let start = self.rest.iter().position(|&c| !is_space(c))?;
        let s = &self.rest[start..];
        let mut in_quote = false;
        let mut equals = None;
        let mut end = s.len();
        for (i, &c) in s.iter().enumerate() {
            if !in_quote && is_space(c) {
                end = i;
                break;
            }
            if equals.is_none() && c == b'=' {
                equals = Some(i);
            } else if c == b'"' {
                in_quote = !in_quote;
            }
        }
        self.rest = &s[end..];
        let mut arg = &s[..end];
        // A whole argument in quotes: Linux skips the opening quote before
        // scanning (so `equals` counts from after it) ...
        let quoted = arg.first() == Some(&b'"');
        if quoted {
            arg = &arg[1..];
        }
        let equals = equals.map(|e| if quoted { e - 1 } else { e });
        let mut stop = arg.len();
        let mut trimmed = false;
        let mut val_start = None;
        if let Some(eq) = equals {
            let mut v = eq + 1;
            // ... drops an opening quote of the value and then the last
            // character of the argument if it is a quote ...
            if arg.get(v) == Some(&b'"') {
                v += 1;
                if stop > 0 && arg[stop - 1] == b'"' {
                    stop -= 1;
                    trimmed = true;
                }
            }
            val_start = Some(v);
        }
        // ... and for a quoted argument the closing quote, once.
        if quoted && !trimmed && stop > 0 && arg[stop - 1] == b'"' {
            stop -= 1;
        }
        let (name, value) = match (equals, val_start) {
            (Some(eq), Some(v)) => (&arg[..eq], Some(&arg[v.min(stop)..stop.max(eq + 1)])),
            _ => (&arg[..stop], None),
        };
        if name == b"--" && value.is_none() {
            self.rest = &[];
            return None;
        }
        Some((name, value))
    }
}

/// Parameter names compare equal with `-` and `_` interchangeable (`parameq`).
pub fn name_eq(a: &[u8], b: &[u8]) -> bool {
    let norm = |c: u8| if c == b'-' { b'_' } else { c };
    a.len() == b.len() && a.iter().zip(b).all(|(&x, &y)| norm(x) == norm(y))
}

/// One `virtio_mmio.device=` entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtioMmioDev {
    /// Size of the register window.
    pub size: u64,
    /// Physical base address of the register window.
    pub base: u64,
    /// Interrupt line (GSI).
    pub irq: u32,
    /// Optional platform device id.
    pub id: Option<i32>,
}

/// Most virtio-mmio devices kept.
pub const MAX_VIRTIO_MMIO: usize = 32;

/// The parameter name Linux registers for command-line virtio-mmio devices.
pub const VIRTIO_MMIO_PARAM: &[u8] = b"virtio_mmio.device";

fn parse_signed_dec(s: &[u8]) -> Option<(i32, &[u8])> {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (v, rest) = parse_radix(digits, 10)?;
    let v = i64::try_from(v).ok()?;
    let v = if neg { -v } else { v };
    Some((i32::try_from(v).ok()?, rest))
}

/// Parses `<size>@<base>:<irq>[:<id>]` like Linux's `vm_cmdline_set`:
/// `memparse` for the size (K/M/G/... suffix), `%lli` for the base (`0x` hex,
/// leading `0` octal, else decimal), `%u` for the irq (decimal, not 0) and
/// `%d` for the id; nothing may follow.
pub fn parse_virtio_mmio(value: &[u8]) -> Option<VirtioMmioDev> {
    let (size, rest) = memparse(value).unwrap_or((0, value));
    let rest = rest.strip_prefix(b"@")?;
    let (base, rest) = parse_auto(rest)?;
    let rest = rest.strip_prefix(b":")?;
    let (irq, rest) = parse_radix(rest, 10)?;
    let irq = u32::try_from(irq).ok().filter(|&i| i != 0)?;
    let id = match rest {
        [] => None,
        [b':', tail @ ..] => {
            let (id, tail) = parse_signed_dec(tail)?;
            if !tail.is_empty() {
                return None;
            }
            Some(id)
        }
        _ => return None,
    };
    Some(VirtioMmioDev {
        size,
        base,
        irq,
        id,
    })
}

/// The virtio-mmio devices named on the command line.
pub type VirtioMmioList = FixedVec<VirtioMmioDev, MAX_VIRTIO_MMIO>;

/// Result of scanning a command line for virtio-mmio devices.
#[derive(Clone, Copy, Debug, Default)]
pub struct VirtioScan {
    /// The valid entries, in command-line order (up to [`MAX_VIRTIO_MMIO`]).
    pub devices: VirtioMmioList,
    /// Entries that did not parse (Linux rejects them with -EINVAL).
    pub invalid: usize,
    /// Valid entries dropped because the list was full.
    pub dropped: usize,
}

/// Collects every `virtio_mmio.device=` entry of `cmdline`.
pub fn virtio_mmio_devices(cmdline: &[u8]) -> VirtioScan {
    let mut scan = VirtioScan::default();
    for (name, value) in params(cmdline) {
        if !name_eq(name, VIRTIO_MMIO_PARAM) {
            continue;
        }
        match value.and_then(parse_virtio_mmio) {
            Some(dev) => {
                if scan.devices.push(dev).is_err() {
                    scan.dropped += 1;
                }
            }
            None => scan.invalid += 1,
        }
    }
    scan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(s: &str) -> Vec<(String, Option<String>)> {
        params(s.as_bytes())
            .map(|(n, v)| {
                (
                    String::from_utf8(n.to_vec()).unwrap(),
                    v.map(|v| String::from_utf8(v.to_vec()).unwrap()),
                )
            })
            .collect()
    }

    fn p(n: &str, v: Option<&str>) -> (String, Option<String>) {
        (n.to_string(), v.map(str::to_string))
    }

    #[test]
    fn splitting() {
        assert_eq!(
            all("  console=ttyS0  reboot=k panic=1 quiet\n"),
            vec![
                p("console", Some("ttyS0")),
                p("reboot", Some("k")),
                p("panic", Some("1")),
                p("quiet", None)
            ]
        );
        assert_eq!(
            all(r#"a="b c" "d=e f" x= y=="#),
            vec![
                p("a", Some("b c")),
                p("d", Some("e f")),
                p("x", Some("")),
                p("y", Some("="))
            ]
        );
        // Quotes are only stripped where Linux strips them.
        assert_eq!(all(r#"a=b""#), vec![p("a", Some("b\""))]);
        assert_eq!(all(r#"c="""#), vec![p("c", Some(""))]);
        assert_eq!(all(r#"d=""#), vec![p("d", Some(""))]);
        assert_eq!(
            all(r#""e="f g"" h"#),
            vec![p("e", Some("f")), p("g\"\"", None), p("h", None)]
        );
        assert_eq!(all(r#""quoted arg""#), vec![p("quoted arg", None)]);
        assert_eq!(all("a -- b=1"), vec![p("a", None)]);
        assert_eq!(all(""), vec![]);
        assert_eq!(all("   "), vec![]);
    }

    #[test]
    fn names_dash_underscore() {
        assert!(name_eq(b"virtio-mmio.device", VIRTIO_MMIO_PARAM));
        assert!(name_eq(b"virtio_mmio.device", VIRTIO_MMIO_PARAM));
        assert!(!name_eq(b"virtio_mmio.devices", VIRTIO_MMIO_PARAM));
        assert!(!name_eq(b"virtio_mmio", VIRTIO_MMIO_PARAM));
    }

    fn dev(size: u64, base: u64, irq: u32, id: Option<i32>) -> Option<VirtioMmioDev> {
        Some(VirtioMmioDev {
            size,
            base,
            irq,
            id,
        })
    }

    #[test]
    fn virtio_entries() {
        assert_eq!(
            parse_virtio_mmio(b"512@0xfeb00e00:12"),
            dev(512, 0xfeb0_0e00, 12, None)
        );
        assert_eq!(
            parse_virtio_mmio(b"4K@0xd0000000:5:3"),
            dev(4096, 0xd000_0000, 5, Some(3))
        );
        assert_eq!(
            parse_virtio_mmio(b"0x200@4096:7"),
            dev(0x200, 4096, 7, None)
        );
        assert_eq!(
            parse_virtio_mmio(b"1M@010:9:-1"),
            dev(1 << 20, 8, 9, Some(-1))
        );
        assert_eq!(parse_virtio_mmio(b"1m@0X10:33"), dev(1 << 20, 16, 33, None));
        // Linux accepts a missing size (memparse gives 0).
        assert_eq!(parse_virtio_mmio(b"@0x1000:5"), dev(0, 0x1000, 5, None));
    }

    #[test]
    fn virtio_rejects() {
        for bad in [
            &b""[..],
            b"512",
            b"512@",
            b"512@0x1000",
            b"512@0x1000:",
            b"512@0x1000:0",
            b"512@0x1000:5:",
            b"512@0x1000:5:x",
            b"512@0x1000:5:1:2",
            b"512@0x1000:5x",
            b"512@0x1000:0x5",
            b"512@0x1000:-5",
            b"512 0x1000:5",
            b"512@0x1000:99999999999",
        ] {
            assert_eq!(
                parse_virtio_mmio(bad),
                None,
                "{:?}",
                core::str::from_utf8(bad)
            );
        }
    }

    #[test]
    fn scan_cmdline() {
        let c = b"console=ttyS0 virtio_mmio.device=512@0xfeb00e00:12 \
                  virtio-mmio.device=4K@0xfeb00c00:11:1 virtio_mmio.device=bogus \
                  virtio_mmio.device virtio_mmio.foo=1 -- virtio_mmio.device=512@0x1:5";
        let s = virtio_mmio_devices(c);
        assert_eq!(s.devices.len(), 2);
        assert_eq!(s.invalid, 2);
        assert_eq!(s.dropped, 0);
        assert_eq!(s.devices.as_slice()[0].base, 0xfeb0_0e00);
        assert_eq!(s.devices.as_slice()[1].irq, 11);
        assert_eq!(s.devices.as_slice()[1].id, Some(1));
    }

    #[test]
    fn scan_overflow() {
        let mut c = String::new();
        for i in 0..40 {
            c.push_str(&format!(
                "virtio_mmio.device=512@0x{:x}:{} ",
                0xd000_0000u64 + i * 512,
                5 + i
            ));
        }
        let s = virtio_mmio_devices(c.as_bytes());
        assert_eq!(s.devices.len(), MAX_VIRTIO_MMIO);
        assert_eq!(s.dropped, 40 - MAX_VIRTIO_MMIO);
    }
}
