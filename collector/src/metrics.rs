//! Every metric family meshtrail exports, and the label discipline that bounds them.
//!
//! Security metrics are counted per batch: a batch holds lines of one file, so gateway,
//! namespace and workload are fixed for it, and per line only small enum-indexed counters
//! move ([`Tally`]); the registry is touched once per batch. Label values are capped per
//! label (the rest become `other`) and series in total (the rest are dropped and counted in
//! `meshtrail_metric_series_dropped_total`). Paths, IPs, user agents and request ids are
//! never labels.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use meshtrail_parsers::classify::{
    Egress, Mtls, MtlsFailureReason, Outcome, RateLimit, Role, Verdict,
};
use meshtrail_parsers::envoy::cluster::{self, Direction};
use meshtrail_parsers::envoy::{Field, Fields};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::pipeline::Observe;
use crate::stats::Counters;

/// Labels every security metric carries.
const BASE: [&str; 4] = ["gateway", "namespace", "workload", "direction"];

/// How many distinct values a label may take before the rest become `other`.
fn cap(label: &str) -> usize {
    match label {
        "namespace" => 200,
        "workload" => 1000,
        "policy" => 200,
        "destination" => 500,
        _ => usize::MAX,
    }
}

/// Which batch the lines came from: the labels fixed for a batch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Source {
    /// `ingress`, `egress`, `sidecar` or `unknown`.
    pub gateway: &'static str,
    /// Kubernetes namespace.
    pub namespace: String,
    /// Owning workload.
    pub workload: String,
}

const DIRECTIONS: usize = 3;
const CODE_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];
const DURATION_BUCKETS: [f64; 8] = [0.005, 0.01, 0.025, 0.1, 0.25, 1.0, 5.0, 30.0];

fn direction_index(d: Option<Direction>) -> usize {
    match d {
        Some(Direction::Inbound) => 0,
        Some(Direction::Outbound) => 1,
        None => 2,
    }
}

const DIRECTION_NAMES: [&str; DIRECTIONS] = ["inbound", "outbound", "unknown"];

