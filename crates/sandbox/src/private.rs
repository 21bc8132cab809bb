//! Files the VMM creates for its owner only. A QMP socket drives the VM (and `blockdev-add`
//! makes the VMM, often root, open any host file for the guest), so sockets are created 0600
//! whatever the umask; to let a group in, the operator changes the socket's mode after start
//! and controls who reaches it through the socket's directory (see docs/security.md).

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::Path;

/// The mode of every socket the VMM creates.
pub const SOCKET_MODE: u32 = 0o600;

/// Binds a listening unix socket at `path`, mode 0600 from the start: the umask is narrowed
/// around `bind` (the process has one umask: call this before other threads create files),
/// then the mode is set exactly, as a stricter umask would leave it narrower still.
pub fn bind_private_socket(path: &Path) -> io::Result<UnixListener> {
    // SAFETY: umask only swaps the process's file mode creation mask.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above, restoring the mask read before.
    unsafe { libc::umask(old) };
    let listener = bound?;
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE)) {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn the_socket_is_0600_under_any_umask() {
        // Only masks that loosen: other tests of this process create files meanwhile.
        for mask in [0o000, 0o022] {
            let p = std::env::temp_dir()
                .join(format!("sv-private-{}-{mask:o}.sock", std::process::id()));
            let _ = std::fs::remove_file(&p);
            // SAFETY: umask only swaps the process's file mode creation mask.
            let old = unsafe { libc::umask(mask) };
            let l = bind_private_socket(&p);
            // SAFETY: restores the mask read above.
            let during = unsafe { libc::umask(old) };
            assert_eq!(during, mask, "the caller's umask is given back");
            let _l = l.unwrap();
            assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, SOCKET_MODE);
            std::fs::remove_file(&p).unwrap();
        }
    }
}
