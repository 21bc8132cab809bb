//! `key=value,...` sub-options, QEMU style: `,,` is a literal comma, a bare
//! word is a flag (`server`, `nowait`), and the first item may be a bare value
//! (`-smp 2`, `-netdev tap,...`, `-qmp unix:/path,...`).

use crate::error::{quote, ConfigError};

/// How to read the first item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum First {
    /// A bare value if it has no `=`.
    Auto,
    /// Always a bare value, even with `=` in it (an address or path).
    Value,
}

/// Parse a boolean: on/off, true/false, yes/no.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" => Some(true),
        "off" | "false" | "no" => Some(false),
        _ => None,
    }
}

/// Parse a decimal unsigned integer.
pub(crate) fn parse_u64(option: &str, what: &str, s: &str) -> Result<u64, ConfigError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ConfigError::invalid(
            option,
            format!("{what} {} is not a number", quote(s)),
        ));
    }
    s.parse()
        .map_err(|_| ConfigError::invalid(option, format!("{what} {} is too large", quote(s))))
}

/// Split on `,`, reading `,,` as a literal comma. Empty items are dropped.
fn split(value: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                cur.push(',');
            } else {
                items.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    items.push(cur);
    items.retain(|i| !i.is_empty());
    items
}

/// The parsed sub-options of one option value. Take what you accept, then
/// call [`SubOpts::finish`] to refuse the rest.
#[derive(Debug)]
pub(crate) struct SubOpts {
    option: String,
    positional: Option<String>,
    positional_used: bool,
    /// `(key, value)`; `None` for a bare flag.
    items: Vec<(String, Option<String>)>,
    used: Vec<bool>,
    asked: Vec<String>,
}

