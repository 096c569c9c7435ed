//! Local sinks: standard output, size-rotated NDJSON files, and a blackhole. Each writes a
//! batch, flushes it to the operating system, and only then reports it delivered.

mod file;

use std::io::{self, Write};

pub use file::FileSink;

use crate::config::Sink as SinkConfig;

/// A destination for NDJSON documents.
pub trait Sink: Send {
    /// Writes and flushes one batch of NDJSON documents.
    fn write_batch(&mut self, docs: &[u8]) -> io::Result<()>;
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

/// Discards everything (benchmarks).
pub struct Blackhole;

impl Sink for Blackhole {
    fn write_batch(&mut self, _: &[u8]) -> io::Result<()> {
        Ok(())
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
        SinkConfig::Blackhole => (Box::new(Blackhole), Vec::new()),
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
