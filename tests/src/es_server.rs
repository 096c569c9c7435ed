//! An Elasticsearch test server that follows the documented API and its failure modes
//! (rules and real bodies in `shared/reference/api-fixtures/es/`): `GET /`, `_bulk` with
//! gzip bodies, `create` semantics on `_id` (409 when it exists), one result per item in
//! request order, data streams that accept only `create`, templates and ILM acknowledged,
//! `_refresh`, `_count`, basic/API-key authentication; and scriptable faults: everything
//! 429, some items 429 or 503, 5xx, slow answers, the connection dropped after the
//! documents were stored. Requests are parsed in parallel on tokio's blocking pool and
//! stored under one lock, so the server is not what a benchmark measures. With
//! [`EsServer::start_opensearch`] it answers as OpenSearch 2.x: ISM policies instead of
//! ILM, `flat_object` instead of `flattened`, no `index.lifecycle.*` settings.

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use crate::listener::Listener;

/// Faults the next requests meet.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Answer every `_bulk` with this whole-request status (429, 503…), storing nothing.
    pub reject_all: Option<u16>,
    /// Every `n`th item (1-based count over all items) answers this status instead of being
    /// stored.
    pub item_every: Option<(u64, u16)>,
    /// Wait this long before answering.
    pub delay: Option<Duration>,
    /// Store the documents, then drop the connection without an answer.
    pub drop_after_store: bool,
    /// Documents whose JSON holds this text are refused as mapping errors (400).
    pub mapping_error_on: Option<String>,
    /// Close every new connection unanswered: Elasticsearch down.
    pub down: bool,
    /// Faults drawn at random, at rates: a cluster under write pressure.
    pub pressure: Option<Pressure>,
    /// Refuse the next this many `_bulk` requests whole with 429, then take them again.
    pub refuse_next: u32,
}

/// What a cluster whose write thread pools are full does, at random (from a seed, so a run
/// can be repeated): some items of each `_bulk` refused with 429
/// `es_rejected_execution_exception` or 503, some requests refused whole with 429, some
/// answers slow, some lost after the documents were stored.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pressure {
    /// Share of items refused, half 429 `es_rejected_execution_exception`, half 503.
    pub item_rejected: f64,
    /// Share of `_bulk` requests refused whole with 429 (indexing pressure), storing nothing.
    pub request_429: f64,
    /// Share of answers held back by `slow_delay`.
    pub slow: f64,
    /// How long a slow answer is held back.
    pub slow_delay: Duration,
    /// Share of `_bulk` requests whose documents are stored and whose answer is lost (the
    /// connection drops).
    pub lost: f64,
    /// Seeds the draws.
    pub seed: u64,
}

impl Faults {
    /// Reads faults from text, as the `es-test-server` binary takes them: words separated by
    /// spaces, commas or newlines, `down`, `items=0.03`, `request_429=0.05`, `slow=0.03`,
    /// `slow_ms=3000`, `lost=0.03`, `seed=N`; empty text means no fault.
    pub fn parse(text: &str) -> Result<Faults, String> {
        let mut f = Faults::default();
        let mut p = Pressure {
            slow_delay: Duration::from_secs(3),
            seed: 1,
            ..Pressure::default()
        };
        let mut pressure = false;
        for word in text.split(|c: char| c == ',' || c.is_whitespace()) {
            if word.is_empty() {
                continue;
            }
            if word == "down" {
                f.down = true;
                continue;
            }
            let (key, value) = word
                .split_once('=')
                .ok_or_else(|| format!("{word}: expected key=value or down"))?;
            let share = || -> Result<f64, String> {
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|v| (0.0..=1.0).contains(v))
                    .ok_or_else(|| format!("{word}: expected a share from 0 to 1"))
            };
            let whole = || -> Result<u64, String> {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("{word}: expected a whole number"))
            };
            pressure = true;
            match key {
                "items" => p.item_rejected = share()?,
                "request_429" => p.request_429 = share()?,
                "slow" => p.slow = share()?,
                "slow_ms" => p.slow_delay = Duration::from_millis(whole()?),
                "lost" => p.lost = share()?,
                "seed" => p.seed = whole()?,
                _ => return Err(format!("{word}: unknown fault {key}")),
            }
        }
        if pressure {
            f.pressure = Some(p);
        }
        Ok(f)
    }
}

/// xorshift64*: the draws of [`Pressure`].
fn draw(state: &mut u64) -> f64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
}

