//! Where a configuration value came from, so that an error can name the
//! option as the user wrote it (`-smp`, `--smp`) or the JSON key
//! (`machine-config.vcpu_count`).

/// The source of one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A command-line option, as spelled (`-drive`, `--m`).
    Opt(String),
    /// A JSON object, as a dotted path (`machine-config`, `drive[1]`).
    Json(String),
}

impl Origin {
    pub(crate) fn opt(spelling: &str) -> Self {
        Origin::Opt(spelling.to_string())
    }

    pub(crate) fn json(path: &str) -> Self {
        Origin::Json(path.to_string())
    }

    /// The name to put in an error about the field `json_key` of this value:
    /// the option itself, or `section.json_key`.
    pub(crate) fn field(&self, json_key: &str) -> String {
        match self {
            Origin::Opt(s) => s.clone(),
            Origin::Json(p) => format!("{p}.{json_key}"),
        }
    }

    /// The bare name: the option, or the JSON section.
    pub(crate) fn name(&self) -> &str {
        match self {
            Origin::Opt(s) | Origin::Json(s) => s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names() {
        assert_eq!(Origin::opt("-smp").field("vcpu_count"), "-smp");
        assert_eq!(
            Origin::json("machine-config").field("vcpu_count"),
            "machine-config.vcpu_count"
        );
        assert_eq!(Origin::json("drive[1]").name(), "drive[1]");
    }
}
