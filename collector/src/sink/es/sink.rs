//! The Elasticsearch sink's loop. Documents from the workers arrive with their `create`
//! actions already written; the loop queues them and, whenever fewer bulk requests are in
//! flight than [`super::pace`] allows, hands the front of the queue to [`super::request`] at
//! once (documents that arrive meanwhile fill the next request, so nothing waits for a
//! timer). Each document is settled by its own item: delivered or duplicate → acknowledged;
//! 429/5xx → scheduled again on its own, by its own attempt count, while the rest keeps
//! flowing (partial success is progress); other 4xx → the dead-letter file, then
//! acknowledged. A request that fails whole (no answer, 429/5xx on the request) goes again
//! with its body as it was, after a short wait; only such failures one after another with
//! no answer between, or a 401/403, pause sending: [`super::probe`] asks Elasticsearch
//! cheaply until it answers, and sending resumes at once. A request far slower
//! than the rest is sent again on an idle place (hedged); the first answer for its items
//! settles them. A line batch is acknowledged when all its documents are settled, so the
//! checkpoint never passes a document Elasticsearch has not answered for.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{debug, error, info, warn};

use super::config::EsSettings;
use super::dlq::DeadLetters;
use super::pace::{Pace, Signal};
use super::probe::{Probe, Prober};
use super::request::{Answer, Endpoint, Job, Pool};
use super::response::{Item, Outcome};
use super::retry::Schedule;
use crate::ack::{Acks, Budget};
use crate::admin::Health;
use crate::backoff::{Backoff, Jitter, delay};
use crate::sink::{DocBatch, Input};
use crate::stats::{self, Counters};

/// A document refused on its own waits `RETRY_BASE·2^(attempts-1)`, jittered, up to
/// `RETRY_MAX`. The first waits are short: the document's whole line batch (and its share
/// of the in-flight budget) waits with it, and a refused item usually goes with the next
/// request anyway. The cap is short too: with a fifth of items refused, a few documents in
/// a million are refused eight times running, and the pace (requests in flight, their
/// size), not these waits, is what spares a busy cluster.
const RETRY_BASE: Duration = Duration::from_millis(20);
const RETRY_MAX: Duration = Duration::from_secs(1);
/// After a request failed whole and Elasticsearch answered it (429, 5xx), sending waits at
/// most this long once the probe says the cluster is there (a `Retry-After` may ask for
/// more): a healthy cluster is never left idle for long.
const PAUSE_MAX: Duration = Duration::from_secs(1);
/// The first such wait: a request-level 429 from a busy cluster is usually gone by the
/// next request, and while sending waits, nothing new goes.
const PAUSE_BASE: Duration = Duration::from_millis(25);
/// After 401/403: credentials do not fix themselves in a second.
const AUTH_PAUSE_MAX: Duration = Duration::from_secs(30);
/// Requests out may be up to this many times `sink.max_concurrent_requests`: the limit
/// counts only requests answered in usual time, and a few slow answers must not take every
/// place (nor their documents the whole budget).
const STRAGGLER_PLACES: usize = 2;
/// Request threads per place: a voided copy (see [`Flight::void`]) holds nothing but its
/// thread until its answer comes, and must not keep a fresh request waiting for one.
const THREADS_PER_PLACE: usize = 2;
/// Between probes while Elasticsearch does not answer.
const PROBE_EVERY: Duration = Duration::from_millis(250);
/// Requests failing whole one after the other, with no answer for items between, that
/// pause sending. One alone (a request refused while the others are taken, a connection
/// lost) is sent again on its own after a short wait: a busy cluster refuses a few requests
/// of many, and pausing every request for each would idle a cluster that is only busy.
const PAUSE_AFTER_FAILURES: u32 = 2;
/// A straggler is sent again once it has been out this many straggler times, if the sink
/// has nothing else to send and a place is free: one slow answer (a busy shard, a long GC
/// pause) then costs about that, not its whole time, and a checkpoint or an `--once` run
/// does not wait for it. Hedging only idle places keeps the extra load to the few
/// requests that are far slower than the rest.
const HEDGE_AFTER: u32 = 1;
/// Copies of one request out at once, at most: a hedge may straggle too (a one in thirty
/// chance with a slow answer in thirty), but four copies would only add load.
const MAX_COPIES: usize = 3;

/// The sink with what it needs opened at start, so that a bad CA bundle, client
/// certificate or dead-letter path stops the agent before it reads anything.
pub struct Prepared {
    /// The settings.
    pub cfg: EsSettings,
    client: reqwest::blocking::Client,
    dlq: DeadLetters,
}

impl Prepared {
    /// Builds the HTTP client (reading the CA bundle and client certificate) and opens the
    /// dead-letter file.
    pub fn open(cfg: &EsSettings) -> std::io::Result<Prepared> {
        let client = super::connect::client(&cfg.tls).map_err(std::io::Error::other)?;
        let dlq = DeadLetters::open(&cfg.dead_letter_path, 100 << 20, 5).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "sink.dead_letter_path {}: cannot open it for appending: {e}",
                    cfg.dead_letter_path.display()
                ),
            )
        })?;
        Ok(Prepared {
            cfg: cfg.clone(),
            client,
            dlq,
        })
    }
}

/// One document on its way: ranges into its line batch's buffer, no copy, until
/// Elasticsearch refuses it on its own; then it carries its own bytes (see
/// [`State::detach`]).
#[derive(Debug)]
struct Doc {
    batch: u64,
    /// Times Elasticsearch refused it so far.
    attempts: u32,
    /// Where its action starts in the batch's `docs` (in `own`, once detached).
    start: u32,
    /// Where the document itself starts (its action ends).
    doc: u32,
    /// Where the document and its newline end.
    end: u32,
    /// Its action and document, once it no longer lives in its batch's buffer.
    own: Option<Box<[u8]>>,
}

