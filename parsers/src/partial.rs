//! Joins partial records (CRI `P`, docker json-file records without a newline) into the
//! line the container wrote, capped in size.

use std::borrow::Cow;

use crate::frame::{Record, Stream};

/// The default cap on a joined line: 1 MiB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

/// A complete line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joined<'a> {
    /// The line's bytes (the first `max_line_bytes` of it when truncated).
    pub body: Cow<'a, [u8]>,
    /// The runtime's timestamp of its first record.
    pub time: Option<Cow<'a, str>>,
    /// The stream.
    pub stream: Option<Stream>,
    /// The caller's offset of its first record.
    pub offset: u64,
    /// How many records it was made of.
    pub records: u32,
    /// It was longer than `max_line_bytes`; the rest was dropped and counted here.
    pub truncated_bytes: u64,
}

impl Joined<'_> {
    /// The line as text: borrowed when it is valid UTF-8 (checked with the fast strict
    /// validator), decoded lossily otherwise (`Cow::Owned` then tells it was invalid).
    pub fn text(&self) -> Cow<'_, str> {
        // simdutf8 checks a 400-byte line in a fraction of std's time; on failure std's
        // lossy decoder does the (rare) replacing.
        match simdutf8::basic::from_utf8(&self.body) {
            Ok(s) => Cow::Borrowed(s),
            Err(_) => String::from_utf8_lossy(&self.body),
        }
    }
}

#[derive(Debug, Default)]
struct Pending {
    buf: Vec<u8>,
    time: String,
    offset: u64,
    records: u32,
    dropped: u64,
}

/// Joins records per stream. One `Joiner` per file.
#[derive(Debug)]
pub struct Joiner {
    max: usize,
    pending: [Option<Pending>; 3],
}

impl Default for Joiner {
    fn default() -> Self {
        Joiner::new(DEFAULT_MAX_LINE_BYTES)
    }
}

fn slot(stream: Option<Stream>) -> usize {
    match stream {
        Some(Stream::Stdout) => 0,
        Some(Stream::Stderr) => 1,
        None => 2,
    }
}

impl Joiner {
    /// A joiner that caps lines at `max_line_bytes`.
    pub fn new(max_line_bytes: usize) -> Self {
        Joiner {
            max: max_line_bytes.max(1),
            pending: Default::default(),
        }
    }

    /// Adds a record found at `offset`. Returns the line when the record completes one.
    pub fn push<'a>(&'a mut self, record: Record<'a>, offset: u64) -> Option<Joined<'a>> {
        let max = self.max;
        let s = slot(record.stream);
        match (&mut self.pending[s], record.partial) {
            (None, false) => {
                let keep = record.body.len().min(max);
                let dropped = (record.body.len() - keep) as u64;
                let body = match record.body {
                    Cow::Borrowed(b) => Cow::Borrowed(&b[..keep]),
                    Cow::Owned(mut b) => {
                        b.truncate(keep);
                        Cow::Owned(b)
                    }
                };
                Some(Joined {
                    body,
                    time: record.time.map(Cow::Borrowed),
                    stream: record.stream,
                    offset,
                    records: 1,
                    truncated_bytes: dropped,
                })
            }
            (pending, partial) => {
                let p = pending.get_or_insert_with(Pending::default);
                if p.records == 0 {
                    p.offset = offset;
                    p.time.clear();
                    p.time.push_str(record.time.unwrap_or_default());
                }
                p.records += 1;
                let room = max.saturating_sub(p.buf.len());
                let keep = record.body.len().min(room);
                p.buf.extend_from_slice(&record.body[..keep]);
                p.dropped += (record.body.len() - keep) as u64;
                if partial {
                    return None;
                }
                self.take(s)
            }
        }
    }

    /// The offset of the first record of the oldest line still waiting for its last record:
    /// a checkpoint must not pass it, or a restart would lose that line's head.
    pub fn pending_since(&self) -> Option<u64> {
        self.pending
            .iter()
            .flatten()
            .filter(|p| p.records > 0)
            .map(|p| p.offset)
            .min()
    }

