//! Local sinks: standard output, size-rotated NDJSON files, and a blackhole. Each writes a
//! batch, flushes it to the operating system, and only then reports it delivered.

pub mod config;
pub mod es;
mod file;

use std::io::{self, Write};

pub use file::FileSink;

use config::Sink as SinkSettings;

/// A destination for NDJSON documents.
pub trait Sink: Send {
    /// Writes and flushes one batch of NDJSON documents.
    fn write_batch(&mut self, docs: &[u8]) -> io::Result<()>;

    /// Whether the sink reads documents. A sink that does not (the blackhole) gets events
    /// parsed, classified and counted but not encoded, as Vector's blackhole and Fluent
    /// Bit's null output take events without serializing them.
    fn wants_documents(&self) -> bool {
        true
    }
}

/// Standard output.
pub struct Stdout(io::Stdout);

impl Sink for Stdout {
    fn write_batch(&mut self, docs: &[u8]) -> io::Result<()> {
        let mut out = self.0.lock();
        out.write_all(docs)?;
        out.flush()
    }
}

/// Discards everything (benchmarks); with `encode`, documents are built first.
pub struct Blackhole {
    encode: bool,
}

impl Sink for Blackhole {
    fn write_batch(&mut self, _: &[u8]) -> io::Result<()> {
        Ok(())
    }

    fn wants_documents(&self) -> bool {
        self.encode
    }
}

/// Documents of one line batch, ready for the sink, and the byte range they settle.
#[derive(Debug)]
pub struct DocBatch {
    /// The file.
    pub file: crate::ack::FileId,
    /// Settled range start.
    pub start: u64,
    /// Settled range end.
    pub end: u64,
    /// NDJSON documents; for the Elasticsearch sink, each after its `_bulk` action line,
    /// so that a run of them is one slice of a bulk body.
    pub docs: Vec<u8>,
    /// Lines in the batch.
    pub count: u64,
    /// In-flight bytes to return on acknowledgement.
    pub reserved: usize,
    /// For the Elasticsearch sink, per document: where its action ends (and the document
    /// starts) and where the document ends, newline included, in `docs`; each action starts
    /// where the document before ends. Empty otherwise.
    pub ends: Vec<(u32, u32)>,
}

/// What the sink stage waits on: one channel, so it waits on one thing.
pub enum Input {
    /// Documents from a worker.
    Docs(DocBatch),
    /// The answer to one of the Elasticsearch sink's own bulk requests.
    Answer(es::request::Answer),
    /// What the Elasticsearch sink's probe found while requests were failing.
    Probe(es::probe::Probe),
    /// The workers are done: nothing more comes.
    End,
}

/// A sink, built.
pub enum Built {
    /// Written by the local sink loop.
    Local(Box<dyn Sink>),
    /// Run by [`es::sink::run`], its client and dead-letter file opened.
    Elasticsearch(Box<es::sink::Prepared>),
}

impl Built {
    /// Whether documents must be encoded for it.
    pub fn wants_documents(&self) -> bool {
        match self {
            Built::Local(s) => s.wants_documents(),
            Built::Elasticsearch(_) => true,
        }
    }
}

/// Builds the configured sink, with the `event.id`s it already holds that `covered` (the
/// checkpoint) does not account for, when it can read back what it wrote; a restart does
/// not write those again. (Elasticsearch needs no read-back: it refuses a second `create`.)
pub fn build(
    config: &SinkSettings,
    covered: &dyn Fn(&str) -> bool,
) -> io::Result<(Built, Vec<String>)> {
    Ok(match config {
        SinkSettings::Stdout => (Built::Local(Box::new(Stdout(io::stdout()))), Vec::new()),
        SinkSettings::Blackhole { encode } => (
            Built::Local(Box::new(Blackhole { encode: *encode })),
            Vec::new(),
        ),
        SinkSettings::File {
            path,
            max_bytes,
            max_files,
        } => {
            let sink = FileSink::open(path, *max_bytes, *max_files)?;
            let ids = sink.ids_since(covered)?;
            (Built::Local(Box::new(sink)), ids)
        }
        SinkSettings::Elasticsearch(es) => (
            Built::Elasticsearch(Box::new(es::sink::Prepared::open(es)?)),
            Vec::new(),
        ),
    })
}