impl Doc {
    /// A second copy for a hedged request (see [`Flight::twin`]). Exactly one of the two
    /// is ever settled; the other is dropped, so a detached copy's bytes, counted once
    /// against the budget, are given back once.
    fn hedge_copy(&self) -> Doc {
        Doc {
            own: self.own.clone(),
            ..*self
        }
    }

    /// Its action, document and newline.
    fn text<'a>(&'a self, pending: &'a BTreeMap<u64, Pending>) -> &'a [u8] {
        let buf = match &self.own {
            Some(own) => own,
            None => pending.get(&self.batch).map_or(&[][..], |p| &p.batch.docs),
        };
        buf.get(self.start as usize..self.end as usize)
            .unwrap_or_default()
    }
}

/// A line batch not fully settled.
#[derive(Debug)]
struct Pending {
    batch: DocBatch,
    /// Documents not settled.
    left: usize,
    /// Of those, documents still in `batch.docs`. At zero the buffer goes and its share of
    /// the in-flight budget with it, though the checkpoint still waits for the others.
    in_place: usize,
    /// In-flight budget this batch holds: what it reserved, less the documents of
    /// stragglers (see [`Flight`]).
    held: usize,
}

/// A bulk request out.
#[derive(Debug)]
struct Flight {
    sent: Instant,
    /// What was sent: sent again as it is if the request fails whole or straggles, not
    /// compressed a second time.
    body: Bytes,
    /// Its documents, in body order: the answer's items settle them.
    docs: Vec<Doc>,
    /// Out longer than a straggler's time: its documents no longer count against the
    /// in-flight budget, so that one slow answer does not stop the tailer. What they hold
    /// beyond the budget is bounded by [`STRAGGLER_PLACES`] requests of
    /// `sink.max_batch_bytes`.
    uncounted: bool,
    /// The other requests out with the same documents (at most [`MAX_COPIES`] in all): a
    /// straggler is sent again when the sink has nothing else to send. Whichever copy
    /// answers first for the items settles them and voids the others (`create` with the
    /// document's `_id` makes a second store a 409 duplicate, never a second document).
    twins: Vec<u64>,
    /// A twin answered first: its answer settles nothing.
    void: bool,
}

impl Flight {
    fn new(body: Bytes, docs: Vec<Doc>, uncounted: bool) -> Flight {
        Flight {
            sent: Instant::now(),
            body,
            docs,
            uncounted,
            twins: Vec::new(),
            void: false,
        }
    }
}

/// The requests to send again now, at most `n`: the youngest copy of each group of
/// copies whose every copy has been out `after` or longer (a straggler's time), while the
/// group may grow.
fn hedges_due(out: &BTreeMap<u64, Flight>, now: Instant, after: Duration, n: usize) -> Vec<u64> {
    out.iter()
        .filter(|(_, f)| {
            f.uncounted
                && !f.void
                && f.twins.len() + 1 < MAX_COPIES
                && now.duration_since(f.sent) >= after
                && f.twins
                    .iter()
                    .all(|t| out.get(t).is_none_or(|o| o.sent <= f.sent))
        })
        .map(|(&id, _)| id)
        .take(n)
        .collect()
}

/// Copy `id` of a group (see [`Flight::twins`]) has its answer; `answered`: Elasticsearch
/// judged its items. Then the other copies are voided: their answers settle nothing. If it
/// failed whole while other copies are still out, it gives up its documents: they wait
/// for those answers instead of being sent a fourth time.
fn answered_copy(out: &mut BTreeMap<u64, Flight>, flight: &mut Flight, id: u64, answered: bool) {
    let mut others = false;
    for t in &flight.twins {
        let Some(twin) = out.get_mut(t) else {
            continue;
        };
        others = true;
        if answered {
            twin.void = true;
            twin.docs = Vec::new();
        } else {
            twin.twins.retain(|&o| o != id);
        }
    }
    if others && !answered {
        flight.docs = Vec::new();
    }
}

/// A request that failed whole: its body and documents, to go again.
#[derive(Debug)]
struct Resend {
    body: Bytes,
    docs: Vec<Doc>,
    /// Not sent before then.
    at: Instant,
}

/// Where the sink stands.
struct State<'a> {
    acks: &'a Acks,
    budget: &'a Budget,
    counters: &'a Counters,
    /// Line batches not fully settled, by sequence. A few dozen at most, looked up once per
    /// document: a B-tree of integers beats hashing them.
    pending: BTreeMap<u64, Pending>,
    /// Requests that failed whole, to send again as they were (front first), before the
    /// queue.
    resend: VecDeque<Resend>,
    /// Documents to send, front first.
    queue: VecDeque<Doc>,
    /// Documents refused on their own, each waiting for its time.
    retries: Schedule<Doc>,
    /// Spreads their times.
    jitter: Jitter,
    next_seq: u64,
}

impl<'a> State<'a> {
    fn new(acks: &'a Acks, budget: &'a Budget, counters: &'a Counters, seed: u64) -> Self {
        State {
            acks,
            budget,
            counters,
            pending: BTreeMap::new(),
            resend: VecDeque::new(),
            queue: VecDeque::new(),
            retries: Schedule::default(),
            jitter: Jitter::new(seed),
            next_seq: 0,
        }
    }

