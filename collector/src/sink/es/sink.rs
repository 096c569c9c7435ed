//! The Elasticsearch sink: documents from the workers go out in `_bulk` requests of
//! `create` actions, at once whenever no request is in flight (documents that arrive meanwhile
//! fill the next one, so nothing waits for a timer), and each document is settled by its own item: delivered or
//! duplicate → acknowledged; 429/5xx → sent again after a jittered backoff; other 4xx → the
//! dead-letter file, then acknowledged. A line batch is acknowledged when all its documents
//! are settled, so the checkpoint never passes a document Elasticsearch has not answered for.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use tracing::{error, info, warn};

use super::bulk::push_create;
use super::dlq::DeadLetters;
use super::response::{self, Item, Outcome};
use super::retry::{Backoff, parse_retry_after};
use crate::ack::{Acks, Budget};
use crate::admin::Health;
use crate::config::EsSettings;
use crate::sink::DocBatch;
use crate::stats::{self, Counters};

/// One document on its way: ranges into its line batch's buffer, no copy.
#[derive(Clone, Copy)]
struct Doc {
    batch: u64,
    doc: (u32, u32),
    /// The `event.id` within the buffer; `None` lets Elasticsearch choose one.
    id: Option<(u32, u32)>,
    /// Index into the table of targets.
    target: u16,
}

/// The string value after `key` in a document, as a range of it.
fn field(doc: &[u8], key: &[u8]) -> Option<(usize, usize)> {
    let at = memchr::memmem::find(doc, key)? + key.len();
    let len = memchr::memchr(b'"', &doc[at..])?;
    Some((at, at + len))
}

/// Where the sink stands.
struct State<'a> {
    cfg: &'a EsSettings,
    acks: &'a Acks,
    budget: &'a Budget,
    counters: &'a Counters,
    /// Line batches not fully settled: seq → (batch, documents left).
    pending: HashMap<u64, (DocBatch, usize)>,
    queue: VecDeque<Doc>,
    next_seq: u64,
    /// Index and data stream names seen (a handful: datasets, days).
    targets: Vec<String>,
}

