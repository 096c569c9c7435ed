//! Checkpoints: per file, the offset of the first byte not yet acknowledged, with the
//! file's identity. Versioned JSON, written to a temporary file, fsynced and renamed, so a
//! crash leaves the old or the new file, never half of one.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One file's position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// FNV-1a of the file's first line, hex.
    pub fingerprint: String,
    /// Where it was last seen.
    pub path: PathBuf,
    /// Its device.
    pub dev: u64,
    /// Its inode.
    pub ino: u64,
    /// The first byte not yet delivered.
    pub offset: u64,
    /// The file's size when the checkpoint was written: if the file is gone at the next
    /// start, at least `size - offset` bytes were lost to rotation, and are counted.
    #[serde(default)]
    pub size: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "version")]
enum State {
    #[serde(rename = "1")]
    V1 { files: Vec<Entry> },
}

/// Reads and writes the checkpoint file.
pub struct Store {
    path: PathBuf,
    last: Option<Vec<u8>>,
}

/// Why a checkpoint file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Unreadable.
    #[error("cannot read checkpoint file {0}: {1}")]
    Read(PathBuf, io::Error),
    /// Not a checkpoint.
    #[error(
        "checkpoint file {0} is corrupt ({1}); it was moved to {2} and reading starts per tail.start_at"
    )]
    Corrupt(PathBuf, String, PathBuf),
}

impl Store {
    /// The store at `<dir>/checkpoints.json`.
    pub fn new(dir: &Path) -> Store {
        Store {
            path: dir.join("checkpoints.json"),
            last: None,
        }
    }

    /// The checkpoint file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Loads the entries; none when there is no file yet. A corrupt file is set aside (so
    /// it can be inspected) and reported.
    pub fn load(&self) -> Result<Vec<Entry>, LoadError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(LoadError::Read(self.path.clone(), e)),
        };
        match serde_json::from_slice::<State>(&bytes) {
            Ok(State::V1 { files }) => Ok(files),
            Err(e) => {
                let aside = self.path.with_extension("json.corrupt");
                let _ = fs::rename(&self.path, &aside);
                Err(LoadError::Corrupt(self.path.clone(), e.to_string(), aside))
            }
        }
    }

    /// Writes the entries atomically; skipped when nothing changed since the last write.
    pub fn save(&mut self, files: Vec<Entry>) -> io::Result<()> {
        let bytes = serde_json::to_vec(&State::V1 { files }).map_err(io::Error::other)?;
        if self.last.as_ref() == Some(&bytes) {
            return Ok(());
        }
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            // The rename is durable only once the directory is.
            File::open(dir)?.sync_all()?;
        }
        self.last = Some(bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(offset: u64) -> Entry {
        Entry {
            fingerprint: "ab".into(),
            path: "/x".into(),
            dev: 1,
            ino: 2,
            offset,
            size: offset,
        }
    }

    #[test]
    fn round_trip_and_corruption() {
        let dir = std::env::temp_dir().join(format!("meshtrail-ckpt-{}", std::process::id()));
        let mut s = Store::new(&dir);
        assert_eq!(s.load().unwrap(), []);
        s.save(vec![entry(5)]).unwrap();
        assert_eq!(s.load().unwrap(), [entry(5)]);
        // A file written before `size` existed still loads (size 0: nothing known unread).
        fs::write(s.path(), br#"{"version":"1","files":[{"fingerprint":"ab","path":"/x","dev":1,"ino":2,"offset":5}]}"#).unwrap();
        assert_eq!(s.load().unwrap()[0].size, 0);
        let text = fs::read_to_string(s.path()).unwrap();
        assert!(
            text.starts_with(r#"{"version":"1","files":[{"fingerprint":"ab""#),
            "{text}"
        );
        fs::write(s.path(), b"{\"version\":\"1\",\"fil").unwrap();
        let e = s.load().unwrap_err().to_string();
        assert!(e.contains("corrupt") && e.contains("json.corrupt"), "{e}");
        assert_eq!(
            s.load().unwrap(),
            [],
            "set aside, so the next start is clean"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