    fn take(&mut self, mut batch: DocBatch) {
        let held = std::mem::take(&mut batch.reserved);
        if batch.ends.is_empty() {
            if !batch.docs.is_empty() {
                error!("a batch came without its bulk actions; it is acknowledged unsent");
            }
            return self.finish(batch, held);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut start = 0u32;
        for &(doc, end) in &batch.ends {
            self.queue.push_back(Doc {
                batch: seq,
                attempts: 0,
                start,
                doc,
                end,
                own: None,
            });
            start = end;
        }
        let n = batch.ends.len();
        self.pending.insert(
            seq,
            Pending {
                batch,
                left: n,
                in_place: n,
                held,
            },
        );
    }

    /// Nothing waits to be sent now (retries wait for their time).
    fn idle(&self) -> bool {
        self.queue.is_empty() && self.resend.is_empty()
    }

    /// There is something to send now.
    fn ready(&self, now: Instant) -> bool {
        !self.queue.is_empty() || self.resend.iter().any(|r| r.at <= now)
    }

    /// The first request that failed whole and whose time has come.
    fn resend_due(&mut self, now: Instant) -> Option<Resend> {
        let i = self.resend.iter().position(|r| r.at <= now)?;
        self.resend.remove(i)
    }

    /// Documents not yet settled that wait here (not in a request).
    fn waiting(&self) -> usize {
        self.queue.len()
            + self.retries.len()
            + self.resend.iter().map(|r| r.docs.len()).sum::<usize>()
    }

    /// The document, without its newline.
    fn bytes<'d>(&'d self, d: &'d Doc) -> &'d [u8] {
        let text = d.text(&self.pending);
        let doc = text.get((d.doc - d.start) as usize..).unwrap_or_default();
        doc.strip_suffix(b"\n").unwrap_or(doc)
    }

    fn finish(&self, batch: DocBatch, held: usize) {
        self.acks.ack(batch.file, batch.start, batch.end);
        self.budget.release(held);
        stats::add(&self.counters.events_acked, batch.count);
    }

    /// The documents of a straggling request stop counting against the budget (those with
    /// their own bytes, few and small, still count).
    fn uncount(&mut self, docs: &[Doc]) {
        for d in docs.iter().filter(|d| d.own.is_none()) {
            if let Some(p) = self.pending.get_mut(&d.batch) {
                let n = ((d.end - d.start) as usize).min(p.held);
                p.held -= n;
                self.budget.release(n);
            }
        }
    }

    /// A straggler's document is back in the queue: it counts again.
    fn recount(&mut self, d: &Doc) {
        if d.own.is_none() {
            if let Some(p) = self.pending.get_mut(&d.batch) {
                let n = (d.end - d.start) as usize;
                p.held += n;
                self.budget.exchange(0, n);
            }
        }
    }

    /// Gives a refused document its own copy of its bytes, so that its batch's buffer (and
    /// the budget it holds) need not wait for Elasticsearch to take it: the tailer keeps
    /// reading while a few refused documents from many batches wait for their retry.
    fn detach(&mut self, d: &mut Doc) {
        if d.own.is_some() {
            return;
        }
        let own: Box<[u8]> = d.text(&self.pending).into();
        // Counted on top of the budget without waiting: it is a small part of what the
        // batch gives back.
        self.budget.exchange(0, own.len());
        d.end -= d.start;
        d.doc -= d.start;
        d.start = 0;
        d.own = Some(own);
        self.left_in_place(d.batch);
    }

    /// One document of batch `seq` no longer needs its buffer.
    fn left_in_place(&mut self, seq: u64) {
        if let Some(p) = self.pending.get_mut(&seq) {
            p.in_place = p.in_place.saturating_sub(1);
            if p.in_place == 0 && p.left > 0 {
                p.batch.docs = Vec::new();
                p.batch.ends = Vec::new();
                self.budget.release(std::mem::take(&mut p.held));
            }
        }
    }

    /// Elasticsearch took `d` (or the dead-letter file did).
    fn settle(&mut self, d: Doc) {
        match &d.own {
            Some(own) => self.budget.release(own.len()),
            None => self.left_in_place(d.batch),
        }
        let done = match self.pending.get_mut(&d.batch) {
            Some(p) => {
                p.left -= 1;
                p.left == 0
            }
            None => false,
        };
        if done {
            if let Some(p) = self.pending.remove(&d.batch) {
                self.finish(p.batch, p.held);
            }
        }
    }

    /// Takes documents from the front of the queue, within the bounds (`max_bytes`
    /// uncompressed), and writes each after its action into a bulk body.
    fn fill(&mut self, body: &mut impl Write, max_docs: usize, max_bytes: usize) -> Vec<Doc> {
        let mut docs = Vec::new();
        let mut bytes = 0;
        while let Some(doc) = self.queue.pop_front() {
            let size = (doc.end - doc.start) as usize;
            if !docs.is_empty() && (docs.len() >= max_docs || bytes + size > max_bytes) {
                self.queue.push_front(doc);
                break;
            }
            bytes += size;
            docs.push(doc);
        }
        self.write(body, &docs);
        docs
    }

    /// Writes `docs`, each after its action, into a bulk body. Documents that lie one
    /// after the other in their batch go in as one slice: each call into the compressor
    /// costs, and it finds matches only within a call's slice. Short runs (documents sent
    /// again, one here and one there) are gathered first, so that they share their keys
    /// as a long run does: written one by one, they cost the compressor twice as much.
    fn write(&self, body: &mut impl Write, docs: &[Doc]) {
        let mut stage = Stage::new(body);
        // The run being gathered: batch, start, end.
        let mut run: Option<(u64, u32, u32)> = None;
        let text = |(batch, start, end): (u64, u32, u32)| {
            self.pending
                .get(&batch)
                .and_then(|p| p.batch.docs.get(start as usize..end as usize))
                .unwrap_or_default()
        };
        for doc in docs {
            run = match (run, &doc.own) {
                (run, Some(own)) => {
                    stage.put(run.map(text).unwrap_or_default());
                    stage.put(own);
                    None
                }
                (Some((batch, start, end)), None) if batch == doc.batch && end == doc.start => {
                    Some((batch, start, doc.end))
                }
                (run, None) => {
                    stage.put(run.map(text).unwrap_or_default());
                    Some((doc.batch, doc.start, doc.end))
                }
            };
        }
        stage.put(run.map(text).unwrap_or_default());
        stage.finish();
    }
}

/// Slices on their way into a bulk body: long ones go straight in, short ones are
/// gathered until there is a long piece of them.
struct Stage<'w, W: Write> {
    body: &'w mut W,
    gathered: Vec<u8>,
}

