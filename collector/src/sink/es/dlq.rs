//! The dead-letter file: documents Elasticsearch refused for good (mapping errors), one
//! NDJSON line each with the error and the time, size-capped and rotated like the file
//! sink. A document is acknowledged only once it is written here: refused is not lost.

use std::io;
use std::path::Path;

use crate::document::writer::write_str;
use crate::sink::{FileSink, Sink};

/// The dead-letter file.
pub struct DeadLetters {
    file: FileSink,
    /// Documents written so far.
    pub written: u64,
}

impl DeadLetters {
    /// Opens (appends to) `path`, rotated at `max_bytes`, `max_files` kept.
    pub fn open(path: &Path, max_bytes: u64, max_files: usize) -> io::Result<DeadLetters> {
        Ok(DeadLetters {
            file: FileSink::open(path, max_bytes, max_files)?,
            written: 0,
        })
    }

    /// Writes `docs` (each one line of JSON) with the error that refused them; `time` is
    /// RFC 3339.
    pub fn write(
        &mut self,
        docs: &[&[u8]],
        status: u16,
        kind: &str,
        reason: &str,
        time: &str,
    ) -> io::Result<()> {
        let mut out = Vec::new();
        for doc in docs {
            out.extend_from_slice(b"{\"@timestamp\":");
            write_str(&mut out, time);
            out.extend_from_slice(b",\"error\":{\"status\":");
            out.extend_from_slice(status.to_string().as_bytes());
            out.extend_from_slice(b",\"type\":");
            write_str(&mut out, kind);
            out.extend_from_slice(b",\"reason\":");
            write_str(&mut out, reason);
            out.extend_from_slice(b"},\"document\":");
            out.extend_from_slice(doc);
            out.extend_from_slice(b"}\n");
        }
        self.file.write_batch(&out)?;
        self.written += docs.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_documents_keep_their_error() {
        let dir = std::env::temp_dir().join(format!("meshtrail-dlq-{}", std::process::id()));
        let path = dir.join("dead-letters.ndjson");
        let mut d = DeadLetters::open(&path, 1 << 20, 2).unwrap();
        d.write(
            &[br#"{"a":1}"#, br#"{"b":"x"}"#],
            400,
            "document_parsing_exception",
            "failed to parse field [url.port]",
            "2026-11-24T10:00:00.000Z",
        )
        .unwrap();
        assert_eq!(d.written, 2);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["error"]["type"], "document_parsing_exception");
        assert_eq!(lines[0]["error"]["status"], 400);
        assert_eq!(lines[1]["document"]["b"], "x");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