#[derive(Default)]
struct Store {
    /// index → id → document.
    docs: HashMap<String, HashMap<String, Value>>,
    faults: Faults,
    items_seen: u64,
    /// The state of [`Pressure`]'s draws.
    rng: u64,
    credentials: Option<String>,
    /// Keep documents (tests read them); off for benchmarks, where only ids are kept.
    keep_docs: bool,
    /// Behave as OpenSearch 2.x: ISM instead of ILM, `flat_object` instead of `flattened`,
    /// no `index.lifecycle.*` settings.
    opensearch: bool,
    /// Policies and templates accepted, by path, in order.
    installed: Vec<String>,
    /// Request body bytes received, as sent (compressed when gzip).
    body_bytes: u64,
    /// For each stored document with an `event.created`, how long after that time it
    /// arrived, in microseconds: the freshness a benchmark reports.
    freshness_us: Vec<u64>,
}

/// Microseconds since the epoch of an RFC 3339 UTC time (`2026-11-24T10:00:00.123456789Z`).
pub fn unix_micros(t: &str) -> Option<u64> {
    let b = t.as_bytes();
    if b.len() < 20 || b[10] != b'T' || !t.ends_with('Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let frac = t.get(20..t.len() - 1).unwrap_or("");
    let micros: i64 = format!("{:0<6}", frac.get(..frac.len().min(6)).unwrap_or(""))
        .parse()
        .unwrap_or(0);
    u64::try_from(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1_000_000) + micros).ok()
}

/// A running server; stops when dropped.
pub struct EsServer {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    store: Arc<Mutex<Store>>,
    /// `_bulk` requests received.
    pub bulk_requests: Arc<AtomicU64>,
    /// The most `_bulk` requests that were in flight at once.
    pub max_bulk_in_flight: Arc<AtomicU64>,
    _listener: Listener,
}

fn json_response(status: u16, body: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    h.insert(
        "content-type",
        "application/json; charset=UTF-8".parse().unwrap(),
    );
    h.insert("x-elastic-product", "Elasticsearch".parse().unwrap());
    r
}

fn error(status: u16, kind: &str, reason: &str) -> Value {
    json!({"error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason}, "status": status})
}

/// What a request did.
enum Reply {
    Respond(Response<Full<Bytes>>),
    /// Close the connection without answering.
    Drop,
}

/// One `_bulk` item, read before the store is locked.
struct Parsed<'a> {
    op: String,
    index: String,
    id: Option<String>,
    line: &'a str,
    /// The document, or why it is not JSON.
    doc: Result<Option<Value>, String>,
    /// `event.created`, microseconds since the epoch.
    created: Option<u64>,
}

/// What a benchmark needs of a document: that it is JSON, and its `event.created`.
#[derive(serde::Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    event: Option<EventHead<'a>>,
}

