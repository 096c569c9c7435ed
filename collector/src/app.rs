//! `meshtrail run`: builds the stages and the bounded channels between them, handles
//! signals, and drains in order on shutdown.
//!
//! ```text
//! tail ──LineBatch──▶ workers (parse, classify, render) ──DocBatch──▶ sink ──▶ acks ──▶ checkpoint
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use anyhow::Context;
use meshtrail_parsers::envoy::{Hint, Parser};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use tracing::{error, info, warn};

use crate::ack::{Acks, Budget};
use crate::admin::{self, Health};
use crate::checkpoint::Store;
use crate::config::{Config, Settings};
use crate::document::{EventIds, Host, parse_event_id};
use crate::k8s::Kube;
use crate::metrics::{self, Metrics, Source, Tally};
use crate::pipeline::{FileContext, LineProcessor, Options};
use crate::sink::es::route::{RouteKey, Router};
use crate::sink::{Built, DocBatch, Input};
use crate::stats::{self, Counters};
use crate::tail::{FileMeta, LineBatch, TailOptions, Tailer};

/// Runs the agent until SIGTERM or SIGINT (or, with `once`, until every file is read).
pub fn run(config_path: Option<&Path>, once: bool) -> anyhow::Result<()> {
    let settings = load(config_path)?;
    info!(
        node = %settings.node_name,
        include = ?settings.tail.include,
        data_dir = %settings.data_dir.display(),
        sink = ?settings.sink,
        workers = settings.workers,
        "starting meshtrail"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .context("installing signal handlers")?;
    let handle = signals.handle();
    let stop_on_signal = stop.clone();
    let reload_path = config_path.map(Path::to_owned);
    let live = Arc::new(Live::new(&settings)?);
    let signal_thread = {
        let (live, running) = (live.clone(), settings.clone());
        std::thread::spawn(move || {
            let mut signals = signals;
            for sig in signals.forever() {
                if sig == SIGHUP {
                    reload(reload_path.as_deref(), &running, &live);
                    continue;
                }
                info!(
                    signal = sig,
                    "shutting down: reading stops, in-flight lines are flushed and checkpointed"
                );
                stop_on_signal.store(true, Ordering::Relaxed);
                break;
            }
        })
    };
    let result = run_until(&settings, &stop, once, live);
    handle.close();
    let _ = signal_thread.join();
    result
}

/// What a SIGHUP can change in a running agent: the tail stage's options and the formats.
pub struct Live {
    /// New tail options for the tailer to take.
    tail: Arc<Mutex<Option<TailOptions>>>,
    /// The parser the workers use for their next batch.
    parser: RwLock<Arc<Parser>>,
}

impl Live {
    /// The running configuration's tail options and parser.
    pub fn new(settings: &Settings) -> anyhow::Result<Live> {
        let parser = Parser::from_specs(settings.formats.iter().map(String::as_str))
            .context("pipeline.formats")?;
        Ok(Live {
            tail: Arc::new(Mutex::new(None)),
            parser: RwLock::new(Arc::new(parser)),
        })
    }

    fn parser(&self) -> Arc<Parser> {
        self.parser
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// SIGHUP: reads the configuration again; a bad one is refused and the running one kept.
/// Tail options and formats apply at once; what needs a restart is named.
fn reload(path: Option<&Path>, running: &Settings, live: &Live) {
    let new = match load(path) {
        Ok(s) => s,
        Err(e) => {
            error!(error = %format!("{e:#}"), "configuration reload refused; keeping the running one");
            return;
        }
    };
    let (tail, parser) = match (
        TailOptions::from_settings(&new.tail),
        Parser::from_specs(new.formats.iter().map(String::as_str)),
    ) {
        (Ok(t), Ok(p)) => (t, p),
        (Err(e), _) => {
            return error!(error = %e, "configuration reload refused; keeping the running one");
        }
        (_, Err(e)) => {
            return error!(error = %e, "configuration reload refused; keeping the running one");
        }
    };
    *live.tail.lock().unwrap_or_else(PoisonError::into_inner) = Some(tail);
    *live.parser.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(parser);
    let mut restart = Vec::new();
    if new.sink != running.sink {
        restart.push("sink");
    }
    if new.data_dir != running.data_dir {
        restart.push("data_dir");
    }
    if new.workers != running.workers {
        restart.push("pipeline.workers");
    }
    if new.max_in_flight_bytes != running.max_in_flight_bytes {
        restart.push("pipeline.max_in_flight_bytes");
    }
    if new.node_name != running.node_name || new.cluster_name != running.cluster_name {
        restart.push("node_name/cluster_name");
    }
    info!(formats = ?new.formats, include = ?new.tail.include, "configuration reloaded: tail options and formats applied");
    if !restart.is_empty() {
        warn!(fields = ?restart, "these changed fields apply at the next start");
    }
}

/// Reads and validates the configuration.
pub fn load(path: Option<&Path>) -> anyhow::Result<Settings> {
    let config = match path {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    Ok(config.validate(&|k| std::env::var(k).ok())?)
}

/// Runs the pipeline until `stop` is set, then drains.
pub fn run_until(
    settings: &Settings,
    stop: &AtomicBool,
    once: bool,
    live: Arc<Live>,
) -> anyhow::Result<()> {
    // One descriptor per tracked file: a node with a thousand containers needs more than the
    // usual soft limit of 1024.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => info!(limit = n, "open file limit"),
        Err(e) => warn!(error = %e, "cannot raise the open file limit"),
    }
    let counters = Arc::new(Counters::default());
    let acks = Arc::new(Acks::default());
    let budget = Arc::new(Budget::new(settings.max_in_flight_bytes));
    let health = Arc::new(Health::new());
    let metrics = Arc::new(Metrics::new(settings.max_series).context("registering metrics")?);
    let kube = match &settings.kubernetes {
        Some(k) => Some(Arc::new(Kube::start(
            k,
            &settings.node_name,
            metrics.registry(),
        )?)),
        None => None,
    };
    if let Some(addr) = settings.metrics_address {
        let state = admin::State {
            metrics: metrics.clone(),
            counters: counters.clone(),
            budget: budget.clone(),
            health: health.clone(),
        };
        admin::serve(addr, state).with_context(|| format!("metrics.address {addr}"))?;
    }
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating data_dir {}", settings.data_dir.display()))?;
    let mut opts = TailOptions::from_settings(&settings.tail).map_err(anyhow::Error::msg)?;
    opts.once = once;
    opts.reload = Some(live.tail.clone());
    let host = Arc::new(Host {
        node: settings.node_name.clone(),
        cluster: settings.cluster_name.clone(),
    });
    // Only ids written from this node and cluster say anything about our files.
    let prefix = format!("{:08x}", host.id_prefix());
    let store = Store::new(&settings.data_dir);
    let entries = store.load().unwrap_or_else(|e| {
        error!(error = %e, "checkpoint unusable");
        Vec::new()
    });
    let checkpointed: HashMap<u64, u64> = entries
        .iter()
        .filter_map(|e| Some((u64::from_str_radix(&e.fingerprint, 16).ok()?, e.offset)))
        .collect();
    let covered = |id: &str| {
        id.starts_with(&prefix)
            && parse_event_id(id)
                .is_some_and(|(fp, off)| checkpointed.get(&fp).is_some_and(|c| off < *c))
    };
    let (sink, delivered) =
        crate::sink::build(&settings.sink, &covered).context("opening the sink")?;
    let mut already: HashMap<u64, Vec<u64>> = HashMap::new();
    for (fp, offset) in delivered
        .iter()
        .filter(|id| id.starts_with(&prefix))
        .filter_map(|id| parse_event_id(id))
    {
        already.entry(fp).or_default().push(offset);
    }
    let already: HashMap<u64, Arc<Vec<u64>>> = already
        .into_iter()
        .map(|(fp, mut offsets)| {
            offsets.sort_unstable();
            offsets.dedup();
            (fp, Arc::new(offsets))
        })
        .collect();
    if !already.is_empty() {
        info!(
            files = already.len(),
            "the sink already holds lines of these files; they are not written again"
        );
    }
    if let (Some(k), Some(ks)) = (&kube, &settings.kubernetes) {
        k.wait_synced(ks.initial_sync_timeout);
    }
    let tailer = Tailer::new(
        opts,
        store,
        entries,
        already,
        acks.clone(),
        budget.clone(),
        counters.clone(),
    )
    .with_health(health.clone());

    let (line_tx, line_rx) = sync_channel::<LineBatch>(settings.workers * 4);
    let (doc_tx, doc_rx) = sync_channel::<Input>(settings.workers * 4);
    let line_rx = Arc::new(Mutex::new(line_rx));
    let options = Options {
        keep_original: settings.keep_original,
        no_documents: !sink.wants_documents(),
    };
    // For Elasticsearch, the workers write each document's bulk action too.
    let router = match &sink {
        Built::Elasticsearch(es) => Some(Arc::new(Router::new(
            es.cfg.routes.clone(),
            es.cfg.destination.clone(),
        ))),
        Built::Local(_) => None,
    };

    let workers: Vec<_> = (0..settings.workers)
        .map(|n| {
            let (rx, tx, live, counters) = (
                line_rx.clone(),
                doc_tx.clone(),
                live.clone(),
                counters.clone(),
            );
            let enrich = Enrich {
                host: host.clone(),
                metrics: metrics.clone(),
                kube: kube.clone(),
                router: router.clone(),
                budget: budget.clone(),
            };
            std::thread::Builder::new()
                .name(format!("meshtrail-worker-{n}"))
                .spawn(move || worker(&rx, &tx, &live, options, &enrich, &counters))
        })
        .collect::<Result<_, _>>()
        .context("starting workers")?;
    let sink_stop = Arc::new(AtomicBool::new(false));
    let sink_thread = {
        let metrics = metrics.clone();
        let (acks, budget, counters, health, stop, answers) = (
            acks.clone(),
            budget.clone(),
            counters.clone(),
            health.clone(),
            sink_stop.clone(),
            doc_tx.clone(),
        );
        std::thread::Builder::new()
            .name("meshtrail-sink".into())
            .spawn(move || match sink {
                Built::Local(sink) => sink_loop(sink, &doc_rx, &acks, &budget, &counters, &health),
                Built::Elasticsearch(es) => crate::sink::es::sink::run(
                    *es, &doc_rx, &answers, &acks, &budget, &counters, &metrics, &health, &stop,
                ),
            })?
    };

    tailer.run(line_tx, stop, settings.shutdown_timeout);
    // The tailer waited for acknowledgements until the deadline: a sink still retrying
    // stops now, and what it holds is read again at the next start.
    sink_stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    let _ = doc_tx.send(Input::End);
    drop(doc_tx);
    let _ = sink_thread.join();
    let snapshot = counters.snapshot();
    info!(counters = ?snapshot, "stopped");
    Ok(())
}

/// What a worker adds to lines besides their parse: where they were read, and the metrics
/// they count in.
struct Enrich {
    host: Arc<Host>,
    metrics: Arc<Metrics>,
    kube: Option<Arc<Kube>>,
    /// Where documents go, when the sink takes bulk actions.
    router: Option<Arc<Router>>,
    /// The in-flight budget: a batch's documents replace its lines in it.
    budget: Arc<Budget>,
}

fn worker(
    rx: &Mutex<Receiver<LineBatch>>,
    tx: &SyncSender<Input>,
    live: &Live,
    options: Options,
    enrich: &Enrich,
    counters: &Counters,
) {
    let metrics = &enrich.metrics;
    let mut processor = LineProcessor::new(live.parser(), options);
    // Document bytes per line byte (per mille), as last seen: buffers are sized once.
    let mut expansion = 4000;
    loop {
        let batch = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(p) => p.into_inner().recv(),
        };
        let Ok(batch) = batch else { return };
        // A SIGHUP may have brought new formats.
        let current = live.parser();
        if !Arc::ptr_eq(&current, processor.parser()) {
            processor = LineProcessor::new(current, options);
        }
        let before = processor.stats.clone();
        let out = render(&batch, &mut processor, enrich, &mut expansion);
        for ((format, after), (_, before)) in processor.stats.access.iter().zip(&before.access) {
            metrics.access_events(format, after - before);
        }
        let after = &processor.stats;
        let access = |s: &crate::pipeline::Stats| s.access.iter().map(|(_, n)| n).sum::<u64>();
        stats::add(&counters.events_access, access(after) - access(&before));
        stats::add(
            &counters.events_container,
            after.container - before.container,
        );
        stats::add(
            &counters.parse_failures,
            after.parse_errors - before.parse_errors,
        );
        stats::add(
            &counters.lines_truncated,
            after.truncated - before.truncated,
        );
        let reserved = out.docs.capacity() + out.ends.capacity() * 8;
        enrich.budget.observe(batch.data.len(), reserved);
        enrich.budget.exchange(batch.reserved, reserved);
        let out = DocBatch {
            file: batch.file.id,
            start: batch.start,
            end: batch.end,
            count: batch.lines.len() as u64,
            docs: out.docs,
            ends: out.ends,
            reserved,
        };
        drop(batch);
        if tx.send(Input::Docs(out)).is_err() {
            return;
        }
    }
}

/// A batch's documents (for Elasticsearch, each after its bulk action) and, for
/// Elasticsearch, where each action and document ends ([`DocBatch::ends`]).
struct Rendered {
    docs: Vec<u8>,
    ends: Vec<(u32, u32)>,
}

/// Renders the batch's documents into buffers sized by `expansion`, which it updates.
fn render(
    batch: &LineBatch,
    processor: &mut LineProcessor,
    enrich: &Enrich,
    expansion: &mut usize,
) -> Rendered {
    let mut docs = Vec::with_capacity(batch.data.len() * *expansion / 1000 + 4096);
    let mut hint = Hint::default();
    let file: &FileMeta = &batch.file;
    let (pod, container) = (file.kube.pod.as_deref(), file.kube.container.as_deref());
    let view = enrich.kube.as_ref().and_then(|k| {
        let view = k.store.lookup(&file.kube);
        if view.is_none() {
            k.metrics.unenriched.inc_by(batch.lines.len() as u64);
        }
        view
    });
    let role = match (&view, container) {
        (Some(v), Some(c)) => v.pod.role(c),
        _ => metrics::role_from_path(pod, container),
    };
    let route = RouteKey {
        gateway: role,
        namespace: match &view {
            Some(v) => Some(v.pod.namespace.clone()),
            None => file.kube.namespace.clone(),
        },
    };
    let namespace = route
        .namespace
        .clone()
        .unwrap_or_else(|| "unknown".to_owned());
    let workload = match &view {
        Some(v) => v.pod.workload.clone(),
        None => pod.map_or_else(|| "unknown".to_owned(), metrics::workload_from_pod),
    };
    let mut tally = Tally::new(Source {
        gateway: role.map_or("unknown", |r| r.as_str()),
        namespace,
        workload,
    });
    let mut ctx = FileContext {
        path: Some(&file.path),
        kube: Some(&file.kube),
        pod: view.as_ref(),
        ids: file
            .fingerprint
            .get()
            .map(|fp| EventIds::new(enrich.host.id_prefix(), *fp)),
        host: Some(&enrich.host),
        role,
        peers: enrich
            .kube
            .as_ref()
            .filter(|k| k.enrich_peers)
            .map(|k| &*k.store),
        pre: None,
    };
    let pre = ctx.prerender();
    ctx.pre = Some(&pre);
    let destination = enrich.router.as_ref().map(|r| r.destination(&route));
    let mut ends = match destination {
        Some(_) => Vec::with_capacity(batch.lines.len()),
        None => Vec::new(),
    };
    for line in &batch.lines {
        let joined = batch.joined(line);
        let at = docs.len();
        let written = processor.process(&joined, &ctx, &mut hint, &mut tally, &mut docs);
        if let Some(d) = destination {
            // Documents open with their `@timestamp` when they have one; its date names a
            // daily index.
            let date: Option<[u8; 10]> = docs[at..]
                .strip_prefix(br#"{"@timestamp":""#)
                .and_then(|t| t.get(..10))
                .and_then(|t| t.try_into().ok());
            let doc_end = docs.len();
            d.push_action(
                &mut docs,
                written.dataset,
                date.as_ref().map(|d| &d[..]),
                written.id.as_ref().map(|i| &i[..]),
            );
            // The action goes before its document: a short move of bytes still in cache,
            // which lets the sink hand whole runs of documents to the compressor.
            let action = docs.len() - doc_end;
            docs[at..].rotate_right(action);
            ends.push(((at + action) as u32, docs.len() as u32));
        }
    }
    enrich.metrics.record(&tally);
    if !docs.is_empty() {
        *expansion = (docs.len() * 1050 / batch.data.len().max(1)).clamp(1000, 50_000);
    }
    Rendered { docs, ends }
}

fn sink_loop(
    mut sink: Box<dyn crate::sink::Sink>,
    rx: &Receiver<Input>,
    acks: &Acks,
    budget: &Budget,
    counters: &Counters,
    health: &Health,
) {
    let mut backoff = crate::backoff::Backoff::new(
        Duration::from_millis(100),
        Duration::from_secs(10),
        u64::from(std::process::id()),
    );
    for input in rx {
        let batch = match input {
            Input::Docs(batch) => batch,
            Input::Answer(_) | Input::Probe(_) => continue,
            Input::End => break,
        };
        // Nothing is dropped: a failing write is retried until it succeeds or the process
        // stops, and the checkpoint stays before it meanwhile.
        while let Err(e) = sink.write_batch(&batch.docs) {
            health.sink_ok.store(false, Ordering::Relaxed);
            stats::add(&counters.sink_retries, 1);
            let wait = backoff.next(None);
            error!(error = %e, retry_in_ms = wait.as_millis() as u64, "sink write failed");
            std::thread::sleep(wait);
        }
        backoff.reset();
        health.sink_ok.store(true, Ordering::Relaxed);
        acks.ack(batch.file, batch.start, batch.end);
        budget.release(batch.reserved);
        stats::add(&counters.events_acked, batch.count);
    }
}