impl SubOpts {
    /// `option` is the option as spelled, for error messages.
    pub(crate) fn parse(option: &str, value: &str, first: First) -> Self {
        let mut raw = split(value).into_iter();
        let mut positional = None;
        let mut items = Vec::new();
        if let Some(head) = raw.next() {
            if first == First::Value || !head.contains('=') {
                positional = Some(head);
            } else {
                items.push(head);
            }
        }
        items.extend(raw);
        let items: Vec<(String, Option<String>)> = items
            .into_iter()
            .map(|i| match i.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (i, None),
            })
            .collect();
        SubOpts {
            option: option.to_string(),
            positional,
            positional_used: false,
            used: vec![false; items.len()],
            items,
            asked: Vec::new(),
        }
    }

    pub(crate) fn option(&self) -> &str {
        &self.option
    }

    fn ask(&mut self, key: &str) {
        if !self.asked.iter().any(|k| k == key) {
            self.asked.push(key.to_string());
        }
    }

    /// The bare first item, if any.
    pub(crate) fn positional(&mut self) -> Option<String> {
        self.positional_used = true;
        self.positional.clone()
    }

    fn find(
        &mut self,
        matches: impl Fn(&str, bool) -> bool,
        key: &str,
    ) -> Result<Option<usize>, ConfigError> {
        let hits: Vec<usize> = (0..self.items.len())
            .filter(|&i| matches(&self.items[i].0, self.items[i].1.is_some()))
            .collect();
        if hits.len() > 1 {
            return Err(ConfigError::invalid(
                &self.option,
                format!("{} given more than once", quote(key)),
            ));
        }
        for &i in &hits {
            self.used[i] = true;
        }
        Ok(hits.first().copied())
    }

    /// `key=value`. A bare `key` without a value is an error.
    pub(crate) fn take(&mut self, key: &str) -> Result<Option<String>, ConfigError> {
        self.ask(key);
        let Some(i) = self.find(|k, _| k == key, key)? else {
            return Ok(None);
        };
        match &self.items[i].1 {
            Some(v) => Ok(Some(v.clone())),
            None => Err(ConfigError::invalid(
                &self.option,
                format!("{} needs a value ({key}=...)", quote(key)),
            )),
        }
    }

    /// `key=on|off|...`, a bare `key` (on) or a bare `nokey` (off).
    pub(crate) fn take_bool(&mut self, key: &str) -> Result<Option<bool>, ConfigError> {
        self.ask(key);
        let negated = format!("no{key}");
        let Some(i) = self.find(|k, has_value| k == key || (!has_value && k == negated), key)?
        else {
            return Ok(None);
        };
        match &self.items[i] {
            (_, Some(v)) => parse_bool(v).map(Some).ok_or_else(|| {
                ConfigError::invalid(
                    &self.option,
                    format!(
                        "{key}={} is not a boolean (use on/off, true/false or yes/no)",
                        v.escape_debug()
                    ),
                )
            }),
            (k, None) => Ok(Some(k == key)),
        }
    }

    /// `key=N`, a decimal number.
    pub(crate) fn take_u64(&mut self, key: &str) -> Result<Option<u64>, ConfigError> {
        match self.take(key)? {
            Some(v) => parse_u64(&self.option, key, &v).map(Some),
            None => Ok(None),
        }
    }

    /// Refuse whatever was not taken.
    pub(crate) fn finish(self) -> Result<(), ConfigError> {
        if let (Some(p), false) = (&self.positional, self.positional_used) {
            return Err(ConfigError::invalid(
                &self.option,
                format!("unexpected value {} (expected key=value)", quote(p)),
            ));
        }
        if let Some(i) = self.used.iter().position(|u| !u) {
            return Err(ConfigError::UnknownKey {
                option: self.option,
                key: quote(&self.items[i].0),
                allowed: self.asked.join(", "),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_with_escaped_commas() {
        assert_eq!(split("a=1,b=2"), vec!["a=1", "b=2"]);
        assert_eq!(split("file=/a,,b,id=x"), vec!["file=/a,b", "id=x"]);
        assert_eq!(split("a,"), vec!["a"]);
        assert!(split("").is_empty());
    }

    #[test]
    fn positional_and_keys() {
        let mut s = SubOpts::parse("-netdev", "tap,id=net0,ifname=tap0", First::Auto);
        assert_eq!(s.positional().as_deref(), Some("tap"));
        assert_eq!(s.take("id").unwrap().as_deref(), Some("net0"));
        assert_eq!(s.take("ifname").unwrap().as_deref(), Some("tap0"));
        assert_eq!(s.take("mac").unwrap(), None);
        s.finish().unwrap();
    }

    #[test]
    fn first_item_with_equals_is_a_key_unless_forced() {
        let mut s = SubOpts::parse("-smp", "cpus=2", First::Auto);
        assert_eq!(s.positional(), None);
        assert_eq!(s.take_u64("cpus").unwrap(), Some(2));
        s.finish().unwrap();
        let mut s = SubOpts::parse("-qmp", "unix:/tmp/a=b,server", First::Value);
        assert_eq!(s.positional().as_deref(), Some("unix:/tmp/a=b"));
        assert_eq!(s.take_bool("server").unwrap(), Some(true));
        s.finish().unwrap();
    }

    #[test]
    fn booleans_and_flags() {
        let mut s = SubOpts::parse("-qmp", "unix:/x,server,nowait,readonly=yes", First::Value);
        s.positional();
        assert_eq!(s.take_bool("server").unwrap(), Some(true));
        assert_eq!(s.take_bool("wait").unwrap(), Some(false));
        assert_eq!(s.take_bool("readonly").unwrap(), Some(true));
        assert_eq!(s.take_bool("direct").unwrap(), None);
        s.finish().unwrap();
        for (v, b) in [
            ("on", true),
            ("off", false),
            ("true", true),
            ("false", false),
            ("yes", true),
            ("no", false),
        ] {
            assert_eq!(parse_bool(v), Some(b));
        }
        assert_eq!(parse_bool("maybe"), None);
    }

    #[test]
    fn bad_boolean_names_the_key() {
        let mut s = SubOpts::parse("-drive", "readonly=maybe", First::Auto);
        let e = s.take_bool("readonly").unwrap_err().to_string();
        assert_eq!(
            e,
            "-drive: readonly=maybe is not a boolean (use on/off, true/false or yes/no)"
        );
    }

    #[test]
    fn unknown_key_lists_allowed_keys() {
        let mut s = SubOpts::parse("-drive", "id=a,file=b,cache=none", First::Auto);
        s.take("id").unwrap();
        s.take("file").unwrap();
        let e = s.finish().unwrap_err().to_string();
        assert_eq!(e, "-drive: unknown key `cache` (allowed: id, file)");
    }

    #[test]
    fn duplicate_keys_and_missing_values() {
        let mut s = SubOpts::parse("-drive", "id=a,id=b", First::Auto);
        assert_eq!(
            s.take("id").unwrap_err().to_string(),
            "-drive: `id` given more than once"
        );
        let mut s = SubOpts::parse("-drive", "file=a,id", First::Auto);
        assert_eq!(
            s.take("id").unwrap_err().to_string(),
            "-drive: `id` needs a value (id=...)"
        );
    }

    #[test]
    fn unused_positional_is_refused() {
        let s = SubOpts::parse("-drive", "rootfs,file=a", First::Auto);
        assert_eq!(
            s.finish().unwrap_err().to_string(),
            "-drive: unexpected value `rootfs` (expected key=value)"
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u64("-smp", "cpus", "12").unwrap(), 12);
        assert_eq!(
            parse_u64("-smp", "cpus", "abc").unwrap_err().to_string(),
            "-smp: cpus `abc` is not a number"
        );
        assert_eq!(
            parse_u64("-smp", "cpus", "-1").unwrap_err().to_string(),
            "-smp: cpus `-1` is not a number"
        );
        assert!(parse_u64("-smp", "cpus", "99999999999999999999999")
            .unwrap_err()
            .to_string()
            .contains("too large"));
    }
}
