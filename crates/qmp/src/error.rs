//! QMP error classes and the error type every command handler returns.

use serde::Serialize;

/// The error classes QEMU reports in `{"error":{"class":...}}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum ErrorClass {
    /// Any error that has no more specific class (bad arguments, failed operations).
    GenericError,
    /// The requested command does not exist.
    CommandNotFound,
    /// A device exists but has not been activated by the guest.
    DeviceNotActive,
    /// The requested device does not exist.
    DeviceNotFound,
    /// The KVM host lacks a capability the command needs.
    KVMMissingCap,
}

impl ErrorClass {
    /// The class name as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::GenericError => "GenericError",
            ErrorClass::CommandNotFound => "CommandNotFound",
            ErrorClass::DeviceNotActive => "DeviceNotActive",
            ErrorClass::DeviceNotFound => "DeviceNotFound",
            ErrorClass::KVMMissingCap => "KVMMissingCap",
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A QMP error reply: `{"error":{"class":CLASS,"desc":DESC}}`.
///
/// Field order matches QEMU's wire format (`class` before `desc`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{class}: {desc}")]
pub struct QmpError {
    /// The QEMU error class.
    pub class: ErrorClass,
    /// Human-readable description, worded like QEMU where practical.
    pub desc: String,
}

impl QmpError {
    /// An error of any class.
    pub fn new(class: ErrorClass, desc: impl Into<String>) -> Self {
        QmpError {
            class,
            desc: desc.into(),
        }
    }

    /// A `GenericError` with the given description.
    pub fn generic(desc: impl Into<String>) -> Self {
        Self::new(ErrorClass::GenericError, desc)
    }

    /// `CommandNotFound`: "The command NAME has not been found".
    pub fn command_not_found(name: &str) -> Self {
        Self::new(
            ErrorClass::CommandNotFound,
            format!("The command {name} has not been found"),
        )
    }

    /// `DeviceNotFound`: "Device 'ID' not found".
    pub fn device_not_found(id: &str) -> Self {
        Self::new(
            ErrorClass::DeviceNotFound,
            format!("Device '{id}' not found"),
        )
    }

    /// `DeviceNotActive`: "No DEVICE device has been activated".
    pub fn device_not_active(device: &str) -> Self {
        Self::new(
            ErrorClass::DeviceNotActive,
            format!("No {device} device has been activated"),
        )
    }

    /// `GenericError`: "Parameter 'NAME' is missing".
    pub fn missing_parameter(name: &str) -> Self {
        Self::generic(format!("Parameter '{name}' is missing"))
    }

    /// `GenericError`: "Parameter 'NAME' is unexpected".
    pub fn unexpected_parameter(name: &str) -> Self {
        Self::generic(format!("Parameter '{name}' is unexpected"))
    }

    /// `GenericError`: "Invalid parameter type for 'NAME', expected: TYPE".
    pub fn invalid_parameter_type(name: &str, expected: &str) -> Self {
        Self::generic(format!(
            "Invalid parameter type for '{name}', expected: {expected}"
        ))
    }

    /// `GenericError`: "Parameter 'NAME' expects WHAT".
    pub fn invalid_parameter_value(name: &str, expected: &str) -> Self {
        Self::generic(format!("Parameter '{name}' expects {expected}"))
    }

    /// `GenericError` for a command the running machine does not support.
    pub fn not_supported(command: &str) -> Self {
        Self::generic(format!("The command {command} is not supported"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_like_qemu() {
        let e = QmpError::command_not_found("foo");
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"class":"CommandNotFound","desc":"The command foo has not been found"}"#
        );
        assert_eq!(
            serde_json::to_string(&QmpError::device_not_found("x")).unwrap(),
            r#"{"class":"DeviceNotFound","desc":"Device 'x' not found"}"#
        );
        assert_eq!(
            QmpError::device_not_active("balloon").class.as_str(),
            "DeviceNotActive"
        );
        assert_eq!(
            QmpError::generic("boom").to_string(),
            "GenericError: boom".to_string()
        );
    }
}
