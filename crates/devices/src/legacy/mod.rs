//! Legacy PC devices on the port I/O bus.

pub mod i8042;
pub mod port_sink;
pub mod rtc;
pub mod serial;

pub use i8042::{I8042Args, I8042Irqs, I8042State, I8042};
pub use port_sink::{BootSignal, PortSink};
pub use rtc::{Rtc, RtcArgs, RtcState};
pub use serial::{SerialArgs, SerialDevice, SerialDeviceState, SerialInput};
