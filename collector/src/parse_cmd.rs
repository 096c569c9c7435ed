//! `meshtrail parse`: container-log or access-log lines in, one SCHEMA.md event per line
//! out (NDJSON).

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use meshtrail_parsers::envoy::{Hint, Parser};
use meshtrail_parsers::frame::{self, Framing};
use meshtrail_parsers::partial::Joiner;

use crate::pipeline::FileContext;
use crate::pipeline::{LineProcessor, Options, Stats};

/// What to parse and how.
pub struct ParseArgs {
    /// Format specs, tried in order.
    pub formats: Vec<String>,
    /// The container-log framing.
    pub framing: Framing,
    /// Files; standard input when empty or `-`.
    pub files: Vec<PathBuf>,
    /// Print counts to standard error at the end.
    pub stats: bool,
    /// Copy each access-log line into `event.original`.
    pub keep_original: bool,
    /// Cap on a joined line, in bytes.
    pub max_line_bytes: usize,
}

/// Builds the parser for `--format` values; an error names the bad one.
pub fn parser(formats: &[String]) -> anyhow::Result<Parser> {
    let specs: Vec<&str> = if formats.is_empty() {
        vec!["auto"]
    } else {
        formats.iter().map(String::as_str).collect()
    };
    Parser::from_specs(specs).context("--format")
}

/// Runs the command; returns the counts.
pub fn run(args: &ParseArgs) -> anyhow::Result<Stats> {
    let parser = parser(&args.formats)?;
    let mut processor = LineProcessor::new(
        std::sync::Arc::new(parser),
        Options {
            keep_original: args.keep_original,
            no_documents: false,
        },
    );
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 18, stdout.lock());
    let inputs: Vec<Option<&PathBuf>> = if args.files.is_empty() {
        vec![None]
    } else {
        args.files
            .iter()
            .map(|f| (f.as_os_str() != "-").then_some(f))
            .collect()
    };
    for input in inputs {
        let reader: Box<dyn Read> = match input {
            Some(path) => Box::new(
                File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
            ),
            None => Box::new(io::stdin().lock()),
        };
        let name = input.map(|p| p.display().to_string());
        let result = parse_stream(reader, name.as_deref(), args, &mut processor, &mut out);
        match result {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(processor.stats),
            other => other.with_context(|| {
                format!("reading {}", name.as_deref().unwrap_or("standard input"))
            })?,
        }
    }
    match out.flush() {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        other => other.context("writing standard output")?,
    }
    if args.stats {
        print_stats(&processor.stats);
    }
    Ok(processor.stats)
}

fn parse_stream(
    reader: impl Read,
    file: Option<&str>,
    args: &ParseArgs,
    processor: &mut LineProcessor,
    out: &mut impl Write,
) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let mut joiner = Joiner::new(args.max_line_bytes);
    let mut hint = Hint::default();
    let mut line = Vec::with_capacity(4096);
    let mut doc = Vec::with_capacity(8192);
    let mut offset = 0u64;
    let ctx = FileContext {
        path: file,
        ..FileContext::default()
    };
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        let start = offset;
        offset += n as u64;
        let body = line.strip_suffix(b"\n").unwrap_or(&line);
        let record = frame::frame(body, args.framing);
        if let Some(joined) = joiner.push(record, start) {
            processor.process(&joined, &ctx, &mut hint, &mut (), &mut doc);
        }
        if doc.len() >= 1 << 16 {
            out.write_all(&doc)?;
            doc.clear();
        }
    }
    while let Some(joined) = joiner.flush() {
        processor.process(&joined, &ctx, &mut hint, &mut (), &mut doc);
    }
    out.write_all(&doc)
}

fn print_stats(stats: &Stats) {
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "lines: {}", stats.lines());
    for (format, n) in stats.access.iter().filter(|(_, n)| *n > 0) {
        let _ = writeln!(err, "access logs, {format}: {n}");
    }
    let _ = writeln!(
        err,
        "other lines: {} (of which access logs no format read: {})",
        stats.container, stats.parse_errors
    );
    if stats.truncated > 0 || stats.invalid_utf8 > 0 {
        let _ = writeln!(
            err,
            "truncated lines: {}, invalid UTF-8 lines: {}",
            stats.truncated, stats.invalid_utf8
        );
    }
}
