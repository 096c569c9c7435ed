//! The Elasticsearch sink's loop. Documents from the workers arrive with their `create`
//! actions already written; the loop queues them and, whenever fewer than
//! `max_concurrent_requests` bulk requests are in flight, hands the front of the queue to
//! [`super::request`] at once (documents that arrive meanwhile fill the next request, so
//! nothing waits for a timer). Each document is settled by its own item: delivered or
//! duplicate → acknowledged; 429/5xx → queued again after a jittered backoff; other 4xx →
//! the dead-letter file, then acknowledged. A line batch is acknowledged when all its
//! documents are settled, so the checkpoint never passes a document Elasticsearch has not
//! answered for.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use super::dlq::DeadLetters;
use super::request::{Answer, Endpoint, Job, Pool};
use super::response::{Item, Outcome};
use super::retry::Backoff;
use crate::ack::{Acks, Budget};
use crate::admin::Health;
use crate::config::EsSettings;
use crate::sink::{DocBatch, Input};
use crate::stats::{self, Counters};

/// One document on its way: ranges into its line batch's buffer, no copy.
#[derive(Clone, Copy, Debug)]
pub struct Doc {
    batch: u64,
    /// Where its action starts in the batch's `docs`.
    start: u32,
    /// Where the document itself starts (its action ends).
    doc: u32,
    /// Where the document and its newline end.
    end: u32,
}

/// Where the sink stands.
struct State<'a> {
    acks: &'a Acks,
    budget: &'a Budget,
    counters: &'a Counters,
    /// Line batches not fully settled: seq → (batch, documents left). A few dozen at most,
    /// looked up once per document: a B-tree of integers beats hashing them.
    pending: BTreeMap<u64, (DocBatch, usize)>,
    queue: VecDeque<Doc>,
    next_seq: u64,
}

