//! Local sinks: standard output, size-rotated NDJSON files, and a blackhole. Each writes a
//! batch, flushes it to the operating system, and only then reports it delivered.

pub mod batch;
pub mod es;
mod file;

use std::io::{self, Write};

pub use file::FileSink;

use crate::config::Sink as SinkConfig;

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

/// Builds the configured sink, with the `event.id`s it already holds that `covered` (the
/// checkpoint) does not account for, when it can read back what it wrote; a restart does
/// not write those again.
pub fn build(
    config: &SinkConfig,
    covered: &dyn Fn(&str) -> bool,
) -> io::Result<(Box<dyn Sink>, Vec<String>)> {
    Ok(match config {
        SinkConfig::Stdout => (Box::new(Stdout(io::stdout())), Vec::new()),
        SinkConfig::Blackhole { encode } => (Box::new(Blackhole { encode: *encode }), Vec::new()),
        SinkConfig::File {
            path,
            max_bytes,
            max_files,
        } => {
            let sink = FileSink::open(path, *max_bytes, *max_files)?;
            let ids = sink.ids_since(covered)?;
            (Box::new(sink), ids)
        }
    })
}