/// Security counts of one batch.
pub struct Tally {
    source: Source,
    requests: [[[u64; 7]; 6]; DIRECTIONS],
    mtls: [[u64; 4]; DIRECTIONS],
    mtls_failures: [[u64; 5]; DIRECTIONS],
    rate_limited: [[u64; 3]; DIRECTIONS],
    authz: HashMap<(usize, &'static str, String), u64>,
    egress: HashMap<(usize, String, &'static str), u64>,
    durations: [Vec<f64>; DIRECTIONS],
}

fn index<T: PartialEq>(all: &[T], v: T) -> usize {
    all.iter().position(|x| *x == v).unwrap_or(0)
}

impl Tally {
    /// An empty tally for lines of `source`.
    pub fn new(source: Source) -> Tally {
        Tally {
            source,
            requests: [[[0; 7]; 6]; DIRECTIONS],
            mtls: [[0; 4]; DIRECTIONS],
            mtls_failures: [[0; 5]; DIRECTIONS],
            rate_limited: [[0; 3]; DIRECTIONS],
            authz: HashMap::new(),
            egress: HashMap::new(),
            durations: Default::default(),
        }
    }
}

/// The external host an outbound request went to, when it left the cluster.
fn egress_destination<'a>(f: &'a Fields<'_>) -> Option<&'a str> {
    let host = f
        .upstream_cluster()
        .and_then(cluster::decode)
        .and_then(|c| c.host)
        .or_else(|| f.get(Field::RequestedServerName))
        .or_else(|| {
            f.get(Field::Authority)
                .map(|a| meshtrail_parsers::addr::host_port(a).0)
        });
    host.filter(|h| !h.ends_with(".cluster.local") && !h.ends_with(".svc"))
}

impl Observe for Tally {
    fn access(&mut self, f: &Fields<'_>, v: &Verdict<'_>, role: Option<Role>) {
        let d = direction_index(v.direction);
        let class = match f.status() {
            Some(c @ 100..=599) => usize::from(c / 100 - 1),
            _ => 5,
        };
        self.requests[d][class][index(Outcome::ALL, v.outcome)] += 1;
        self.mtls[d][index(Mtls::ALL, v.mtls)] += 1;
        if let Some(r) = v.mtls_failure_reason {
            self.mtls_failures[d][index(MtlsFailureReason::ALL, r)] += 1;
        }
        if let Some(r) = v.rate_limit {
            self.rate_limited[d][index(RateLimit::ALL, r)] += 1;
        }
        if let Some(denial) = v.denial {
            *self
                .authz
                .entry((
                    d,
                    denial.kind.as_str(),
                    denial.policy.unwrap_or("none").to_owned(),
                ))
                .or_default() += 1;
        }
        let egress = match v.egress {
            Some(Egress::Blocked) => Some("blocked"),
            Some(Egress::Passthrough) => Some("passthrough"),
            Some(Egress::Gateway) => Some("allowed"),
            None if v.direction == Some(Direction::Outbound) && role != Some(Role::Ingress) => {
                egress_destination(f).map(|_| "allowed")
            }
            None => None,
        };
        if let Some(result) = egress {
            let dest = egress_destination(f).unwrap_or("unknown").to_owned();
            *self.egress.entry((d, dest, result)).or_default() += 1;
        }
        if let Some(ms) = f.int(Field::Duration) {
            self.durations[d].push(ms as f64 / 1000.0);
        }
    }
}

/// Bounds label values and series.
#[derive(Default)]
struct Guard {
    values: HashMap<&'static str, HashSet<String>>,
    series: HashSet<(&'static str, Vec<String>)>,
}

/// How the Elasticsearch sink paces itself and what it retries, set by the sink directly.
pub struct BulkMetrics {
    /// Bulk requests allowed in flight now (adaptive).
    pub concurrency: IntGauge,
    /// Bulk requests in flight now.
    pub in_flight: IntGauge,
    /// Uncompressed bytes allowed in one request now (adaptive).
    pub max_bytes: IntGauge,
    /// Documents refused one by one and waiting for their retry.
    pub retry_queue: IntGauge,
    /// How long the document waiting longest in the retry queue has waited.
    pub retry_oldest: prometheus::Gauge,
    /// 1 while a request that failed whole pauses sending.
    pub paused: IntGauge,
    retried: IntCounterVec,
}

impl BulkMetrics {
    fn register(registry: &Registry) -> Result<BulkMetrics, prometheus::Error> {
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let retry_oldest = prometheus::Gauge::new(
            "meshtrail_bulk_retry_queue_oldest_seconds",
            "How long the document waiting longest for its retry has waited.",
        )?;
        registry.register(Box::new(retry_oldest.clone()))?;
        let retried = IntCounterVec::new(
            Opts::new(
                "meshtrail_bulk_retried_documents_total",
                "Documents Elasticsearch refused for now and that are sent again, by status (0: no answer).",
            ),
            &["status"],
        )?;
        registry.register(Box::new(retried.clone()))?;
        Ok(BulkMetrics {
            concurrency: gauge(
                "meshtrail_bulk_concurrency",
                "Elasticsearch bulk requests allowed in flight now (adaptive, up to sink.max_concurrent_requests).",
            )?,
            in_flight: gauge(
                "meshtrail_bulk_requests_in_flight",
                "Elasticsearch bulk requests in flight now.",
            )?,
            max_bytes: gauge(
                "meshtrail_bulk_max_request_bytes",
                "Uncompressed bytes allowed in one bulk request now (adaptive, up to sink.max_batch_bytes).",
            )?,
            retry_queue: gauge(
                "meshtrail_bulk_retry_queue_documents",
                "Documents refused one by one by Elasticsearch, waiting for their retry.",
            )?,
            retry_oldest,
            paused: gauge(
                "meshtrail_bulk_paused",
                "1 while a bulk request that failed whole pauses sending until Elasticsearch answers.",
            )?,
            retried,
        })
    }

    /// Counts `n` documents refused with `status`, to be sent again.
    pub fn retried(&self, status: u16, n: usize) {
        self.retried
            .with_label_values(&[itoa::Buffer::new().format(status)])
            .inc_by(n as u64);
    }
}

/// The registry and every family.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    mtls: IntCounterVec,
    mtls_failures: IntCounterVec,
    rate_limited: IntCounterVec,
    authz_denied: IntCounterVec,
    egress: IntCounterVec,
    duration: HistogramVec,
    series_dropped: IntCounter,
    bulk_duration: prometheus::Histogram,
    bulk: BulkMetrics,
    access_events: IntCounterVec,
    pipeline: Vec<(&'static str, PipelineMetric)>,
    in_flight: IntGauge,
    guard: Mutex<Guard>,
    max_series: usize,
}

enum PipelineMetric {
    Counter(IntCounter),
    Gauge(IntGauge),
}

/// Pipeline counters: (field of [`Counters`], metric name, help, is a gauge).
const PIPELINE: &[(&str, &str, &str, bool)] = &[
    (
        "lines_read",
        "meshtrail_lines_read_total",
        "Complete lines read from files.",
        false,
    ),
    (
        "bytes_read",
        "meshtrail_read_bytes_total",
        "Bytes read from files.",
        false,
    ),
    (
        "events_container",
        "meshtrail_container_events_total",
        "Lines that are not access logs.",
        false,
    ),
    (
        "parse_failures",
        "meshtrail_parse_failures_total",
        "Lines that looked like access logs but matched no format (format drift).",
        false,
    ),
    (
        "lines_truncated",
        "meshtrail_lines_truncated_total",
        "Lines cut at tail.max_line_bytes.",
        false,
    ),
    (
        "events_acked",
        "meshtrail_events_acknowledged_total",
        "Events the sink acknowledged.",
        false,
    ),
    (
        "files_tracked",
        "meshtrail_files_tracked",
        "Files open now.",
        true,
    ),
    (
        "rotations",
        "meshtrail_rotations_total",
        "Rotations and deletions of tracked files seen.",
        false,
    ),
    (
        "truncations",
        "meshtrail_truncations_total",
        "Truncations (copytruncate) seen.",
        false,
    ),
    (
        "bytes_lost_to_rotation",
        "meshtrail_rotation_lost_bytes_total",
        "Bytes rotated away and deleted before they were read (a lower bound).",
        false,
    ),
    (
        "lag_bytes",
        "meshtrail_lag_bytes",
        "Bytes written to tracked files and not read yet.",
        true,
    ),
    (
        "lag_bytes_max_file",
        "meshtrail_lag_bytes_max_file",
        "The most unread bytes of any one file.",
        true,
    ),
    (
        "checkpoint_errors",
        "meshtrail_checkpoint_errors_total",
        "Checkpoint writes that failed.",
        false,
    ),
    (
        "read_errors",
        "meshtrail_read_errors_total",
        "File opens and reads that failed.",
        false,
    ),
    (
        "sink_retries",
        "meshtrail_sink_retries_total",
        "Sink writes retried after a failure.",
        false,
    ),
    (
        "bulk_requests",
        "meshtrail_bulk_requests_total",
        "Elasticsearch _bulk requests sent.",
        false,
    ),
    (
        "bulk_retries",
        "meshtrail_bulk_retries_total",
        "Elasticsearch _bulk requests followed by a retry of some or all of their documents.",
        false,
    ),
    (
        "bulk_hedges",
        "meshtrail_bulk_hedged_requests_total",
        "Straggling Elasticsearch _bulk requests sent a second time while the first was still out; the first answer settles their documents.",
        false,
    ),
    (
        "dead_letters",
        "meshtrail_dead_letters_total",
        "Documents Elasticsearch refused for good, written to the dead-letter file.",
        false,
    ),
];

fn labels(extra: &[&'static str]) -> Vec<&'static str> {
    BASE.iter().chain(extra).copied().collect()
}

impl Metrics {
    /// Every family, registered; `max_series` bounds the security series.
    pub fn new(max_series: usize) -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let counter = |name: &str,
                       help: &str,
                       extra: &[&'static str]|
         -> Result<IntCounterVec, prometheus::Error> {
            let c = IntCounterVec::new(Opts::new(name, help), &labels(extra))?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let requests = counter(
            "meshtrail_requests_total",
            "Access-logged requests and connections by status class and security outcome.",
            &["code_class", "outcome"],
        )?;
        let mtls = counter(
            "meshtrail_mtls_requests_total",
            "Requests by mutual-TLS result.",
            &["result"],
        )?;
        let mtls_failures = counter(
            "meshtrail_mtls_failures_total",
            "TLS and mTLS failures by reason.",
            &["reason"],
        )?;
        let rate_limited = counter(
            "meshtrail_rate_limited_requests_total",
            "Requests refused by a rate limit, or by a failing rate-limit service.",
            &["kind"],
        )?;
        let authz_denied = counter(
            "meshtrail_authz_denied_requests_total",
            "Requests denied by RBAC, JWT or ext_authz.",
            &["kind", "policy"],
        )?;
        let egress = counter(
            "meshtrail_egress_requests_total",
            "Requests leaving the mesh, by external destination and result.",
            &["destination", "result"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "meshtrail_request_duration_seconds",
                "Request duration as Envoy logged it (%DURATION%).",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &BASE,
        )?;
        registry.register(Box::new(duration.clone()))?;
        let bulk_duration = prometheus::Histogram::with_opts(
            HistogramOpts::new("meshtrail_bulk_request_duration_seconds", "Elasticsearch _bulk request duration, from sending to the last byte of the answer.")
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0]),
        )?;
        registry.register(Box::new(bulk_duration.clone()))?;
        let bulk = BulkMetrics::register(&registry)?;
        let series_dropped = IntCounter::new(
            "meshtrail_metric_series_dropped_total",
            "Security metric updates dropped because the series limit was reached.",
        )?;
        registry.register(Box::new(series_dropped.clone()))?;
        let access_events = IntCounterVec::new(
            Opts::new(
                "meshtrail_access_events_total",
                "Access logs parsed, by format.",
            ),
            &["format"],
        )?;
        registry.register(Box::new(access_events.clone()))?;
        let mut pipeline = Vec::new();
        for (field, name, help, gauge) in PIPELINE {
            let m = if *gauge {
                let g = IntGauge::new(*name, *help)?;
                registry.register(Box::new(g.clone()))?;
                PipelineMetric::Gauge(g)
            } else {
                let c = IntCounter::new(*name, *help)?;
                registry.register(Box::new(c.clone()))?;
                PipelineMetric::Counter(c)
            };
            pipeline.push((*field, m));
        }
        let in_flight = IntGauge::new(
            "meshtrail_in_flight_bytes",
            "Bytes read and not yet acknowledged by the sink.",
        )?;
        registry.register(Box::new(in_flight.clone()))?;
        let build = IntGaugeVec::new(
            Opts::new("meshtrail_build_info", "meshtrail's version; always 1."),
            &["version"],
        )?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        registry.register(Box::new(build))?;
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Metrics {
            registry,
            requests,
            mtls,
            mtls_failures,
            rate_limited,
            authz_denied,
            egress,
            duration,
            series_dropped,
            bulk_duration,
            bulk,
            access_events,
            pipeline,
            in_flight,
            guard: Mutex::new(Guard::default()),
            max_series,
        })
    }

    /// Adds `n` to `family{values}` within the caps.
    fn add(
        &self,
        guard: &mut Guard,
        family: &'static str,
        vec: &IntCounterVec,
        names: &[&'static str],
        values: &[&str],
        n: u64,
    ) {
        if n == 0 {
            return;
        }
        let capped: Vec<String> = names
            .iter()
            .zip(values)
            .map(|(name, v)| {
                let seen = guard.values.entry(name).or_default();
                if seen.contains(*v) || seen.len() < cap(name) {
                    seen.insert((*v).to_owned());
                    (*v).to_owned()
                } else {
                    "other".to_owned()
                }
            })
            .collect();
        let key = (family, capped);
        if !guard.series.contains(&key) {
            if guard.series.len() >= self.max_series {
                self.series_dropped.inc_by(n);
                return;
            }
            guard.series.insert(key.clone());
        }
        let refs: Vec<&str> = key.1.iter().map(String::as_str).collect();
        vec.with_label_values(&refs).inc_by(n);
    }

    /// Adds `counts[i]` to `family{base…, label=values[i]}` for each value of an enum label.
    #[allow(
        clippy::too_many_arguments,
        reason = "the family, its label and the values: one call per family"
    )]
    fn add_each<'v>(
        &self,
        guard: &mut Guard,
        family: &'static str,
        vec: &IntCounterVec,
        label: &'static str,
        base: &[&str],
        values: impl Iterator<Item = &'v str>,
        counts: &[u64],
    ) {
        let names = labels(&[label]);
        for (value, n) in values.zip(counts) {
            let all = [base, &[value]].concat();
            self.add(guard, family, vec, &names, &all, *n);
        }
    }

    /// Adds a batch's tally.
    pub fn record(&self, t: &Tally) {
        let mut guard = self
            .guard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let s = &t.source;
        for (d, direction) in DIRECTION_NAMES.iter().enumerate() {
            let base = [
                s.gateway,
                s.namespace.as_str(),
                s.workload.as_str(),
                direction,
            ];
            let with = |extra: &[&'static str]| -> Vec<&'static str> { labels(extra) };
            for (c, class) in CODE_CLASSES.iter().enumerate() {
                for (o, outcome) in Outcome::ALL.iter().enumerate() {
                    let values = [&base[..], &[class, outcome.as_str()]].concat();
                    self.add(
                        &mut guard,
                        "requests",
                        &self.requests,
                        &with(&["code_class", "outcome"]),
                        &values,
                        t.requests[d][c][o],
                    );
                }
            }
            let mtls = Mtls::ALL.iter().map(|r| r.as_str());
            self.add_each(
                &mut guard, "mtls", &self.mtls, "result", &base, mtls, &t.mtls[d],
            );
            let reasons = MtlsFailureReason::ALL.iter().map(|r| r.as_str());
            self.add_each(
                &mut guard,
                "mtls_failures",
                &self.mtls_failures,
                "reason",
                &base,
                reasons,
                &t.mtls_failures[d],
            );
            let kinds = RateLimit::ALL.iter().map(|r| r.as_str());
            self.add_each(
                &mut guard,
                "rate_limited",
                &self.rate_limited,
                "kind",
                &base,
                kinds,
                &t.rate_limited[d],
            );
            if !t.durations[d].is_empty() {
                // Observed locally without atomics, then added to the shared histogram once.
                let h = self.duration.with_label_values(&base).local();
                for v in &t.durations[d] {
                    h.observe(*v);
                }
                h.flush();
            }
        }
        for ((d, kind, policy), n) in &t.authz {
            let values = [
                s.gateway,
                s.namespace.as_str(),
                s.workload.as_str(),
                DIRECTION_NAMES[*d],
                kind,
                policy.as_str(),
            ];
            self.add(
                &mut guard,
                "authz",
                &self.authz_denied,
                &labels(&["kind", "policy"]),
                &values,
                *n,
            );
        }
        for ((d, dest, result), n) in &t.egress {
            let values = [
                s.gateway,
                s.namespace.as_str(),
                s.workload.as_str(),
                DIRECTION_NAMES[*d],
                dest.as_str(),
                result,
            ];
            self.add(
                &mut guard,
                "egress",
                &self.egress,
                &labels(&["destination", "result"]),
                &values,
                *n,
            );
        }
    }

    /// The registry, for families other modules own.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Elasticsearch sink's pace and retries.
    pub fn bulk(&self) -> &BulkMetrics {
        &self.bulk
    }

    /// Records one `_bulk` request's duration.
    pub fn observe_bulk(&self, seconds: f64) {
        self.bulk_duration.observe(seconds);
    }

    /// Counts access logs per format.
    pub fn access_events(&self, format: &str, n: u64) {
        if n > 0 {
            self.access_events.with_label_values(&[format]).inc_by(n);
        }
    }

    /// The Prometheus text exposition, with the pipeline counters read now.
    pub fn render(&self, counters: &Counters, in_flight: usize) -> String {
        let snapshot = counters.snapshot();
        for (field, metric) in &self.pipeline {
            let Some((_, value)) = snapshot.iter().find(|(name, _)| name == field) else {
                continue;
            };
            match metric {
                PipelineMetric::Counter(c) => c.inc_by(value.saturating_sub(c.get())),
                PipelineMetric::Gauge(g) => g.set(i64::try_from(*value).unwrap_or(i64::MAX)),
            }
        }
        self.in_flight
            .set(i64::try_from(in_flight).unwrap_or(i64::MAX));
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The workload a pod belongs to, from its name, until the Kubernetes API says (`name-<rs
/// hash>-<pod hash>` → `name`; `name-<ordinal>` → `name`; `name-<hash>` → `name`).
pub fn workload_from_pod(pod: &str) -> String {
    let parts: Vec<&str> = pod.split('-').collect();
    let hashy = |s: &str, n: std::ops::RangeInclusive<usize>| {
        n.contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    let n = parts.len();
    let keep = if n >= 3
        && hashy(parts[n - 1], 5..=5)
        && hashy(parts[n - 2], 6..=10)
        && parts[n - 2].bytes().any(|b| b.is_ascii_digit())
    {
        n - 2
    } else if n >= 2
        && (hashy(parts[n - 1], 5..=5) || parts[n - 1].bytes().all(|b| b.is_ascii_digit()))
    {
        n - 1
    } else {
        n
    };
    parts[..keep].join("-")
}

/// The proxy role a container's path suggests, until the Kubernetes API says (pod labels).
pub fn role_from_path(pod: Option<&str>, container: Option<&str>) -> Option<Role> {
    if container != Some("istio-proxy") {
        return None;
    }
    let pod = pod.unwrap_or_default();
    Some(if pod.contains("ingressgateway") {
        Role::Ingress
    } else if pod.contains("egressgateway") {
        Role::Egress
    } else {
        Role::Sidecar
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_from_pod_names() {
        assert_eq!(
            workload_from_pod("istio-ingressgateway-7d4f8b6c9-x2x7q"),
            "istio-ingressgateway"
        );
        assert_eq!(
            workload_from_pod("reviews-v1-545db77b95-abcde"),
            "reviews-v1"
        );
        assert_eq!(workload_from_pod("web-0"), "web");
        assert_eq!(workload_from_pod("fluentd-x7k2p"), "fluentd");
        assert_eq!(workload_from_pod("standalone"), "standalone");
    }

    #[test]
    fn roles_from_paths() {
        assert_eq!(
            role_from_path(Some("istio-ingressgateway-1"), Some("istio-proxy")),
            Some(Role::Ingress)
        );
        assert_eq!(
            role_from_path(Some("istio-egressgateway-1"), Some("istio-proxy")),
            Some(Role::Egress)
        );
        assert_eq!(
            role_from_path(Some("web-1"), Some("istio-proxy")),
            Some(Role::Sidecar)
        );
        assert_eq!(role_from_path(Some("web-1"), Some("app")), None);
    }

    #[test]
    fn caps_values_and_series() {
        let m = Metrics::new(3).unwrap();
        let mut guard = Guard::default();
        let names = labels(&["result"]);
        for ns in ["a", "b", "c", "d"] {
            m.add(
                &mut guard,
                "mtls",
                &m.mtls,
                &names,
                &["sidecar", ns, "w", "inbound", "success"],
                1,
            );
        }
        assert_eq!(
            m.series_dropped.get(),
            1,
            "the fourth series is over the limit"
        );
        let text = m.render(&Counters::default(), 0);
        assert!(text.contains(r#"meshtrail_mtls_requests_total{direction="inbound",gateway="sidecar",namespace="c",result="success",workload="w"} 1"#), "{text}");
        assert!(text.contains("meshtrail_metric_series_dropped_total 1"));
        assert!(text.contains("meshtrail_build_info{version="));
    }
}