#[derive(serde::Deserialize)]
struct EventHead<'a> {
    #[serde(borrow)]
    created: Option<std::borrow::Cow<'a, str>>,
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Parses the body (no lock held: requests are parsed in parallel, as Elasticsearch's
/// coordinating nodes do), then applies the items under the store's lock, in order.
fn bulk(
    store: &Mutex<Store>,
    path_index: Option<&str>,
    body: &[u8],
    filter: Option<&str>,
) -> Reply {
    let (faults, keep, refuse_whole, lose_answer) = {
        let mut st = lock(store);
        let (refuse, lose) = match st.faults.pressure.clone() {
            Some(p) => (
                draw(&mut st.rng) < p.request_429,
                draw(&mut st.rng) < p.lost,
            ),
            None => (false, false),
        };
        let refuse = refuse || st.faults.refuse_next > 0;
        st.faults.refuse_next = st.faults.refuse_next.saturating_sub(1);
        (st.faults.clone(), st.keep_docs, refuse, lose)
    };
    let reject_all = faults.reject_all.or(refuse_whole.then_some(429));
    if let Some(status) = reject_all {
        let (kind, reason) = match status {
            429 => (
                "es_rejected_execution_exception",
                "rejected execution of coordinating operation [test server]",
            ),
            _ => (
                "unavailable_shards_exception",
                "the test server is failing on purpose",
            ),
        };
        return Reply::Respond(json_response(status, &error(status, kind, reason)));
    }
    let text = String::from_utf8_lossy(body);
    let mut lines = text
        .split('\n')
        .filter(|l| !l.trim().is_empty())
        .enumerate();
    let mut parsed = Vec::new();
    while let Some((n, action_line)) = lines.next() {
        let Ok(action) = serde_json::from_str::<Value>(action_line) else {
            let reason = format!(
                "Malformed action/metadata line [{}], expected START_OBJECT or END_OBJECT but found [VALUE_STRING]",
                n + 1
            );
            return Reply::Respond(json_response(
                400,
                &error(400, "illegal_argument_exception", &reason),
            ));
        };
        let Some((op, meta)) = action.as_object().and_then(|o| o.iter().next()) else {
            return Reply::Respond(json_response(
                400,
                &error(400, "illegal_argument_exception", "empty action"),
            ));
        };
        let Some((_, line)) = lines.next() else {
            return Reply::Respond(json_response(
                400,
                &error(
                    400,
                    "illegal_argument_exception",
                    "The bulk request must be terminated by a newline [\\n]",
                ),
            ));
        };
        let (doc, created) = if keep {
            match serde_json::from_str::<Value>(line) {
                Ok(v) => {
                    let created = v["event"]["created"].as_str().and_then(unix_micros);
                    (Ok(Some(v)), created)
                }
                Err(e) => (Err(e.to_string()), None),
            }
        } else {
            match serde_json::from_str::<Head<'_>>(line) {
                Ok(h) => (
                    Ok(None),
                    h.event
                        .and_then(|e| e.created)
                        .and_then(|c| unix_micros(&c)),
                ),
                Err(e) => (Err(e.to_string()), None),
            }
        };
        parsed.push(Parsed {
            op: op.clone(),
            index: meta["_index"]
                .as_str()
                .or(path_index)
                .unwrap_or("_none")
                .to_owned(),
            id: meta["_id"].as_str().map(str::to_owned),
            line,
            doc,
            created,
        });
    }
    // Under the lock: create semantics, item faults, storage. Answers are rendered after.
    let mut results: Vec<Result<String, (u16, &str, String)>> = Vec::with_capacity(parsed.len());
    {
        let mut st = lock(store);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        for p in &mut parsed {
            st.items_seen += 1;
            let seen = st.items_seen;
            let pressed = match &faults.pressure {
                Some(p) if p.item_rejected > 0.0 => {
                    let d = draw(&mut st.rng);
                    (d < p.item_rejected).then(|| if d < p.item_rejected / 2.0 { 429 } else { 503 })
                }
                _ => None,
            };
            let result = if let Some(status) = faults
                .item_every
                .filter(|(every, _)| seen % every == 0)
                .map(|(_, status)| status)
                .or(pressed)
            {
                let kind = if status == 429 {
                    "es_rejected_execution_exception"
                } else {
                    "unavailable_shards_exception"
                };
                Err((
                    status,
                    kind,
                    "the test server refuses this item on purpose".to_owned(),
                ))
            } else if p.op != "create" && p.index.starts_with("logs-") {
                Err((
                    400,
                    "illegal_argument_exception",
                    "only write ops with an op_type of create are allowed in data streams"
                        .to_owned(),
                ))
            } else if faults
                .mapping_error_on
                .as_deref()
                .is_some_and(|t| p.line.contains(t))
            {
                Err((
                    400,
                    "document_parsing_exception",
                    "[1:1] failed to parse field [url.port] of type [long]".to_owned(),
                ))
            } else {
                match &mut p.doc {
                    Err(e) => Err((
                        400,
                        "document_parsing_exception",
                        format!("[1:1] failed to parse: {e}"),
                    )),
                    Ok(doc) => {
                        let id = p.id.clone().unwrap_or_else(|| format!("auto{seen}"));
                        let docs = st.docs.entry(p.index.clone()).or_default();
                        if p.op == "create" && docs.contains_key(&id) {
                            let reason = format!(
                                "[{id}]: version conflict, document already exists (current version [1])"
                            );
                            Err((409, "version_conflict_engine_exception", reason))
                        } else {
                            docs.insert(id.clone(), doc.take().unwrap_or(Value::Null));
                            if let Some(created) = p.created {
                                st.freshness_us.push(now.saturating_sub(created));
                            }
                            Ok(id)
                        }
                    }
                }
            };
            results.push(result);
        }
    }
    if faults.drop_after_store || lose_answer {
        return Reply::Drop;
    }
    let patterns: Option<Vec<Vec<&str>>> =
        filter.map(|f| f.split(',').map(|p| p.split('.').collect()).collect());
    let keys = match &patterns {
        None => Some(ItemKeys::all()),
        Some(p) => ItemKeys::from_patterns(p),
    };
    let errors = results.iter().any(Result::is_err);
    let Some(keys) = keys else {
        // A filter of another shape: render whole, then filter generically.
        let r = render_bulk(&parsed, &results, errors, &ItemKeys::all());
        return Reply::Respond(filtered(r, filter.unwrap_or_default()));
    };
    Reply::Respond(render_bulk(&parsed, &results, errors, &keys))
}