impl State<'_> {
    fn take(&mut self, batch: DocBatch) {
        if batch.ends.is_empty() {
            if !batch.docs.is_empty() {
                error!("a batch came without its bulk actions; it is acknowledged unsent");
            }
            return self.finish(batch);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut start = 0u32;
        for &(doc, end) in &batch.ends {
            self.queue.push_back(Doc {
                batch: seq,
                start,
                doc,
                end,
            });
            start = end;
        }
        let n = batch.ends.len();
        self.pending.insert(seq, (batch, n));
    }

    /// The document, without its newline.
    fn bytes(&self, d: &Doc) -> &[u8] {
        let doc = self
            .pending
            .get(&d.batch)
            .and_then(|(b, _)| b.docs.get(d.doc as usize..d.end as usize))
            .unwrap_or_default();
        doc.strip_suffix(b"\n").unwrap_or(doc)
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

    /// Writes documents from the front of the queue, each after its action, into a bulk
    /// body, within the bounds (`max_bytes` uncompressed). Documents that lie one after the
    /// other in their batch go in as one slice: each call into the compressor costs.
    fn fill(&mut self, body: &mut impl Write, max_docs: usize, max_bytes: usize) -> Vec<Doc> {
        let mut docs = Vec::new();
        let mut bytes = 0;
        // The run being gathered: batch, start, end.
        let mut run: Option<(u64, u32, u32)> = None;
        let pending = &self.pending;
        let mut flush = |run: Option<(u64, u32, u32)>| {
            let Some((batch, start, end)) = run else {
                return;
            };
            if let Some((b, _)) = pending.get(&batch) {
                let text = b.docs.get(start as usize..end as usize).unwrap_or_default();
                // Writing into memory cannot fail.
                let _ = body.write_all(text);
            }
        };
        while let Some(doc) = self.queue.pop_front() {
            let size = (doc.end - doc.start) as usize;
            if !docs.is_empty() && (docs.len() >= max_docs || bytes + size > max_bytes) {
                self.queue.push_front(doc);
                break;
            }
            run = match run {
                Some((batch, start, end)) if batch == doc.batch && end == doc.start => {
                    Some((batch, start, doc.end))
                }
                other => {
                    flush(other);
                    Some((doc.batch, doc.start, doc.end))
                }
            };
            bytes += size;
            docs.push(doc);
        }
        flush(run);
        docs
    }
}

/// A bulk body from the front of the queue, compressed as it is written: no uncompressed
/// copy of the request is ever held.
fn body(st: &mut State<'_>, cfg: &EsSettings, max_bytes: usize) -> (Vec<u8>, Vec<Doc>) {
    if !cfg.gzip {
        let mut body = Vec::new();
        let docs = st.fill(&mut body, cfg.max_batch_docs, max_bytes);
        return (body, docs);
    }
    let mut gz = super::gzip::Gzip::new(Vec::new());
    let docs = st.fill(&mut gz, cfg.max_batch_docs, max_bytes);
    (gz.finish(), docs)
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
/// `answers` is a sender of `rx`'s channel, for the request threads.
#[allow(
    clippy::too_many_arguments,
    reason = "the stage's neighbours: channels, acknowledgements, budget, counters, metrics, health, stop"
)]
pub fn run(
    cfg: &EsSettings,
    rx: &Receiver<Input>,
    answers: &SyncSender<Input>,
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
    let endpoint = Endpoint {
        // Only what `response::classify` reads: an item's status and error, in order (every
        // item has a status, so none is dropped), and a whole-request error. A tenth of the
        // answer's bytes to send, receive and parse.
        bulk_url: format!(
            "{}/_bulk?filter_path=errors,items.*.status,items.*.error,error",
            cfg.url
        ),
        authorization: cfg.authorization.as_ref().map(|a| a.0.clone()),
        gzip: cfg.gzip,
    };
    let pool = match Pool::start(cfg.max_concurrent_requests, &client, endpoint, answers) {
        Ok(p) => p,
        Err(e) => return error!(error = %e, "cannot start the bulk request threads"),
    };
    let seed = u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30), seed);
    let mut st = State {
        acks,
        budget,
        counters,
        pending: BTreeMap::new(),
        queue: VecDeque::new(),
        next_seq: 0,
    };
    let mut open = true;
    let mut in_flight = 0usize;
    // After a retryable failure nothing is sent before this.
    let mut paused_until: Option<Instant> = None;
    let mut limit_bytes = cfg.max_batch_bytes;
    loop {
        if stop.load(Ordering::Relaxed) {
            if !st.pending.is_empty() {
                warn!(
                    documents = st.queue.len(),
                    requests_in_flight = in_flight,
                    "stopping with documents Elasticsearch has not taken; they are read again at the next start"
                );
            }
            return;
        }
        let now = Instant::now();
        if paused_until.is_some_and(|p| now >= p) {
            paused_until = None;
        }
        // Send at once while there is room in flight; what comes meanwhile waits its turn.
        while paused_until.is_none()
            && in_flight < cfg.max_concurrent_requests
            && !st.queue.is_empty()
        {
            let (body, docs) = body(&mut st, cfg, limit_bytes);
            stats::add(&counters.bulk_requests, 1);
            if !pool.send(Job { body, docs }) {
                return error!("the bulk request threads are gone");
            }
            in_flight += 1;
        }
        if !open && in_flight == 0 && st.queue.is_empty() {
            return;
        }
        let wait = paused_until.map_or(Duration::from_millis(200), |p| {
            p.saturating_duration_since(now)
                .min(Duration::from_millis(200))
        });
        // Take everything that is there before sending again, so requests fill up.
        let mut next = rx.recv_timeout(wait);
        loop {
            match next {
                Ok(Input::Docs(batch)) => st.take(batch),
                Ok(Input::Answer(answer)) => {
                    in_flight -= 1;
                    let retry = settle(
                        &mut st,
                        answer,
                        &mut dlq,
                        &mut limit_bytes,
                        cfg,
                        metrics,
                        health,
                    );
                    match retry {
                        Some(retry_after) => {
                            stats::add(&counters.bulk_retries, 1);
                            let until = Instant::now() + backoff.next(retry_after);
                            paused_until = Some(paused_until.map_or(until, |p| p.max(until)));
                        }
                        None => backoff.reset(),
                    }
                }
                Ok(Input::End) | Err(RecvTimeoutError::Disconnected) => open = false,
                Err(RecvTimeoutError::Timeout) => {}
            }
            if !open || st.queue.len() >= cfg.max_batch_docs {
                break;
            }
            next = match rx.try_recv() {
                Ok(input) => Ok(input),
                Err(_) => break,
            };
        }
    }
}

/// Settles the documents of one answer; `Some(Retry-After)` when some go back to the queue.
#[allow(
    clippy::too_many_arguments,
    reason = "the answer and what it touches: state, dead letters, size limit, settings, metrics, health"
)]
fn settle(
    st: &mut State<'_>,
    answer: Answer,
    dlq: &mut DeadLetters,
    limit_bytes: &mut usize,
    cfg: &EsSettings,
    metrics: &crate::metrics::Metrics,
    health: &Health,
) -> Option<Option<Duration>> {
    let Answer {
        docs,
        outcome,
        retry_after,
        elapsed,
    } = answer;
    metrics.observe_bulk(elapsed.as_secs_f64());
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
                        stats::add(&st.counters.dead_letters, 1);
                        st.settle(doc.batch);
                    }
                }
            }
            health.sink_ok.store(true, Ordering::Relaxed);
            *limit_bytes = cfg.max_batch_bytes;
        }
        Outcome::RetryAll { status, reason } => {
            health.sink_ok.store(false, Ordering::Relaxed);
            warn!(status, reason = %reason, documents = docs.len(), "bulk request failed; sending again after a backoff");
            again = docs;
        }
        Outcome::TooLarge => {
            *limit_bytes = (*limit_bytes / 2).max(64 << 10);
            warn!(
                limit_bytes = *limit_bytes,
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
                stats::add(&st.counters.dead_letters, docs.len() as u64);
                for d in &docs {
                    st.settle(d.batch);
                }
            } else {
                again = docs;
            }
        }
    }
    if again.is_empty() {
        return None;
    }
    for doc in again.into_iter().rev() {
        st.queue.push_front(doc);
    }
    Some(retry_after)
}
