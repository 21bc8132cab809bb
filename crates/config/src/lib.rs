//! Configuration: the command line and `-config` JSON, parsed into one validated [`VmConfig`].
//!
//! ```no_run
//! match config::parse_env() {
//!     Ok(config::Action::Run(vm)) => println!("{} vCPUs", vm.machine.vcpus),
//!     Ok(config::Action::Help(text)) => print!("{text}"),
//!     Ok(config::Action::Version(line)) => println!("{line}"),
//!     Err(e) => eprintln!("stratovirt: {e}"),
//! }
//! ```

mod builder;
mod cmdline;
mod error;
mod json;
pub mod limits;
mod mac;
pub mod model;
mod occupant;
mod origin;
mod topology;
mod validate;

pub use cmdline::{parse_args, parse_env, short_usage, usage, version, Action};
pub use error::ConfigError;
pub use mac::{format_mac, parse_mac};
pub use model::*;

/// Parse and validate the text of a `-config` JSON file on its own, as if it
/// were given with no other option.
pub fn parse_json_config(text: &str) -> Result<VmConfig, ConfigError> {
    json::parse(text, "<json>")?.build(validate::probe_path)
}