type ItemResult<'a> = Result<String, (u16, &'a str, String)>;

/// What of a `_bulk` answer a `filter_path` keeps, for the shapes that name top-level keys
/// and keys of every item (`errors`, `items.*.status`): rendered directly, without building
/// the whole answer first.
struct ItemKeys {
    top: Vec<String>,
    /// `None`: whole items.
    item: Option<Vec<String>>,
}

impl ItemKeys {
    fn all() -> ItemKeys {
        ItemKeys {
            top: vec!["errors".into(), "took".into(), "items".into()],
            item: None,
        }
    }

    fn from_patterns(patterns: &[Vec<&str>]) -> Option<ItemKeys> {
        let mut keys = ItemKeys {
            top: Vec::new(),
            item: Some(Vec::new()),
        };
        for p in patterns {
            match p.as_slice() {
                ["items"] | ["items", "*"] => {
                    keys.top.push("items".into());
                    keys.item = None;
                }
                [k] if !k.contains('*') => keys.top.push((*k).to_owned()),
                ["items", "*", k] if !k.contains('*') => {
                    keys.top.push("items".into());
                    if let Some(item) = &mut keys.item {
                        item.push((*k).to_owned());
                    }
                }
                _ => return None,
            }
        }
        Some(keys)
    }

    fn top(&self, k: &str) -> bool {
        self.top.iter().any(|t| t == k)
    }
}