impl State<'_> {
    fn take(&mut self, batch: DocBatch) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut n = 0;
        let mut at = 0usize;
        let buf = &batch.docs;
        while at < buf.len() {
            let end = memchr::memchr(b'\n', &buf[at..]).map_or(buf.len(), |i| at + i);
            let doc = &buf[at..end];
            if !doc.is_empty() {
                let text = |r: Option<(usize, usize)>| {
                    r.and_then(|(a, b)| std::str::from_utf8(&doc[a..b]).ok())
                };
                let time = text(field(doc, br#"{"@timestamp":""#));
                let dataset = text(field(doc, br#""dataset":""#)).unwrap_or("meshtrail.container");
                let destination =
                    super::route::pick(&self.cfg.routes, &self.cfg.destination, &batch.route);
                let name = destination.target(dataset, time);
                let target = match self.targets.iter().position(|t| *t == name) {
                    Some(i) => i,
                    None => {
                        self.targets.push(name);
                        self.targets.len() - 1
                    }
                };
                let id = field(doc, br#""event":{"id":""#)
                    .map(|(a, b)| ((at + a) as u32, (at + b) as u32));
                self.queue.push_back(Doc {
                    batch: seq,
                    doc: (at as u32, end as u32),
                    id,
                    target: target as u16,
                });
                n += 1;
            }
            at = end + 1;
        }
        if n == 0 {
            self.finish(batch);
        } else {
            self.pending.insert(seq, (batch, n));
        }
    }

    fn buffer(&self, d: &Doc) -> &[u8] {
        self.pending
            .get(&d.batch)
            .map_or(&[][..], |(b, _)| &b.docs[..])
    }

    fn bytes(&self, d: &Doc) -> &[u8] {
        self.buffer(d)
            .get(d.doc.0 as usize..d.doc.1 as usize)
            .unwrap_or_default()
    }

    fn finish(&self, batch: DocBatch) {
        self.acks.ack(batch.file, batch.start, batch.end);
        self.budget.release(batch.reserved);
        stats::add(&self.counters.events_acked, batch.count);
    }

    fn settle(&mut self, seq: u64) {
        let done = match self.pending.get_mut(&seq) {
            Some((_, left)) => {
                *left -= 1;
                *left == 0
            }
            None => false,
        };
        if done {
            if let Some((batch, _)) = self.pending.remove(&seq) {
                self.finish(batch);
            }
        }
    }

    /// Appends the action and document of `d` to a bulk body.
    fn encode(&self, d: &Doc, body: &mut Vec<u8>) {
        let index = &self.targets[d.target as usize];
        let bytes = self.bytes(d);
        match d.id {
            Some((a, b)) => {
                let id = self
                    .buffer(d)
                    .get(a as usize..b as usize)
                    .and_then(|s| std::str::from_utf8(s).ok())
                    .unwrap_or_default();
                push_create(body, index, id, bytes);
            }
            None => {
                body.extend_from_slice(br#"{"create":{"_index":"#);
                crate::document::writer::write_str(body, index);
                body.extend_from_slice(b"}}\n");
                body.extend_from_slice(bytes);
                body.push(b'\n');
            }
        }
    }
}

fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    meshtrail_parsers::timestamp::Timestamp {
        unix_secs: now.as_secs() as i64,
        nanos: now.subsec_nanos(),
    }
    .millis()
    .to_string()
}

/// Installs the lifecycle policy and the templates ([`super::templates`]).
fn install_templates(client: &reqwest::blocking::Client, cfg: &EsSettings) {
    for (path, body) in super::templates::requests(cfg) {
        let mut req = client
            .put(format!("{}{path}", cfg.url))
            .header("content-type", "application/json")
            .body(body);
        if let Some(auth) = &cfg.authorization {
            req = req.header("authorization", &auth.0);
        }
        match req.send() {
            Ok(r) if r.status().is_success() => info!(path, "installed"),
            Ok(r) => warn!(
                path,
                status = r.status().as_u16(),
                "template install refused; documents still go, mappings may be dynamic"
            ),
            Err(e) => {
                warn!(path, error = %super::connect::chain(&e), "template install failed; documents still go, mappings may be dynamic")
            }
        }
    }
}

/// Runs until the workers are done and every document is settled, or `stop` is set (then
/// unsettled lines stay before the checkpoint and are read again at the next start).
#[allow(
    clippy::too_many_arguments,
    reason = "the stage's neighbours: channel, acknowledgements, budget, counters, metrics, health, stop"
)]
pub fn run(
    cfg: &EsSettings,
    rx: &Receiver<DocBatch>,
    acks: &Acks,
    budget: &Budget,
    counters: &Counters,
    metrics: &crate::metrics::Metrics,
    health: &Health,
    stop: &AtomicBool,
) {
    let client = match super::connect::client(&cfg.tls) {
        Ok(c) => c,
        Err(e) => return error!(error = %e, "cannot build the HTTP client"),
    };
    if cfg.install_templates {
        install_templates(&client, cfg);
    }
    let mut dlq = match DeadLetters::open(&cfg.dead_letter_path, 100 << 20, 5) {
        Ok(d) => d,
        Err(e) => {
            return error!(path = %cfg.dead_letter_path.display(), error = %e, "cannot open the dead-letter file");
        }
    };
    let seed = u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30), seed);
    let mut st = State {
        cfg,
        acks,
        budget,
        counters,
        pending: HashMap::new(),
        queue: VecDeque::new(),
        next_seq: 0,
        targets: Vec::new(),
    };
    let mut open = true;
    let mut limit_bytes = cfg.max_batch_bytes;
    let mut body = Vec::new();
    loop {
        // Take what the workers have; wait only when there is nothing to send.
        while open && st.queue.len() < cfg.max_batch_docs {
            let wait = if st.queue.is_empty() {
                Duration::from_millis(200)
            } else {
                Duration::ZERO
            };
            match rx.recv_timeout(wait) {
                Ok(batch) => st.take(batch),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
        }
        if st.queue.is_empty() {
            if !open || stop.load(Ordering::Relaxed) {
                return;
            }
            continue;
        }
        // One bulk request from the front of the queue, built from the batches' buffers.
        let mut docs = Vec::new();
        body.clear();
        while let Some(doc) = st.queue.pop_front() {
            let size = (doc.doc.1 - doc.doc.0) as usize;
            if !docs.is_empty()
                && (docs.len() >= cfg.max_batch_docs || body.len() + size > limit_bytes)
            {
                st.queue.push_front(doc);
                break;
            }
            st.encode(&doc, &mut body);
            docs.push(doc);
        }
        let mut req = client
            .post(format!("{}/_bulk", cfg.url))
            .header("content-type", "application/x-ndjson");
        if let Some(auth) = &cfg.authorization {
            req = req.header("authorization", &auth.0);
        }
        let payload = if cfg.gzip {
            req = req.header("content-encoding", "gzip");
            let mut gz = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 4),
                flate2::Compression::fast(),
            );
            match gz.write_all(&body).and_then(|()| gz.finish()) {
                Ok(z) => z,
                Err(e) => {
                    error!(error = %e, "gzip failed; sending uncompressed");
                    req = req.header("content-encoding", "identity");
                    body.clone()
                }
            }
        } else {
            body.clone()
        };
        stats::add(&counters.bulk_requests, 1);
        let sent = std::time::Instant::now();
        let answer = req.body(payload).send().and_then(|r| {
            let status = r.status().as_u16();
            let retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
            r.bytes().map(|b| (status, retry_after, b))
        });
        metrics.observe_bulk(sent.elapsed().as_secs_f64());
        let (outcome, retry_after) = match answer {
            Ok((status, retry_after, bytes)) => {
                (response::classify(status, &bytes, docs.len()), retry_after)
            }
            Err(e) => (
                Outcome::RetryAll {
                    status: 0,
                    reason: format!("request failed: {}", super::connect::chain(&e)),
                },
                None,
            ),
        };
        let mut again = Vec::new();
        match outcome {
            Outcome::Items(items) => {
                for (doc, item) in docs.into_iter().zip(items) {
                    match item {
                        Item::Delivered | Item::Duplicate => st.settle(doc.batch),
                        Item::Retry { .. } => again.push(doc),
                        Item::Reject {
                            status,
                            kind,
                            reason,
                        } => {
                            if let Err(e) =
                                dlq.write(&[st.bytes(&doc)], status, &kind, &reason, &now_rfc3339())
                            {
                                error!(error = %e, "cannot write the dead-letter file; the document is sent again");
                                again.push(doc);
                                continue;
                            }
                            stats::add(&counters.dead_letters, 1);
                            st.settle(doc.batch);
                        }
                    }
                }
                health.sink_ok.store(true, Ordering::Relaxed);
                limit_bytes = cfg.max_batch_bytes;
            }
            Outcome::RetryAll { status, reason } => {
                health.sink_ok.store(false, Ordering::Relaxed);
                warn!(status, reason = %reason, documents = docs.len(), "bulk request failed; sending again after a backoff");
                again = docs;
            }
            Outcome::TooLarge => {
                limit_bytes = (limit_bytes / 2).max(64 << 10);
                warn!(
                    limit_bytes,
                    "bulk request too large for Elasticsearch; sending smaller ones"
                );
                again = docs;
            }
            Outcome::RejectAll {
                status,
                kind,
                reason,
            } => {
                error!(status, kind = %kind, reason = %reason, "Elasticsearch refused the request; its documents go to the dead-letter file");
                let bytes: Vec<&[u8]> = docs.iter().map(|d| st.bytes(d)).collect();
                if dlq
                    .write(&bytes, status, &kind, &reason, &now_rfc3339())
                    .is_ok()
                {
                    stats::add(&counters.dead_letters, docs.len() as u64);
                    for d in &docs {
                        st.settle(d.batch);
                    }
                } else {
                    again = docs;
                }
            }
        }
        if again.is_empty() {
            backoff.reset();
            continue;
        }
        stats::add(&counters.bulk_retries, 1);
        for doc in again.into_iter().rev() {
            st.queue.push_front(doc);
        }
        let until = std::time::Instant::now() + backoff.next(retry_after);
        while std::time::Instant::now() < until {
            if stop.load(Ordering::Relaxed) {
                warn!(
                    documents = st.queue.len(),
                    "stopping with documents Elasticsearch has not taken; they are read again at the next start"
                );
                return;
            }
            std::thread::sleep(
                Duration::from_millis(20)
                    .min(until.saturating_duration_since(std::time::Instant::now())),
            );
        }
    }
}
