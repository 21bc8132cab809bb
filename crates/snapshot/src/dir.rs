//! The snapshot directory: where a save writes (temporary names, then renames) and where a
//! restore reads.

use crate::format::{self, FormatError, Header, MAX_STATE_SIZE};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub const STATE_FILE: &str = "state";
pub const MEMORY_FILE: &str = "memory";
const PART: &str = ".part";

/// Why a snapshot directory cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error("the snapshot path must be absolute: {0}")]
    Relative(PathBuf),
    #[error("{0} already holds a snapshot (its '{STATE_FILE}' or '{MEMORY_FILE}' exists); use another directory or remove them")]
    Exists(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Format { path: PathBuf, source: FormatError },
    #[error("{0}: no snapshot there (no '{STATE_FILE}' file)")]
    Missing(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DirError + '_ {
    move |source| DirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A snapshot directory.
#[derive(Debug, Clone)]
pub struct SnapshotDir {
    pub path: PathBuf,
}

impl SnapshotDir {
    /// The directory named by a `file:` URI's path; it must be absolute.
    pub fn new(path: &Path) -> Result<Self, DirError> {
        if !path.is_absolute() {
            return Err(DirError::Relative(path.to_path_buf()));
        }
        Ok(SnapshotDir {
            path: path.to_path_buf(),
        })
    }

    pub fn state_path(&self) -> PathBuf {
        self.path.join(STATE_FILE)
    }

    pub fn memory_path(&self) -> PathBuf {
        self.path.join(MEMORY_FILE)
    }

    fn part(&self, name: &str) -> PathBuf {
        self.path.join(format!("{name}{PART}"))
    }

    /// Refuses a directory that already holds a snapshot (writes nothing).
    pub fn check_free(&self) -> Result<(), DirError> {
        if self.state_path().exists() || self.memory_path().exists() {
            return Err(DirError::Exists(self.path.clone()));
        }
        Ok(())
    }

    /// Before a save: creates the directory if needed (0700), and refuses one that already
    /// holds a snapshot. Leftover temporary files of an interrupted save are replaced.
    pub fn prepare(&self) -> Result<(), DirError> {
        self.check_free()?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.path)
            .map_err(io(&self.path))
    }

    /// The memory file being written, `size` bytes long and all holes to begin with.
    pub fn create_memory(&self, size: u64) -> Result<File, DirError> {
        let p = self.part(MEMORY_FILE);
        let f = create(&p)?;
        f.set_len(size).map_err(io(&p))?;
        Ok(f)
    }

    /// Writes the state file (under its temporary name).
    pub fn write_state(&self, header: &Header, body: &[u8]) -> Result<(), DirError> {
        let p = self.part(STATE_FILE);
        let mut f = create(&p)?;
        f.write_all(&format::encode(header, body)).map_err(io(&p))?;
        f.sync_data().map_err(io(&p))
    }

    /// Makes the snapshot complete: syncs the memory file, renames `memory` then `state` (the
    /// state file's presence means the snapshot is whole) and syncs the directory.
    pub fn commit(&self, memory: &File) -> Result<(), DirError> {
        memory.sync_data().map_err(io(&self.part(MEMORY_FILE)))?;
        for name in [MEMORY_FILE, STATE_FILE] {
            std::fs::rename(self.part(name), self.path.join(name)).map_err(io(&self.path))?;
        }
        File::open(&self.path)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.path))
    }

    /// After a failed save: removes what it wrote.
    pub fn abandon(&self) {
        for name in [MEMORY_FILE, STATE_FILE] {
            let _ = std::fs::remove_file(self.part(name));
        }
    }

    /// Reads and checks the state file; returns its body.
    pub fn read_state(&self, expected: &Header) -> Result<Vec<u8>, DirError> {
        let p = self.state_path();
        let f = File::open(&p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => DirError::Missing(self.path.clone()),
            _ => DirError::Io {
                path: p.clone(),
                source: e,
            },
        })?;
        let mut bytes = Vec::new();
        f.take(MAX_STATE_SIZE + 1)
            .read_to_end(&mut bytes)
            .map_err(io(&p))?;
        let body = format::decode(&bytes, expected).map_err(|source| DirError::Format {
            path: p.clone(),
            source,
        })?;
        Ok(body.to_vec())
    }

    /// Opens the memory file for a restore and checks it is `size` bytes long.
    pub fn open_memory(&self, size: u64) -> Result<File, DirError> {
        let p = self.memory_path();
        let f = File::open(&p).map_err(io(&p))?;
        let len = f.metadata().map_err(io(&p))?.len();
        if len != size {
            return Err(DirError::Io {
                path: p,
                source: std::io::Error::other(format!(
                    "the memory file is {len} bytes, the snapshot's guest memory is {size}: it is truncated or from another snapshot"
                )),
            });
        }
        Ok(f)
    }
}

fn create(p: &Path) -> Result<File, DirError> {
    OpenOptions::new()
        .write(true)
        .read(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(p)
        .map_err(io(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("sv-snapdir-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        p
    }

    #[test]
    fn save_then_load() {
        let d = SnapshotDir::new(&tmp("ok")).unwrap();
        d.prepare().unwrap();
        let mem = d.create_memory(8192).unwrap();
        d.write_state(&Header::this_host(), b"{\"x\":1}").unwrap();
        assert!(
            d.read_state(&Header::this_host()).is_err(),
            "not complete before commit"
        );
        d.commit(&mem).unwrap();
        assert_eq!(d.read_state(&Header::this_host()).unwrap(), b"{\"x\":1}");
        assert!(d.open_memory(8192).is_ok());
        assert!(d
            .open_memory(4096)
            .unwrap_err()
            .to_string()
            .contains("truncated"));
        assert!(matches!(d.prepare(), Err(DirError::Exists(_))));
        std::fs::remove_dir_all(&d.path).unwrap();
    }

    #[test]
    fn relative_and_abandoned() {
        assert!(matches!(
            SnapshotDir::new(Path::new("snap")),
            Err(DirError::Relative(_))
        ));
        let d = SnapshotDir::new(&tmp("abandon")).unwrap();
        d.prepare().unwrap();
        let _m = d.create_memory(4096).unwrap();
        d.write_state(&Header::this_host(), b"{}").unwrap();
        d.abandon();
        assert_eq!(std::fs::read_dir(&d.path).unwrap().count(), 0);
        assert!(matches!(
            d.read_state(&Header::this_host()),
            Err(DirError::Missing(_))
        ));
        std::fs::remove_dir_all(&d.path).unwrap();
    }
}
