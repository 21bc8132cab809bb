//! Copying files between the host and L1.

use serde_json::{json, Value};
use std::fs::File;
use std::io::{BufReader, Read};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;

/// Opens a file to send it; the reply carries its size.
pub fn get(req: &Value) -> Result<(Value, File), String> {
    let path = req["path"].as_str().ok_or("get needs path")?;
    let f = File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let size = f.metadata().map_err(|e| format!("{path}: {e}"))?.len();
    Ok((json!({ "size": size }), f))
}

/// Receives `size` bytes into a new file (written under a temporary name, then renamed).
pub fn put(req: &Value, from: &mut BufReader<TcpStream>) -> Result<Value, String> {
    let path = req["path"].as_str().ok_or("put needs path")?;
    let size = req["size"].as_u64().ok_or("put needs size")?;
    let mode = req["mode"].as_u64().unwrap_or(0o644) as u32;
    let tmp = format!("{path}.part");
    let mut f = File::create(&tmp).map_err(|e| format!("{tmp}: {e}"))?;
    let n = std::io::copy(&mut from.take(size), &mut f).map_err(|e| format!("{tmp}: {e}"))?;
    if n != size {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("{path}: got {n} of {size} bytes"));
    }
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("{tmp}: {e}"))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{path}: {e}"))?;
    Ok(json!({"ok": true}))
}
