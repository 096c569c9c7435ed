//! NDJSON files, rotated by size: `events.ndjson` → `events.ndjson.1` → … → dropped after
//! `max_files`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::Sink;

/// A size-rotated NDJSON file.
pub struct FileSink {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    max_files: usize,
}

fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

impl FileSink {
    /// Opens (appends to) `path`.
    pub fn open(path: &Path, max_bytes: u64, max_files: usize) -> io::Result<FileSink> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(FileSink {
            path: path.to_owned(),
            file,
            size,
            max_bytes,
            max_files,
        })
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.max_files == 0 {
            self.file.set_len(0)?;
        } else {
            let _ = fs::remove_file(numbered(&self.path, self.max_files));
            for n in (1..self.max_files).rev() {
                let from = numbered(&self.path, n);
                if from.exists() {
                    fs::rename(&from, numbered(&self.path, n + 1))?;
                }
            }
            fs::rename(&self.path, numbered(&self.path, 1))?;
        }
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

impl Sink for FileSink {
    fn write_batch(&mut self, docs: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + docs.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        // One write of whole lines: a crash leaves whole documents or none of the batch's
        // tail, never a torn one that a reader would take for data.
        self.file.write_all(docs)?;
        self.size += docs.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size() {
        let dir = std::env::temp_dir().join(format!("meshtrail-filesink-{}", std::process::id()));
        let path = dir.join("events.ndjson");
        let mut s = FileSink::open(&path, 10, 2).unwrap();
        for i in 0..5 {
            s.write_batch(format!("{{\"n\":{i}}}\n").as_bytes())
                .unwrap();
        }
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\"n\":4}\n");
        assert_eq!(
            fs::read_to_string(numbered(&path, 1)).unwrap(),
            "{\"n\":3}\n"
        );
        assert_eq!(
            fs::read_to_string(numbered(&path, 2)).unwrap(),
            "{\"n\":2}\n"
        );
        assert!(!numbered(&path, 3).exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
