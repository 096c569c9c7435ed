//! NDJSON files, rotated by size: `events.ndjson` → `events.ndjson.1` → … → dropped after
//! `max_files`.
//!
//! On open it cuts a torn last line (the process died inside a write, so that batch was
//! never acknowledged) and reads back the `event.id`s at its end, so that a restart does not
//! write again what is already there: effectively-once into the file, as into Elasticsearch.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::Sink;

/// How far back from the end a torn line is looked for.
const TAIL_BYTES: u64 = 4 << 20;
/// How much of the output [`FileSink::ids_since`] reads at a time.
const CHUNK_BYTES: u64 = 4 << 20;

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

/// Bytes `start..end` of a file.
fn read_range(mut file: &File, start: u64, end: u64) -> io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::with_capacity((end - start) as usize);
    file.take(end - start).read_to_end(&mut buf)?;
    Ok(buf)
}

/// The last `n` bytes of a file of `size` bytes.
fn read_tail(file: &File, size: u64, n: u64) -> io::Result<Vec<u8>> {
    read_range(file, size.saturating_sub(n), size)
}

impl FileSink {
    /// Opens (appends to) `path`, cutting a torn last line.
    pub fn open(path: &Path, max_bytes: u64, max_files: usize) -> io::Result<FileSink> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        let mut size = file.metadata()?.len();
        if size > 0 {
            let tail = read_tail(&file, size, TAIL_BYTES)?;
            if tail.last() != Some(&b'\n') {
                let base = size - tail.len() as u64;
                let keep = memchr::memrchr(b'\n', &tail).map_or(base, |i| base + i as u64 + 1);
                file.set_len(keep)?;
                size = keep;
            }
        }
        Ok(FileSink {
            path: path.to_owned(),
            file,
            size,
            max_bytes,
            max_files,
        })
    }

    /// The `event.id`s written since the checkpoint `covered` was taken. `covered` tells,
    /// per file fingerprint, the offset below which lines are settled; the output is read
    /// backwards in chunks until a whole chunk holds nothing past it (the checkpoint's
    /// moment), plus one chunk for batches that workers finished out of order.
    pub fn ids_since(&self, covered: &dyn Fn(&str) -> bool) -> io::Result<Vec<String>> {
        const KEY: &[u8] = br#""event":{"id":""#;
        let mut ids = Vec::new();
        let mut settled_chunks = 0;
        for path in [self.path.clone(), numbered(&self.path, 1)] {
            let Ok(file) = File::open(&path) else {
                continue;
            };
            let mut end = file.metadata()?.len();
            let mut carry: Vec<u8> = Vec::new();
            while end > 0 {
                let start = end.saturating_sub(CHUNK_BYTES);
                let mut chunk = read_range(&file, start, end)?;
                chunk.extend_from_slice(&carry);
                // The first (partial) line of the chunk belongs with the next chunk back.
                let cut = if start == 0 {
                    0
                } else {
                    memchr::memchr(b'\n', &chunk).map_or(chunk.len(), |i| i + 1)
                };
                carry = chunk[..cut].to_vec();
                let mut all_covered = true;
                for line in chunk[cut..].split(|b| *b == b'\n') {
                    let Some(at) = memchr::memmem::find(line, KEY) else {
                        continue;
                    };
                    let rest = &line[at + KEY.len()..];
                    let Some(e) = memchr::memchr(b'"', rest) else {
                        continue;
                    };
                    let id = String::from_utf8_lossy(&rest[..e]).into_owned();
                    all_covered &= covered(&id);
                    ids.push(id);
                }
                settled_chunks = if all_covered { settled_chunks + 1 } else { 0 };
                if settled_chunks >= 2 {
                    return Ok(ids);
                }
                end = start;
            }
        }
        Ok(ids)
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
            .read(true)
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

    #[test]
    fn torn_tail_is_cut_and_ids_are_read_back() {
        let dir =
            std::env::temp_dir().join(format!("meshtrail-filesink-torn-{}", std::process::id()));
        let path = dir.join("events.ndjson");
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            &path,
            "{\"event\":{\"id\":\"a1\",\"kind\":\"event\"}}\n{\"event\":{\"id\":\"b2\",\"ki",
        )
        .unwrap();
        let s = FileSink::open(&path, 1 << 20, 2).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "{\"event\":{\"id\":\"a1\",\"kind\":\"event\"}}\n"
        );
        assert_eq!(s.ids_since(&|_| false).unwrap(), ["a1"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_back_to_the_checkpoint_and_no_further() {
        let dir =
            std::env::temp_dir().join(format!("meshtrail-filesink-since-{}", std::process::id()));
        let path = dir.join("events.ndjson");
        let mut s = FileSink::open(&path, u64::MAX, 2).unwrap();
        // 30 MiB of settled lines, then 3 unsettled ones.
        let pad = "p".repeat(1000);
        let mut batch = String::new();
        for i in 0..30_000 {
            batch.push_str(&format!(
                "{{\"event\":{{\"id\":\"old{i}\"}},\"m\":\"{pad}\"}}\n"
            ));
        }
        s.write_batch(batch.as_bytes()).unwrap();
        s.write_batch(b"{\"event\":{\"id\":\"new1\"}}\n{\"event\":{\"id\":\"new2\"}}\n{\"event\":{\"id\":\"new3\"}}\n").unwrap();
        let ids = s.ids_since(&|id| id.starts_with("old")).unwrap();
        for new in ["new1", "new2", "new3"] {
            assert!(ids.iter().any(|i| i == new), "{new} read back");
        }
        assert!(
            ids.len() < 15_000,
            "stopped after two settled chunks: read {}",
            ids.len()
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
