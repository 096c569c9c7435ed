//! One line from its framing to its document: decode, parse, classify, render. Pure CPU,
//! no I/O: the callers (`meshtrail parse`, the agent's workers) feed it and take the bytes.

use std::borrow::Cow;
use std::sync::Arc;

use meshtrail_parsers::classify::{self, Role, Verdict};
use meshtrail_parsers::envoy::{Fields, Hint, Outcome, Parser};
use meshtrail_parsers::partial::Joined;

use crate::document::{self, Host, Origin};
use crate::enrich::PathMeta;
use crate::k8s::store::{PodView, Store};

/// How lines become documents.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Copy the access-log line into `event.original`.
    pub keep_original: bool,
    /// Skip encoding documents (the sink does not read them).
    pub no_documents: bool,
}

/// What happened to the lines, for `--stats` and the self-metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Access logs per format, in the parser's order.
    pub access: Vec<(String, u64)>,
    /// Lines that are not access logs.
    pub container: u64,
    /// Of those, lines that looked like access logs but no format read (format drift).
    pub parse_errors: u64,
    /// Lines over the size cap.
    pub truncated: u64,
    /// Lines that were not valid UTF-8.
    pub invalid_utf8: u64,
}

impl Stats {
    /// Zeroed counters for a parser's formats.
    pub fn new(parser: &Parser) -> Self {
        Stats {
            access: parser.format_names().map(|n| (n.to_owned(), 0)).collect(),
            ..Stats::default()
        }
    }

    /// All lines counted.
    pub fn lines(&self) -> u64 {
        self.access.iter().map(|(_, n)| n).sum::<u64>() + self.container
    }

    fn count_access(&mut self, format: &str) {
        match self.access.iter_mut().find(|(n, _)| n == format) {
            Some((_, n)) => *n += 1,
            None => self.access.push((format.to_owned(), 1)),
        }
    }
}

/// Sees every access log with its verdict: the metrics and the demo's summary count here.
pub trait Observe {
    /// Called once per access log.
    fn access(&mut self, fields: &Fields<'_>, verdict: &Verdict<'_>, role: Option<Role>);
}

impl Observe for () {
    fn access(&mut self, _: &Fields<'_>, _: &Verdict<'_>, _: Option<Role>) {}
}

/// What every line of one file shares.
#[derive(Clone, Copy, Default)]
pub struct FileContext<'a> {
    /// `log.file.path`.
    pub path: Option<&'a str>,
    /// What the path says of the container.
    pub kube: Option<&'a PathMeta>,
    /// The pod, when the Kubernetes source knows it.
    pub pod: Option<&'a PodView>,
    /// The `event.id`s of the file's lines, once its fingerprint is known.
    pub ids: Option<document::EventIds>,
    /// The node and cluster.
    pub host: Option<&'a Host>,
    /// The proxy role of the container.
    pub role: Option<Role>,
    /// The IP → workload map, when `enrich_peers` is on.
    pub peers: Option<&'a Store>,
    /// What every line of the file shares, rendered once ([`FileContext::prerender`]).
    pub pre: Option<&'a document::Prerendered>,
}

impl FileContext<'_> {
    /// Renders the members every document of this file shares, for [`FileContext::pre`].
    pub fn prerender(&self) -> document::Prerendered {
        document::prerender(&Origin {
            file: self.path,
            kube: self.kube,
            pod: self.pod,
            host: self.host,
            ..Origin::default()
        })
    }
}

/// What [`LineProcessor::process`] wrote: what the document's `_bulk` action names.
#[derive(Clone, Copy, Debug)]
pub struct Written {
    /// `event.dataset`: [`document::ACCESS`] or [`document::CONTAINER`].
    pub dataset: &'static str,
    /// `event.id`, when the line's file and host are known.
    pub id: Option<[u8; document::EVENT_ID_LEN]>,
}

/// Turns lines into documents with one parser.
pub struct LineProcessor {
    parser: Arc<Parser>,
    options: Options,
    /// Counters so far.
    pub stats: Stats,
}

impl LineProcessor {
    /// A processor for `parser`.
    pub fn new(parser: Arc<Parser>, options: Options) -> Self {
        let stats = Stats::new(&parser);
        LineProcessor {
            parser,
            options,
            stats,
        }
    }

    /// The parser it uses.
    pub fn parser(&self) -> &Arc<Parser> {
        &self.parser
    }

    /// Appends the document of one joined line (and a newline) to `out`. `hint` belongs to
    /// the stream the line came from.
    pub fn process(
        &mut self,
        line: &Joined<'_>,
        ctx: &FileContext<'_>,
        hint: &mut Hint,
        observer: &mut impl Observe,
        out: &mut Vec<u8>,
    ) -> Written {
        let text = line.text();
        let invalid_utf8 = matches!(text, Cow::Owned(_));
        let (file, host, role) = (ctx.path, ctx.host, ctx.role);
        let origin = Origin {
            created: line.time.as_deref(),
            stream: line.stream,
            file,
            offset: file.map(|_| line.offset),
            truncated_bytes: line.truncated_bytes,
            invalid_utf8,
            joined: line.records > 1,
            kube: ctx.kube,
            pod: ctx.pod,
            role,
            peers: ctx.peers,
            pre: ctx.pre,
            host,
            id: ctx.ids.map(|ids| ids.at(line.offset)),
        };
        self.stats.truncated += u64::from(line.truncated_bytes > 0);
        self.stats.invalid_utf8 += u64::from(invalid_utf8);
        let mut fields = Fields::new();
        let dataset = match self.parser.parse_into(&text, hint, &mut fields) {
            Outcome::Access { format } => {
                let verdict = classify::classify(&fields, role);
                observer.access(&fields, &verdict, role);
                if !self.options.no_documents {
                    let original = self.options.keep_original.then_some(text.as_ref());
                    document::access(out, &origin, format, &fields, &verdict, original);
                }
                self.stats.count_access(format);
                document::ACCESS
            }
            Outcome::Other(failure) => {
                if !self.options.no_documents {
                    document::container(out, &origin, &text, failure.as_ref());
                }
                self.stats.container += 1;
                self.stats.parse_errors += u64::from(failure.is_some());
                document::CONTAINER
            }
        };
        if !self.options.no_documents {
            out.push(b'\n');
        }
        Written {
            dataset,
            id: origin.id,
        }
    }
}