impl<'w, W: Write> Stage<'w, W> {
    /// A slice at least this long goes in on its own.
    const LONG: usize = 32 * 1024;

    fn new(body: &'w mut W) -> Self {
        Stage {
            body,
            gathered: Vec::new(),
        }
    }

    // Writing into memory cannot fail.
    fn put(&mut self, text: &[u8]) {
        if text.len() >= Self::LONG {
            self.finish();
            let _ = self.body.write_all(text);
            return;
        }
        self.gathered.extend_from_slice(text);
        if self.gathered.len() >= Self::LONG {
            self.finish();
        }
    }

    fn finish(&mut self) {
        if !self.gathered.is_empty() {
            let _ = self.body.write_all(&self.gathered);
            self.gathered.clear();
        }
    }
}

/// A bulk body from the front of the queue, compressed as it is written: no uncompressed
/// copy of the request is ever held.
fn body(st: &mut State<'_>, cfg: &EsSettings, max_bytes: usize) -> (Bytes, Vec<Doc>) {
    if !cfg.gzip {
        let mut body = Vec::new();
        let docs = st.fill(&mut body, cfg.max_batch_docs, max_bytes);
        return (body.into(), docs);
    }
    if cfg.gzip_writer == super::gzip::Writer::Zlib {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let docs = st.fill(&mut gz, cfg.max_batch_docs, max_bytes);
        // Into memory: finishing cannot fail.
        return (gz.finish().unwrap_or_default().into(), docs);
    }
    let mut gz = super::gzip::Gzip::new(Vec::new());
    let docs = st.fill(&mut gz, cfg.max_batch_docs, max_bytes);
    (gz.finish().into(), docs)
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

/// Why sending is paused: a request failed whole.
#[derive(Debug)]
struct Pause {
    since: Instant,
    /// Sending waits at least until then (backoff, `Retry-After`).
    not_before: Instant,
    /// The last probe found Elasticsearch answering.
    up: bool,
    /// A probe is out.
    probing: bool,
    /// When the next probe goes.
    probe_at: Instant,
}

/// Sending paused (or kept paused) after a request failed whole with `status` (0: no
/// answer): backoff up to 1 s (30 s for 401/403), at least any `Retry-After`; no answer at
/// all waits for the probe alone. A pause already running keeps its start and its probe.
fn paused(
    running: Option<&Pause>,
    status: u16,
    retry_after: Option<Duration>,
    backoff: &mut Backoff,
    now: Instant,
) -> Pause {
    let cap = if matches!(status, 401 | 403) {
        AUTH_PAUSE_MAX
    } else {
        PAUSE_MAX
    };
    let wait = if status == 0 {
        Duration::ZERO
    } else {
        backoff
            .next(retry_after)
            .min(retry_after.unwrap_or_default().max(cap))
    };
    Pause {
        since: running.map_or(now, |p| p.since),
        not_before: running.map_or(now + wait, |p| p.not_before.max(now + wait)),
        up: false,
        probing: running.is_some_and(|p| p.probing),
        probe_at: now,
    }
}

/// The sink's gauges, set about once a second.
fn publish(
    m: &crate::metrics::BulkMetrics,
    pace: &Pace,
    st: &State<'_>,
    in_flight: usize,
    pause: &Option<Pause>,
    now: Instant,
) {
    m.concurrency.set(pace.limit() as i64);
    m.max_bytes.set(pace.max_bytes() as i64);
    m.in_flight.set(in_flight as i64);
    m.retry_queue.set(st.retries.len() as i64);
    m.retry_oldest.set(st.retries.oldest(now).as_secs_f64());
    m.paused.set(i64::from(pause.is_some()));
    debug!(
        limit = pace.limit(),
        max_bytes = pace.max_bytes(),
        in_flight,
        queue = st.queue.len(),
        resend = st.resend.len(),
        retries = st.retries.len(),
        batches = st.pending.len(),
        budget = st.budget.used(),
        paused = pause.is_some(),
        "bulk pace"
    );
}

/// Runs until the workers are done and every document is settled, or `stop` is set (then
/// unsettled lines stay before the checkpoint and are read again at the next start).
/// `answers` is a sender of `rx`'s channel, for the request and probe threads.
#[allow(
    clippy::too_many_arguments,
    reason = "the stage's neighbours: channels, acknowledgements, budget, counters, metrics, health, stop"
)]
pub fn run(
    sink: Prepared,
    rx: &Receiver<Input>,
    answers: &SyncSender<Input>,
    acks: &Acks,
    budget: &Budget,
    counters: &Counters,
    metrics: &crate::metrics::Metrics,
    health: &Health,
    stop: &AtomicBool,
) {
    let Prepared {
        cfg,
        client,
        mut dlq,
    } = sink;
    let cfg = &cfg;
    if cfg.install_templates {
        install_templates(&client, cfg);
    }
    let authorization = cfg.authorization.as_ref().map(|a| a.0.clone());
    let endpoint = Endpoint {
        // Only what `response::classify` reads: an item's status and error, in order (every
        // item has a status, so none is dropped), and a whole-request error. A tenth of the
        // answer's bytes to send, receive and parse.
        bulk_url: format!(
            "{}/_bulk?filter_path=errors,items.*.status,items.*.error,error",
            cfg.url
        ),
        authorization: authorization.clone(),
        gzip: cfg.gzip,
    };
    let pool = match Pool::start(
        cfg.max_concurrent_requests * STRAGGLER_PLACES * THREADS_PER_PLACE,
        &client,
        endpoint,
        answers,
    ) {
        Ok(p) => p,
        Err(e) => return error!(error = %e, "cannot start the bulk request threads"),
    };
    let prober = match Prober::start(&client, &cfg.url, authorization, answers) {
        Ok(p) => p,
        Err(e) => return error!(error = %e, "cannot start the probe thread"),
    };
    let seed = u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    let mut backoff = Backoff::new(PAUSE_BASE, AUTH_PAUSE_MAX, seed);
    let mut st = State::new(acks, budget, counters, seed.rotate_left(17));
    let bulk_metrics = metrics.bulk();
    let mut pace = Pace::new(
        cfg.max_concurrent_requests,
        cfg.max_batch_bytes,
        Instant::now(),
    );
    let mut open = true;
    let mut out: BTreeMap<u64, Flight> = BTreeMap::new();
    let mut next_id = 0u64;
    let mut pause: Option<Pause> = None;
    // Requests failed whole since the last answer for items.
    let mut failures_in_row = 0u32;
    let mut publish_at = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) {
            if !st.pending.is_empty() {
                warn!(
                    documents = st.waiting(),
                    requests_in_flight = out.len(),
                    "stopping with documents Elasticsearch has not taken; they are read again at the next start"
                );
            }
            return;
        }
        let now = Instant::now();
        // Refused documents whose time has come go first.
        while let Some((_, doc)) = st.retries.pop_due(now) {
            st.queue.push_front(doc);
        }
        if let Some(p) = &mut pause {
            if p.up && now >= p.not_before {
                info!(
                    after_ms = now.duration_since(p.since).as_millis() as u64,
                    documents = st.waiting(),
                    "Elasticsearch answers again; sending"
                );
                pause = None;
            } else if !p.up && !p.probing && now >= p.probe_at {
                p.probing = prober.probe();
            }
        }
        // A request out longer than a straggler's time no longer holds a place, nor budget.
        let straggler = pace.straggler_after();
        for f in out.values_mut() {
            if !f.uncounted && now.duration_since(f.sent) >= straggler {
                f.uncounted = true;
                st.uncount(&f.docs);
            }
        }
        let places = cfg.max_concurrent_requests * STRAGGLER_PLACES;
        let threads = places * THREADS_PER_PLACE;
        // Requests that still settle documents; voided copies only hold a thread.
        let mut live = out.values().filter(|f| !f.void).count();
        let free =
            |live: usize, out: usize| places.saturating_sub(live).min(threads.saturating_sub(out));
        // Nothing else to send: a straggler goes again on an idle place.
        if pause.is_none() && !st.ready(now) && free(live, out.len()) > 0 {
            let hedge_after = straggler * HEDGE_AFTER;
            for id in hedges_due(&out, now, hedge_after, free(live, out.len())) {
                let Some(first) = out.get(&id) else {
                    continue;
                };
                let docs: Vec<Doc> = first.docs.iter().map(Doc::hedge_copy).collect();
                let body = first.body.clone();
                let mut twins = first.twins.clone();
                twins.push(id);
                next_id += 1;
                for t in &twins {
                    if let Some(f) = out.get_mut(t) {
                        f.twins.push(next_id);
                    }
                }
                let job = Job {
                    id: next_id,
                    body: body.clone(),
                    items: docs.len(),
                };
                stats::add(&counters.bulk_requests, 1);
                stats::add(&counters.bulk_hedges, 1);
                if !pool.send(job) {
                    return error!("the bulk request threads are gone");
                }
                // Its documents were uncounted with the first copy.
                let mut copy = Flight::new(body, docs, true);
                copy.twins = twins;
                out.insert(next_id, copy);
                live += 1;
            }
        }
        // Send at once while the pace allows; what comes meanwhile waits its turn.
        if pause.is_none() && st.ready(now) {
            let mut active = out.values().filter(|f| !f.uncounted).count();
            while st.ready(now) {
                if active >= pace.limit() || free(live, out.len()) == 0 {
                    pace.held_back();
                    break;
                }
                let (body, docs) = match st.resend_due(now) {
                    Some(Resend { body, docs, .. }) => (body, docs),
                    None => body(&mut st, cfg, pace.max_bytes()),
                };
                stats::add(&counters.bulk_requests, 1);
                next_id += 1;
                if !pool.send(Job {
                    id: next_id,
                    body: body.clone(),
                    items: docs.len(),
                }) {
                    return error!("the bulk request threads are gone");
                }
                out.insert(next_id, Flight::new(body, docs, false));
                active += 1;
                live += 1;
            }
        }
        if now >= publish_at {
            publish(bulk_metrics, &pace, &st, out.len(), &pause, now);
            publish_at = now + Duration::from_secs(1);
        }
        // Voided copies settle nothing: their answers need not be waited for.
        if !open && out.values().all(|f| f.void) && st.idle() && st.retries.is_empty() {
            publish(bulk_metrics, &pace, &st, 0, &pause, now);
            return;
        }
        // Wake for the next retry due, the pause's next step, the next straggler (to
        // uncount or hedge it on time), or 200 ms.
        let mut wake = now + Duration::from_millis(200);
        for f in out.values().filter(|f| !f.void) {
            let at = f.sent + straggler;
            if at > now {
                wake = wake.min(at);
            }
        }
        if let Some(due) = st.retries.next_due() {
            wake = wake.min(due);
        }
        for r in &st.resend {
            wake = wake.min(r.at.max(now));
        }
        match &pause {
            Some(p) if p.up => wake = wake.min(p.not_before),
            Some(p) if !p.probing => wake = wake.min(p.probe_at),
            _ => {}
        }
        // Take everything that is there before sending again, so requests fill up.
        let mut next = rx.recv_timeout(wake.saturating_duration_since(now));
        loop {
            match next {
                Ok(Input::Docs(batch)) => st.take(batch),
                Ok(Input::Answer(answer)) => {
                    let flight = out.remove(&answer.id);
                    let known = flight.is_some();
                    // A voided copy's answer settles nothing.
                    if let Some(mut flight) = flight.filter(|f| !f.void) {
                        answered_copy(
                            &mut out,
                            &mut flight,
                            answer.id,
                            answer.outcome.answered_items(),
                        );
                        let elapsed = answer.elapsed;
                        let verdict = settle(
                            &mut st, flight, answer, &mut dlq, &mut pace, metrics, health,
                        );
                        let now = Instant::now();
                        pace.observe(elapsed, verdict.signal, now);
                        if verdict.retried {
                            stats::add(&counters.bulk_retries, 1);
                        }
                        if verdict.answered {
                            failures_in_row = 0;
                        }
                        match verdict.failed {
                            Some((status, retry_after)) => {
                                failures_in_row += 1;
                                let alone = pause.is_none()
                                    && failures_in_row < PAUSE_AFTER_FAILURES
                                    && !matches!(status, 401 | 403);
                                let mut resend = verdict.resend;
                                if alone {
                                    let wait = delay(
                                        1,
                                        RETRY_BASE,
                                        RETRY_MAX,
                                        retry_after,
                                        &mut st.jitter,
                                    );
                                    debug!(status, reason = %verdict.reason, wait_ms = wait.as_millis() as u64, "bulk request failed whole; sent again on its own");
                                    if let Some(r) = &mut resend {
                                        r.at = now + wait;
                                    }
                                }
                                // Sent again as it was, before anything else.
                                if let Some(r) = resend {
                                    st.resend.push_front(r);
                                }
                                if !alone {
                                    if pause.is_none() {
                                        warn!(status, reason = %verdict.reason, documents = st.waiting(), "bulk requests failed; sending paused until Elasticsearch answers");
                                    }
                                    pause = Some(paused(
                                        pause.as_ref(),
                                        status,
                                        retry_after,
                                        &mut backoff,
                                        now,
                                    ));
                                }
                            }
                            None => {
                                backoff.reset();
                                // Elasticsearch answered a bulk request: it is there.
                                if verdict.answered {
                                    if let Some(p) = &mut pause {
                                        p.up = true;
                                    }
                                }
                            }
                        }
                    } else if !known {
                        error!(id = answer.id, "an answer to no request; ignored");
                    }
                }
                Ok(Input::Probe(probe)) => {
                    if let Some(p) = &mut pause {
                        p.probing = false;
                        match probe {
                            Probe::Up => p.up = true,
                            Probe::Down(why) => {
                                debug!(why = %why, "Elasticsearch still does not answer");
                                let jitter = backoff.jitter().below(PROBE_EVERY.as_millis() as u64);
                                p.probe_at = Instant::now()
                                    + PROBE_EVERY / 2
                                    + Duration::from_millis(jitter);
                            }
                        }
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

/// What one answer did.
struct Verdict {
    /// What it says about Elasticsearch's load.
    signal: Signal,
    /// Some documents go again.
    retried: bool,
    /// The request failed whole: (status, 0 for no answer; `Retry-After`).
    failed: Option<(u16, Option<Duration>)>,
    /// Elasticsearch answered for the items.
    answered: bool,
    /// Why the request failed whole.
    reason: String,
    /// Its body and documents, to send again.
    resend: Option<Resend>,
}

/// Settles the documents of one answer: delivered and dead-lettered ones are done, refused
/// ones are scheduled on their own; those of a request that failed whole come back in the
/// verdict, with its body, for the caller to send again when it decides.
#[allow(
    clippy::too_many_arguments,
    reason = "the answer, what it settles, and where the outcomes go"
)]
fn settle(
    st: &mut State<'_>,
    flight: Flight,
    answer: Answer,
    dlq: &mut DeadLetters,
    pace: &mut Pace,
    metrics: &crate::metrics::Metrics,
    health: &Health,
) -> Verdict {
    let Answer {
        outcome,
        retry_after,
        elapsed,
        ..
    } = answer;
    let Flight {
        body,
        docs,
        uncounted,
        ..
    } = flight;
    metrics.observe_bulk(elapsed.as_secs_f64());
    let now = Instant::now();
    let mut verdict = Verdict {
        signal: Signal::Clean,
        retried: false,
        failed: None,
        answered: false,
        reason: String::new(),
        resend: None,
    };
    let mut again = Vec::new();
    match outcome {
        Outcome::Items(items) => {
            let total = docs.len();
            let mut pressed = 0usize;
            for (mut doc, item) in docs.into_iter().zip(items) {
                match item {
                    Item::Delivered | Item::Duplicate => st.settle(doc),
                    Item::Retry { status } => {
                        pressed += 1;
                        metrics.bulk().retried(status, 1);
                        doc.attempts = doc.attempts.saturating_add(1);
                        st.detach(&mut doc);
                        let wait = delay(
                            doc.attempts,
                            RETRY_BASE,
                            RETRY_MAX,
                            retry_after,
                            &mut st.jitter,
                        );
                        st.retries.push(now + wait, now, doc);
                        verdict.retried = true;
                    }
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
                        st.settle(doc);
                    }
                }
            }
            pace.items(total, pressed);
            verdict.answered = true;
            health.sink_ok.store(true, Ordering::Relaxed);
        }
        Outcome::RetryAll { status, reason } => {
            health.sink_ok.store(false, Ordering::Relaxed);
            metrics.bulk().retried(status, docs.len());
            verdict.reason = reason;
            verdict.signal = match status {
                429 => Signal::Overloaded,
                // No answer (a dropped connection) or credentials: nothing about load.
                0 | 401 | 403 => Signal::Neutral,
                _ => Signal::Backpressure,
            };
            verdict.failed = Some((status, retry_after));
            verdict.retried = !docs.is_empty();
            // Not refused on their own: their attempt counts stay.
            if uncounted {
                for doc in &docs {
                    st.recount(doc);
                }
            }
            // The caller says when it goes again.
            if !docs.is_empty() {
                verdict.resend = Some(Resend {
                    body,
                    docs,
                    at: Instant::now(),
                });
            }
        }
        Outcome::TooLarge => {
            let limit_bytes = pace.too_large();
            warn!(
                limit_bytes,
                "bulk request too large for Elasticsearch; sending smaller ones"
            );
            verdict.signal = Signal::Neutral;
            again = docs;
        }
        Outcome::RejectAll {
            status,
            kind,
            reason,
        } => {
            error!(status, kind = %kind, reason = %reason, "Elasticsearch refused the request; its documents go to the dead-letter file");
            verdict.answered = true;
            let bytes: Vec<&[u8]> = docs.iter().map(|d| st.bytes(d)).collect();
            if dlq
                .write(&bytes, status, &kind, &reason, &now_rfc3339())
                .is_ok()
            {
                stats::add(&st.counters.dead_letters, docs.len() as u64);
                for d in docs {
                    st.settle(d);
                }
            } else {
                again = docs;
            }
        }
    }
    if !again.is_empty() {
        verdict.retried = true;
    }
    for mut doc in again.into_iter().rev() {
        doc.attempts = doc.attempts.saturating_add(1);
        if uncounted {
            st.recount(&doc);
        }
        st.queue.push_front(doc);
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts the calls that reach the body.
    struct Calls(Vec<usize>);

    impl Write for Calls {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.push(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn short_slices_reach_the_body_gathered_long_ones_alone_and_in_order() {
        let mut calls = Calls(Vec::new());
        let mut written = Vec::new();
        {
            let mut stage = Stage::new(&mut calls);
            for (i, len) in [100, 2000, 40_000, 300, 0, 31_000, 5000]
                .into_iter()
                .enumerate()
            {
                let text = vec![b'a' + i as u8; len];
                written.extend_from_slice(&text);
                stage.put(&text);
            }
            stage.finish();
        }
        // 100 + 2000 gathered, then the long one alone, then 300 + 31,000 + 5000 (past
        // 32 KiB with the last: written).
        assert_eq!(calls.0, vec![2100, 40_000, 36_300]);
        let mut body = Vec::new();
        let mut stage = Stage::new(&mut body);
        for (i, len) in [100, 2000, 40_000, 300, 0, 31_000, 5000]
            .into_iter()
            .enumerate()
        {
            stage.put(&vec![b'a' + i as u8; len]);
        }
        stage.finish();
        assert_eq!(body, written);
    }

    /// A batch of `n` documents of 100 bytes each (a 20-byte action, then 80 bytes) over
    /// `file`'s bytes `0..n*10`, holding `n * 100` of the budget.
    fn batch(n: u32) -> DocBatch {
        let mut docs = Vec::new();
        let mut ends = Vec::new();
        for i in 0..n {
            docs.extend_from_slice(&[b'a'; 20]);
            docs.extend_from_slice(&[b'0' + (i % 10) as u8; 79]);
            docs.push(b'\n');
            ends.push((i * 100 + 20, (i + 1) * 100));
        }
        DocBatch {
            file: 1,
            start: 0,
            end: u64::from(n) * 10,
            docs,
            count: u64::from(n),
            reserved: n as usize * 100,
            ends,
        }
    }

    #[test]
    fn refused_and_straggling_documents_give_the_budget_back_and_the_checkpoint_waits() {
        let (acks, budget, counters) = (Acks::default(), Budget::new(1 << 20), Counters::default());
        acks.register(1, 0);
        assert!(budget.acquire(1000, Duration::ZERO));
        let mut st = State::new(&acks, &budget, &counters, 1);
        st.take(batch(10));
        let mut body = Vec::new();
        let mut docs = st.fill(&mut body, 100, 1 << 20);
        assert_eq!(body.len(), 1000, "every action and document, once");
        // The request straggles: its documents stop counting.
        st.uncount(&docs);
        assert_eq!(budget.used(), 0);
        // Its answer: nine stored, one refused and detached with its own bytes.
        let mut refused = docs.pop().expect("ten documents");
        for d in docs {
            st.settle(d);
        }
        st.detach(&mut refused);
        assert_eq!(
            budget.used(),
            100,
            "the copy counts, the batch no longer does"
        );
        assert!(st.pending.get(&0).is_some_and(|p| p.batch.docs.is_empty()));
        assert_eq!(
            acks.watermark(1),
            Some(0),
            "the checkpoint waits for the refused one"
        );
        assert_eq!(st.bytes(&refused), [&[b'9'; 79][..]].concat());
        // Sent again on its own, and stored.
        st.queue.push_back(refused);
        let mut again = Vec::new();
        let docs = st.fill(&mut again, 100, 1 << 20);
        assert_eq!(again, [&[b'a'; 20][..], &[b'9'; 79], b"\n"].concat());
        for d in docs {
            st.settle(d);
        }
        assert_eq!(budget.used(), 0);
        assert_eq!(acks.watermark(1), Some(100));
        assert!(st.pending.is_empty());
    }

    /// `n` flights of one group of copies with documents of one batch, sent `ages` ago.
    fn group(st: &mut State<'_>, ages: &[u64], now: Instant) -> BTreeMap<u64, Flight> {
        st.take(batch(2));
        let docs = st.fill(&mut Vec::new(), 100, 1 << 20);
        let ids: Vec<u64> = (1..=ages.len() as u64).collect();
        ids.iter()
            .zip(ages)
            .map(|(&id, &age)| {
                let mut f = Flight::new(
                    Bytes::new(),
                    docs.iter().map(Doc::hedge_copy).collect(),
                    true,
                );
                f.sent = now - Duration::from_millis(age);
                f.twins = ids.iter().copied().filter(|&o| o != id).collect();
                (id, f)
            })
            .collect()
    }

    #[test]
    fn the_youngest_straggling_copy_is_hedged_while_the_group_may_grow() {
        let (acks, budget, counters) = (Acks::default(), Budget::new(1 << 20), Counters::default());
        let mut st = State::new(&acks, &budget, &counters, 1);
        let now = Instant::now();
        let after = Duration::from_millis(500);
        let mut alone = group(&mut st, &[600], now);
        assert_eq!(hedges_due(&alone, now, after, 8), vec![1]);
        assert_eq!(
            hedges_due(&alone, now, after, 0),
            Vec::<u64>::new(),
            "no free place"
        );
        alone.get_mut(&1).expect("flight").sent = now - Duration::from_millis(400);
        assert!(
            hedges_due(&alone, now, after, 8).is_empty(),
            "not a straggler yet"
        );
        alone.get_mut(&1).expect("flight").uncounted = false;
        alone.get_mut(&1).expect("flight").sent = now - Duration::from_millis(600);
        assert!(
            hedges_due(&alone, now, after, 8).is_empty(),
            "still counted"
        );
        let pair = group(&mut st, &[3000, 700], now);
        assert_eq!(
            hedges_due(&pair, now, after, 8),
            vec![2],
            "the copy, not the first"
        );
        let young = group(&mut st, &[3000, 200], now);
        assert!(
            hedges_due(&young, now, after, 8).is_empty(),
            "its copy is recent"
        );
        let full = group(&mut st, &[3000, 2000, 900], now);
        assert!(
            hedges_due(&full, now, after, 8).is_empty(),
            "MAX_COPIES out"
        );
    }

    #[test]
    fn the_first_answer_of_a_group_settles_and_voids_the_others() {
        let (acks, budget, counters) = (Acks::default(), Budget::new(1 << 20), Counters::default());
        let mut st = State::new(&acks, &budget, &counters, 1);
        let now = Instant::now();
        // Copy 2 answers for its items: 1 and 3 are voided, 2 keeps its documents.
        let mut out = group(&mut st, &[3000, 2000, 900], now);
        let mut two = out.remove(&2).expect("flight");
        answered_copy(&mut out, &mut two, 2, true);
        assert_eq!(two.docs.len(), 2);
        assert!(out.values().all(|f| f.void && f.docs.is_empty()));
        // Copy 2 fails whole: its documents wait for 1 and 3, which forget it.
        let mut out = group(&mut st, &[3000, 2000, 900], now);
        let mut two = out.remove(&2).expect("flight");
        answered_copy(&mut out, &mut two, 2, false);
        assert!(two.docs.is_empty());
        assert!(out.values().all(|f| !f.void && f.docs.len() == 2));
        assert_eq!(out[&1].twins, vec![3]);
        assert_eq!(out[&3].twins, vec![1]);
        // Then 1 fails whole too (3 is still out); then 3, the last copy out, keeps its
        // documents, to send again.
        let mut one = out.remove(&1).expect("flight");
        answered_copy(&mut out, &mut one, 1, false);
        assert!(one.docs.is_empty());
        let mut three = out.remove(&3).expect("flight");
        answered_copy(&mut out, &mut three, 3, false);
        assert_eq!(three.docs.len(), 2, "nothing else is out: it goes again");
    }

    #[test]
    fn a_stragglers_documents_sent_back_count_again() {
        let (acks, budget, counters) = (Acks::default(), Budget::new(1 << 20), Counters::default());
        acks.register(1, 0);
        assert!(budget.acquire(300, Duration::ZERO));
        let mut st = State::new(&acks, &budget, &counters, 1);
        st.take(batch(3));
        let docs = st.fill(&mut Vec::new(), 100, 1 << 20);
        st.uncount(&docs);
        assert_eq!(budget.used(), 0);
        for d in &docs {
            st.recount(d);
        }
        assert_eq!(budget.used(), 300);
        for d in docs {
            st.settle(d);
        }
        assert_eq!(budget.used(), 0);
        assert_eq!(acks.watermark(1), Some(30));
    }
}