    /// Ends every line still waiting for its last record (the file ended or rotated away),
    /// returning the first one found; call until `None`.
    pub fn flush(&mut self) -> Option<Joined<'_>> {
        let s = self
            .pending
            .iter()
            .position(|p| p.as_ref().is_some_and(|p| p.records > 0))?;
        self.take(s)
    }

    fn take(&mut self, s: usize) -> Option<Joined<'_>> {
        let p = self.pending[s].as_mut()?;
        let records = std::mem::take(&mut p.records);
        let dropped = std::mem::take(&mut p.dropped);
        let body = std::mem::take(&mut p.buf);
        let stream = match s {
            0 => Some(Stream::Stdout),
            1 => Some(Stream::Stderr),
            _ => None,
        };
        let p = self.pending[s].as_ref()?;
        Some(Joined {
            body: Cow::Owned(body),
            time: (!p.time.is_empty()).then_some(Cow::Borrowed(p.time.as_str())),
            stream,
            offset: p.offset,
            records,
            truncated_bytes: dropped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Framing, frame};

    fn push<'a>(j: &'a mut Joiner, line: &'a [u8], off: u64) -> Option<Joined<'a>> {
        j.push(frame(line, Framing::Cri), off)
    }

    #[test]
    fn full_records_pass_through_borrowed() {
        let mut j = Joiner::default();
        let l = push(&mut j, b"2021-01-01T00:00:00Z stdout F hello", 7).unwrap();
        assert!(matches!(l.body, Cow::Borrowed(b"hello")));
        assert_eq!((l.offset, l.records, l.truncated_bytes), (7, 1, 0));
    }

    #[test]
    fn partials_join_per_stream() {
        let mut j = Joiner::default();
        assert!(push(&mut j, b"2021-01-01T00:00:00Z stdout P hel", 0).is_none());
        let e = push(&mut j, b"2021-01-01T00:00:01Z stderr F err", 40).unwrap();
        assert_eq!(&*e.body, b"err");
        assert_eq!(j.pending_since(), Some(0), "the stdout line is still open");
        assert!(push(&mut j, b"2021-01-01T00:00:02Z stdout P lo ", 70).is_none());
        let l = push(&mut j, b"2021-01-01T00:00:03Z stdout F world", 100).unwrap();
        assert_eq!(&*l.body, b"hello world");
        assert_eq!(
            (l.offset, l.records, l.time.as_deref()),
            (0, 3, Some("2021-01-01T00:00:00Z"))
        );
        // The buffer is reused and the next line starts clean.
        let l = push(&mut j, b"2021-01-01T00:00:04Z stdout F next", 140).unwrap();
        assert_eq!((&*l.body, l.offset), (&b"next"[..], 140));
    }

    #[test]
    fn joined_lines_are_capped_and_count_what_was_dropped() {
        let mut j = Joiner::new(5);
        assert!(push(&mut j, b"2021-01-01T00:00:00Z stdout P abcd", 0).is_none());
        let l = push(&mut j, b"2021-01-01T00:00:00Z stdout F efgh", 1).unwrap();
        assert_eq!((&*l.body, l.truncated_bytes), (&b"abcde"[..], 3));
        let l = push(&mut j, b"2021-01-01T00:00:00Z stdout F 0123456789", 2).unwrap();
        assert_eq!((&*l.body, l.truncated_bytes), (&b"01234"[..], 5));
    }

    #[test]
    fn flush_returns_unfinished_lines() {
        let mut j = Joiner::default();
        assert!(push(&mut j, b"2021-01-01T00:00:00Z stdout P abc", 9).is_none());
        let l = j.flush().unwrap();
        assert_eq!((&*l.body, l.offset), (&b"abc"[..], 9));
        assert!(j.flush().is_none());
    }
}