fn render_bulk(
    parsed: &[Parsed<'_>],
    results: &[ItemResult<'_>],
    errors: bool,
    keys: &ItemKeys,
) -> Response<Full<Bytes>> {
    let mut top = Vec::new();
    if keys.top("errors") {
        top.push(format!(r#""errors":{errors}"#));
    }
    if keys.top("took") {
        top.push(r#""took":1"#.to_owned());
    }
    if keys.top("items") {
        let mut items = Vec::with_capacity(parsed.len());
        for (p, r) in parsed.iter().zip(results) {
            let index = quoted(&p.index);
            let fields: Vec<(&str, String)> = match r {
                Ok(id) => vec![
                    ("_index", index),
                    ("_id", quoted(id)),
                    ("_version", "1".into()),
                    ("result", r#""created""#.into()),
                    ("_shards", r#"{"total":1,"successful":1,"failed":0}"#.into()),
                    ("_seq_no", "0".into()),
                    ("_primary_term", "1".into()),
                    ("status", "201".into()),
                ],
                Err((status, kind, reason)) => vec![
                    ("_index", index.clone()),
                    ("_id", p.id.as_deref().map_or("null".to_owned(), quoted)),
                    ("status", status.to_string()),
                    (
                        "error",
                        format!(
                            r#"{{"type":{},"reason":{},"index":{index}}}"#,
                            quoted(kind),
                            quoted(reason)
                        ),
                    ),
                ],
            };
            let kept: Vec<String> = fields
                .into_iter()
                .filter(|(k, _)| keys.item.as_ref().is_none_or(|i| i.iter().any(|x| x == k)))
                .map(|(k, v)| format!("{}:{v}", quoted(k)))
                .collect();
            // An item left empty is dropped, as Elasticsearch does.
            if !kept.is_empty() {
                items.push(format!("{{{}:{{{}}}}}", quoted(&p.op), kept.join(",")));
            }
        }
        if !items.is_empty() {
            top.push(format!(r#""items":[{}]"#, items.join(",")));
        }
    }
    let mut r = json_response(200, &Value::Null);
    *r.body_mut() = Full::new(Bytes::from(format!("{{{}}}", top.join(","))));
    r
}

/// `GET /`: who answers (`api-fixtures/es/root-info-*.json`).
fn root_info(opensearch: bool) -> Value {
    if opensearch {
        return json!({
            "name": "meshtrail-test", "cluster_name": "opensearch", "cluster_uuid": "test",
            "version": {"distribution": "opensearch", "number": "2.13.0", "build_type": "tar", "lucene_version": "9.10.0",
                        "minimum_wire_compatibility_version": "7.10.0", "minimum_index_compatibility_version": "7.0.0"},
            "tagline": "The OpenSearch Project: https://opensearch.org/"});
    }
    json!({
        "name": "meshtrail-test", "cluster_name": "test", "cluster_uuid": "test",
        "version": {"number": "8.12.1", "build_flavor": "default", "build_type": "docker", "lucene_version": "9.9.2",
                    "minimum_wire_compatibility_version": "7.17.0", "minimum_index_compatibility_version": "7.0.0"},
        "tagline": "You Know, for Search"})
}

/// A field type the server's distribution lacks, in a template body: `(field, type)`.
fn foreign_type(v: &Value, opensearch: bool, field: &str) -> Option<(String, String)> {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(t)) = map.get("type") {
                let foreign = if opensearch {
                    t == "flattened"
                } else {
                    t == "flat_object"
                };
                if foreign {
                    return Some((field.to_owned(), t.clone()));
                }
            }
            map.iter()
                .find_map(|(k, child)| foreign_type(child, opensearch, k))
        }
        Value::Array(items) => items
            .iter()
            .find_map(|c| foreign_type(c, opensearch, field)),
        _ => None,
    }
}

/// `PUT` of a policy or template: refused as the distribution would refuse it, else
/// acknowledged and recorded.
fn install(store: &Mutex<Store>, path: &str, body: &[u8]) -> Reply {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Reply::Respond(json_response(
            400,
            &error(400, "x_content_parse_exception", "request body is not JSON"),
        ));
    };
    let opensearch = lock(store).opensearch;
    if let Some((field, t)) = foreign_type(&v, opensearch, "") {
        let reason = format!("No handler for type [{t}] declared on field [{field}]");
        return Reply::Respond(json_response(
            400,
            &error(400, "mapper_parsing_exception", &reason),
        ));
    }
    let settings = &v["template"]["settings"];
    if opensearch
        && settings
            .as_object()
            .is_some_and(|o| o.keys().any(|k| k.starts_with("index.lifecycle.")))
    {
        return Reply::Respond(json_response(
            400,
            &error(
                400,
                "illegal_argument_exception",
                "unknown setting [index.lifecycle.name] please check that any required plugins are installed, or check the breaking changes documentation for removed settings",
            ),
        ));
    }
    lock(store).installed.push(path.to_owned());
    Reply::Respond(json_response(200, &json!({"acknowledged": true})))
}

/// Applies `filter_path` (comma-separated dotted paths, `*` matching any one key; arrays
/// are transparent, and objects left empty are dropped, from arrays too) to a JSON answer,
/// as Elasticsearch's common options describe it.
fn filtered(r: Response<Full<Bytes>>, filter: &str) -> Response<Full<Bytes>> {
    let (parts, body) = r.into_parts();
    let bytes = ready_bytes(body);
    let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, Full::new(bytes));
    };
    let patterns: Vec<Vec<&str>> = filter.split(',').map(|p| p.split('.').collect()).collect();
    let kept = keep(&v, &patterns).unwrap_or_else(|| json!({}));
    Response::from_parts(parts, Full::new(Bytes::from(kept.to_string())))
}

/// The bytes of a `Full` body, which is ready at once.
fn ready_bytes(body: Full<Bytes>) -> Bytes {
    use hyper::body::Body;
    let mut body = std::pin::pin!(body);
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    match body.as_mut().poll_frame(&mut cx) {
        std::task::Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
        _ => Bytes::new(),
    }
}

fn keep(v: &Value, patterns: &[Vec<&str>]) -> Option<Value> {
    match v {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, child) in map {
                let tails: Vec<Vec<&str>> = patterns
                    .iter()
                    .filter(|p| p.first().is_some_and(|s| *s == "*" || s == k))
                    .map(|p| p[1..].to_vec())
                    .collect();
                if tails.is_empty() {
                    continue;
                }
                if tails.iter().any(Vec::is_empty) {
                    out.insert(k.clone(), child.clone());
                } else if let Some(c) = keep(child, &tails) {
                    out.insert(k.clone(), c);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        Value::Array(items) => {
            let kept: Vec<Value> = items.iter().filter_map(|i| keep(i, patterns)).collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        _ => None,
    }
}

fn lock(store: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    store
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One request; `filter` is its `filter_path`, applied to the answer.
fn handle(
    store: &Mutex<Store>,
    method: &str,
    path: &str,
    auth: Option<&str>,
    gzip: bool,
    body: &[u8],
    filter: Option<&str>,
) -> Reply {
    match answer(store, method, path, auth, gzip, body, filter) {
        // `_bulk` answers come filtered already.
        Reply::Respond(r) if !path.ends_with("_bulk") => Reply::Respond(match filter {
            Some(f) => filtered(r, f),
            None => r,
        }),
        reply => reply,
    }
}

#[allow(clippy::too_many_arguments, reason = "the parts of a request")]
fn answer(
    store: &Mutex<Store>,
    method: &str,
    path: &str,
    auth: Option<&str>,
    gzip: bool,
    body: &[u8],
    filter: Option<&str>,
) -> Reply {
    let credentials = {
        let mut st = lock(store);
        st.body_bytes += body.len() as u64;
        st.credentials.clone()
    };
    if let Some(expected) = &credentials {
        if auth != Some(expected.as_str()) {
            let reason = format!("missing authentication credentials for REST request [{path}]");
            let mut r = json_response(401, &error(401, "security_exception", &reason));
            r.headers_mut().insert(
                "www-authenticate",
                "Basic realm=\"security\", charset=\"UTF-8\""
                    .parse()
                    .unwrap(),
            );
            return Reply::Respond(r);
        }
    }
    let mut decoded = Vec::new();
    let body = if gzip {
        if flate2::read::GzDecoder::new(body)
            .read_to_end(&mut decoded)
            .is_err()
        {
            return Reply::Respond(json_response(
                400,
                &error(400, "parse_exception", "invalid gzip body"),
            ));
        }
        &decoded[..]
    } else {
        body
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let opensearch = lock(store).opensearch;
    match (method, parts.as_slice()) {
        ("GET", [""]) => Reply::Respond(json_response(200, &root_info(opensearch))),
        ("POST" | "PUT", ["_bulk"]) => bulk(store, None, body, filter),
        ("POST" | "PUT", [index, "_bulk"]) => bulk(store, Some(index), body, filter),
        ("PUT", ["_index_template" | "_component_template", _]) => install(store, path, body),
        ("PUT", ["_ilm", "policy", _]) if !opensearch => install(store, path, body),
        ("PUT", ["_plugins", "_ism", "policies", _]) if opensearch => install(store, path, body),
        ("POST" | "GET", [_, "_refresh"]) => Reply::Respond(json_response(
            200,
            &json!({"_shards": {"total": 1, "successful": 1, "failed": 0}}),
        )),
        ("GET", ["_test", "stats"]) => {
            let store = lock(store);
            let docs: usize = store.docs.values().map(HashMap::len).sum();
            let mut f = store.freshness_us.clone();
            f.sort_unstable();
            let pct = |p: usize| {
                f.get((f.len() * p / 100).min(f.len().saturating_sub(1)))
                    .copied()
            };
            Reply::Respond(json_response(
                200,
                &json!({"docs": docs, "body_bytes": store.body_bytes, "items": store.items_seen,
                        "freshness_ms": {"p50": pct(50).map(|u| u / 1000), "p99": pct(99).map(|u| u / 1000),
                                         "max": f.last().map(|u| u / 1000), "n": f.len()}}),
            ))
        }
        ("GET" | "POST", [pattern, "_count"]) => {
            let prefix = pattern.trim_end_matches('*');
            let n: usize = lock(store)
                .docs
                .iter()
                .filter(|(i, _)| i.starts_with(prefix))
                .map(|(_, d)| d.len())
                .sum();
            Reply::Respond(json_response(200, &json!({"count": n})))
        }
        _ => Reply::Respond(json_response(
            404,
            &error(
                404,
                "no_handler_found_exception",
                &format!("no handler found for uri [{path}] and method [{method}]"),
            ),
        )),
    }
}

impl EsServer {
    /// Starts on `127.0.0.1` at an ephemeral port; with `credentials` (the whole
    /// `Authorization` header value), requests without them get 401.
    pub fn start(credentials: Option<&str>) -> EsServer {
        EsServer::start_on("127.0.0.1:0", credentials, true)
    }

    /// Starts on `addr`; without `keep_docs` only ids are kept (benchmarks).
    pub fn start_on(addr: &str, credentials: Option<&str>, keep_docs: bool) -> EsServer {
        EsServer::start_with(addr, credentials, keep_docs, None)
    }

    /// Starts on `127.0.0.1` behaving as OpenSearch 2.x ([`EsServer::installed`] tells
    /// what it accepted).
    pub fn start_opensearch() -> EsServer {
        let server = EsServer::start(None);
        lock(&server.store).opensearch = true;
        server
    }

    /// The paths of the policies and templates accepted, in order.
    pub fn installed(&self) -> Vec<String> {
        lock(&self.store).installed.clone()
    }

    /// Starts on `127.0.0.1` speaking HTTPS with `tls` (see [`crate::tls::Pki`]).
    pub fn start_tls(credentials: Option<&str>, tls: Arc<rustls::ServerConfig>) -> EsServer {
        EsServer::start_with("127.0.0.1:0", credentials, true, Some(tls))
    }

    fn start_with(
        addr: &str,
        credentials: Option<&str>,
        keep_docs: bool,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> EsServer {
        let acceptor_is_tls = tls.is_some();
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let store = Arc::new(Mutex::new(Store {
            credentials: credentials.map(str::to_owned),
            keep_docs,
            ..Store::default()
        }));
        let bulk_requests = Arc::new(AtomicU64::new(0));
        let (store2, counter) = (store.clone(), bulk_requests.clone());
        let max_bulk_in_flight = Arc::new(AtomicU64::new(0));
        let (in_flight2, max_in_flight2) =
            (Arc::new(AtomicU64::new(0)), max_bulk_in_flight.clone());
        let listener = Listener::start(addr, move |stream| {
            let (store, counter) = (store2.clone(), counter.clone());
            let (in_flight, max_in_flight) = (in_flight2.clone(), max_in_flight2.clone());
            if store
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .faults
                .down
            {
                return;
            }
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (store, counter) = (store.clone(), counter.clone());
                    let (in_flight, max_in_flight) = (in_flight.clone(), max_in_flight.clone());
                    async move {
                        let method = req.method().as_str().to_owned();
                        let path = req.uri().path().to_owned();
                        // `filter_path`, the one query parameter the agent sends.
                        let filter = req.uri().query().and_then(|q| {
                            q.split('&')
                                .find_map(|kv| kv.strip_prefix("filter_path="))
                                .map(str::to_owned)
                        });
                        let auth = req
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        let gzip = req
                            .headers()
                            .get("content-encoding")
                            .is_some_and(|v| v == "gzip");
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        if path.ends_with("_bulk") {
                            counter.fetch_add(1, Ordering::Relaxed);
                        }
                        let (delay, down) = {
                            let mut st = store
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                            let slow = match st.faults.pressure.clone() {
                                Some(p)
                                    if path.ends_with("_bulk") && draw(&mut st.rng) < p.slow =>
                                {
                                    Some(p.slow_delay)
                                }
                                _ => None,
                            };
                            (st.faults.delay.or(slow), st.faults.down)
                        };
                        if down {
                            // Down: kept-alive connections break too.
                            return Err(std::io::Error::other("down, on purpose"));
                        }
                        if let Some(d) = delay {
                            tokio::time::sleep(d).await;
                        }
                        if path.ends_with("_bulk") {
                            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                            max_in_flight.fetch_max(now, Ordering::SeqCst);
                        }
                        // Parsing runs on the blocking pool: requests are served in parallel.
                        let (store2, path2) = (store.clone(), path.clone());
                        let reply = tokio::task::spawn_blocking(move || {
                            handle(
                                &store2,
                                &method,
                                &path2,
                                auth.as_deref(),
                                gzip,
                                &body,
                                filter.as_deref(),
                            )
                        })
                        .await;
                        if path.ends_with("_bulk") {
                            in_flight.fetch_sub(1, Ordering::SeqCst);
                        }
                        match reply.unwrap_or(Reply::Drop) {
                            Reply::Respond(r) => Ok(r),
                            // A service error makes hyper close the connection unanswered.
                            Reply::Drop => {
                                Err(std::io::Error::other("dropped after storing, on purpose"))
                            }
                        }
                    }
                });
                let http = http1::Builder::new();
                match acceptor {
                    // A failed handshake (an untrusted or missing client certificate) closes
                    // the connection, as a TLS server does.
                    Some(a) => {
                        if let Ok(tls) = a.accept(stream).await {
                            let _ = http.serve_connection(TokioIo::new(tls), service).await;
                        }
                    }
                    None => {
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
            });
        });
        let url = match &listener.url.strip_prefix("http://") {
            Some(rest) if acceptor_is_tls => format!("https://{rest}"),
            _ => listener.url.clone(),
        };
        EsServer {
            url,
            store,
            bulk_requests,
            max_bulk_in_flight,
            _listener: listener,
        }
    }

    /// The faults as they stand (`refuse_next` counts down).
    pub fn faults(&self) -> Faults {
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .faults
            .clone()
    }

    /// Sets the faults for the next requests.
    pub fn set_faults(&self, faults: Faults) {
        let mut st = self
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(p) = &faults.pressure {
            if st.faults.pressure.as_ref().map(|q| q.seed) != Some(p.seed) {
                st.rng = p.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            }
        }
        st.faults = faults;
    }

    /// How often each `http.request.id` (the writers' `seq-<writer>-<n>`) is stored in
    /// indices starting with `prefix`.
    pub fn request_ids(&self, prefix: &str) -> HashMap<String, u32> {
        let store = self
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut counts = HashMap::new();
        let docs = store
            .docs
            .iter()
            .filter(|(i, _)| i.starts_with(prefix))
            .flat_map(|(_, d)| d.values());
        for doc in docs {
            if let Some(id) = doc["http"]["request"]["id"].as_str() {
                *counts.entry(id.to_owned()).or_insert(0) += 1;
            }
        }
        counts
    }

    /// The documents stored in indices starting with `prefix`: id → document.
    pub fn docs(&self, prefix: &str) -> HashMap<String, Value> {
        let store = self
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        store
            .docs
            .iter()
            .filter(|(i, _)| i.starts_with(prefix))
            .flat_map(|(_, d)| d.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/fixtures/es/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn bulk_answers_filtered_directly_equal_the_generic_filter() {
        let item = |op: &str, id: &str| Parsed {
            op: op.into(),
            index: "logs-x-default".into(),
            id: Some(id.into()),
            line: "{}",
            doc: Ok(None),
            created: None,
        };
        let parsed = [item("create", "a"), item("create", "b"), item("index", "c")];
        let results: Vec<ItemResult<'_>> = vec![
            Ok("a".into()),
            Err((429, "es_rejected_execution_exception", "busy".into())),
            Ok("c".into()),
        ];
        let body = |r: Response<Full<Bytes>>| -> Value {
            serde_json::from_slice(&ready_bytes(r.into_body())).unwrap()
        };
        let full = body(render_bulk(&parsed, &results, true, &ItemKeys::all()));
        assert_eq!(full["items"].as_array().unwrap().len(), 3);
        for filter in [
            "errors,items.*.status,items.*.error,error",
            "items.*.error",
            "took,items",
            "errors",
            "items.*._id,items.*.result",
        ] {
            let patterns: Vec<Vec<&str>> =
                filter.split(',').map(|p| p.split('.').collect()).collect();
            let keys = ItemKeys::from_patterns(&patterns).unwrap();
            let direct = body(render_bulk(&parsed, &results, true, &keys));
            let generic = keep(&full, &patterns).unwrap_or_else(|| json!({}));
            assert_eq!(direct, generic, "{filter}");
        }
    }

    #[test]
    fn filter_path_as_the_documentation_shows() {
        let full =
            fixture("bulk-response-update-404-document_missing-plus-create-201.es9-docs.json");
        let want = fixture("bulk-response-filter_path-items.error.es9-docs.json");
        assert_eq!(keep(&full, &[vec!["items", "*", "error"]]), Some(want));
        // What the agent asks for: every item keeps its action and status, in order, and
        // its error when it has one.
        let got = keep(
            &full,
            &[
                vec!["errors"],
                vec!["items", "*", "status"],
                vec!["items", "*", "error"],
                vec!["error"],
            ],
        )
        .unwrap();
        assert_eq!(got["errors"], true);
        assert!(got.get("took").is_none());
        let items = got["items"].as_array().unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(
            items[0]["update"]["error"]["type"],
            "document_missing_exception"
        );
        assert_eq!(items[2], json!({"create": {"status": 201}}));
    }
}
