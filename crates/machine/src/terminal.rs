//! Raw mode for `-serial stdio` on a terminal, restored on every exit path.

use std::io;

/// Puts `fd` in raw mode if it is a terminal; registers the restore with [`crate::cleanup`].
/// Returns whether it was a terminal.
pub fn make_raw(fd: i32) -> io::Result<bool> {
    // SAFETY: isatty only inspects the descriptor.
    if unsafe { libc::isatty(fd) } != 1 {
        return Ok(false);
    }
    // SAFETY: termios is plain data; zeroed is a valid value to be overwritten by tcgetattr.
    let mut orig: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `orig` is a valid termios to write into.
    if unsafe { libc::tcgetattr(fd, &mut orig) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut raw = orig;
    // SAFETY: `raw` is a valid termios.
    unsafe { libc::cfmakeraw(&mut raw) };
    // SAFETY: `raw` is a valid termios for this terminal.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) } != 0 {
        return Err(io::Error::last_os_error());
    }
    crate::cleanup::on_exit(move || {
        // SAFETY: restores the attributes read above on the same descriptor.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &orig) };
    });
    Ok(true)
}
