//! The one error type of this crate. Every message is a single line that
//! names the option (as the user spelled it) or the JSON key, then the rule.

use thiserror::Error;

/// Why a command line or `-config` file was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// An option this VMM does not know, e.g. `-bogus`, with the nearest known spelling when
    /// one is close (`-kernal` → `-kernel`).
    #[error("{}: unknown option ({}see -help)", .arg.escape_debug(),
        .suggestion.as_ref().map(|s| format!("did you mean {s}? ")).unwrap_or_default())]
    UnknownOption {
        arg: String,
        suggestion: Option<String>,
    },
    /// A word that is neither an option nor an option's value.
    #[error("unexpected argument {0} (options start with '-', see -help)")]
    UnexpectedArgument(String),
    /// An option that needs a value was last, or followed by another option.
    #[error("{0}: missing value")]
    MissingValue(String),
    /// A single-valued option given twice.
    #[error("{0}: given more than once")]
    Duplicate(String),
    /// A `key=value` sub-option (or JSON key) that the option does not have.
    #[error("{option}: unknown key {key} (allowed: {allowed})")]
    UnknownKey {
        option: String,
        key: String,
        allowed: String,
    },
    /// A value that breaks a rule; `option` is `-smp`, `machine-config.vcpu_count`, ...
    #[error("{option}: {reason}")]
    Invalid { option: String, reason: String },
    /// The `-config` file can't be read or is not JSON.
    #[error("-config {}: {reason}", path.escape_debug())]
    ConfigFile { path: String, reason: String },
    /// A command-line argument that is not valid UTF-8.
    #[error("argument {0} is not valid UTF-8")]
    NotUtf8(String),
}

impl ConfigError {
    pub(crate) fn invalid(option: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            option: option.into(),
            reason: one_line(&reason.into()),
        }
    }
}

/// Quote a user-supplied value for an error message: backticks around it and
/// control characters escaped, so the message stays on one line.
pub(crate) fn quote(s: &str) -> String {
    format!("`{}`", s.escape_debug())
}

/// Fold a foreign message (an I/O or JSON error) onto one line.
pub(crate) fn one_line(s: &str) -> String {
    s.split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_escapes_control_characters() {
        assert_eq!(quote("a\nb"), "`a\\nb`");
        assert_eq!(quote("tap0"), "`tap0`");
    }

    #[test]
    fn invalid_folds_newlines() {
        let e = ConfigError::invalid("-m", "line one\nline two");
        assert_eq!(e.to_string(), "-m: line one line two");
    }

    #[test]
    fn messages_are_one_line() {
        let all = [
            ConfigError::UnknownOption {
                arg: "-bogus".into(),
                suggestion: None,
            },
            ConfigError::UnknownOption {
                arg: "-kernal".into(),
                suggestion: Some("-kernel".into()),
            },
            ConfigError::UnexpectedArgument("`x`".into()),
            ConfigError::MissingValue("-kernel".into()),
            ConfigError::Duplicate("-m".into()),
            ConfigError::UnknownKey {
                option: "-drive".into(),
                key: "`foo`".into(),
                allowed: "id, file".into(),
            },
            ConfigError::ConfigFile {
                path: "a.json".into(),
                reason: "x".into(),
            },
            ConfigError::NotUtf8("`x`".into()),
        ];
        for e in all {
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }
}
