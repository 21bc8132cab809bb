//! The escape key of `-serial stdio` on a terminal, as QEMU's console has it: in raw mode
//! Ctrl-C, Ctrl-\ and Ctrl-D go to the guest, so Ctrl-A starts a command. Ctrl-A x ends the
//! VM, Ctrl-A Ctrl-A sends one Ctrl-A to the guest, Ctrl-A h (or ?) prints the keys; any
//! other key after Ctrl-A is dropped, as in QEMU.

/// The escape character, Ctrl-A.
pub const ESCAPE: u8 = 0x01;

/// What the keys, printed by Ctrl-A h. Raw mode: lines end with CR LF.
pub const HELP: &str = "\r\n\
    C-a h    print this help\r\n\
    C-a x    exit the VM\r\n\
    C-a C-a  send C-a to the guest\r\n";

/// A command typed after the escape character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscapeCommand {
    Quit,
    Help,
}

/// The escape state across reads (Ctrl-A may end one read and its command start the next).
#[derive(Debug, Default)]
pub struct ConsoleEscape {
    after_escape: bool,
}

impl ConsoleEscape {
    /// Filters `buf` in place: escape sequences are removed, everything else is kept in order.
    /// Returns how many bytes are left for the guest and the command seen (a quit wins over a
    /// help in the same read); bytes around a command are kept for the guest.
    pub fn filter(&mut self, buf: &mut [u8]) -> (usize, Option<EscapeCommand>) {
        let mut kept = 0;
        let mut command = None;
        for i in 0..buf.len() {
            let b = buf[i];
            let pass = if self.after_escape {
                self.after_escape = false;
                match b {
                    ESCAPE => true,
                    b'x' | b'X' => {
                        command = Some(EscapeCommand::Quit);
                        false
                    }
                    b'h' | b'H' | b'?' => {
                        command.get_or_insert(EscapeCommand::Help);
                        false
                    }
                    _ => false,
                }
            } else if b == ESCAPE {
                self.after_escape = true;
                false
            } else {
                true
            };
            if pass {
                buf[kept] = b;
                kept += 1;
            }
        }
        (kept, command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(e: &mut ConsoleEscape, input: &[u8]) -> (Vec<u8>, Option<EscapeCommand>) {
        let mut buf = input.to_vec();
        let (n, c) = e.filter(&mut buf);
        buf.truncate(n);
        (buf, c)
    }

    #[test]
    fn plain_bytes_pass_and_control_keys_reach_the_guest() {
        let mut e = ConsoleEscape::default();
        assert_eq!(
            run(&mut e, b"ls\r\x03\x04\x1c"),
            (b"ls\r\x03\x04\x1c".to_vec(), None)
        );
    }

    #[test]
    fn ctrl_a_x_quits_and_ctrl_a_ctrl_a_sends_one() {
        let mut e = ConsoleEscape::default();
        assert_eq!(run(&mut e, b"a\x01\x01b"), (b"a\x01b".to_vec(), None));
        assert_eq!(
            run(&mut e, b"q\x01x"),
            (b"q".to_vec(), Some(EscapeCommand::Quit))
        );
        assert_eq!(run(&mut e, b"\x01h"), (vec![], Some(EscapeCommand::Help)));
        assert_eq!(run(&mut e, b"\x01?"), (vec![], Some(EscapeCommand::Help)));
    }

    #[test]
    fn the_escape_spans_reads_and_unknown_commands_are_dropped() {
        let mut e = ConsoleEscape::default();
        assert_eq!(run(&mut e, b"\x01"), (vec![], None));
        assert_eq!(run(&mut e, b"x"), (vec![], Some(EscapeCommand::Quit)));
        assert_eq!(run(&mut e, b"\x01zok"), (b"ok".to_vec(), None));
        assert_eq!(
            run(&mut e, b"\x01\x01\x01\x01"),
            (b"\x01\x01".to_vec(), None)
        );
        assert_eq!(
            run(&mut e, b"\x01h\x01x"),
            (vec![], Some(EscapeCommand::Quit)),
            "a quit wins"
        );
    }
}
