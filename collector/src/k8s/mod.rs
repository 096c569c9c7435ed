//! Kubernetes metadata: which pod, workload and gateway wrote a line, and which workloads
//! are behind the IPs it names.
//!
//! A source fills the [`store::Store`] on a tokio runtime of its own (`meshtrail-k8s`
//! thread): [`api`] watches this node's pods and the namespaces (and, opt-in, every pod's
//! IP), or [`kubelet`] polls the node's kubelet. Workers look a file's pod up once per batch
//! and never wait: until the pod is known, lines carry what their path says, and
//! `meshtrail_kubernetes_unenriched_events_total` counts them.

pub mod api;
pub mod config;
pub mod count;
pub mod kubelet;
pub mod project;
pub mod store;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use tracing::{info, warn};

use config::{KubeSettings, KubeSource};
use store::Store;

/// The Kubernetes families on `/metrics`.
pub struct KubeMetrics {
    requests: IntCounterVec,
    errors: IntCounterVec,
    cached: IntGaugeVec,
    cache_bytes: IntGauge,
    synced: IntGauge,
    /// Events shipped with path metadata only, because their pod was not known.
    pub unenriched: IntCounter,
}

impl KubeMetrics {
    /// Registers the families in `registry`.
    pub fn new(registry: &Registry) -> Result<KubeMetrics, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "meshtrail_kubernetes_api_requests_total",
                "Requests to the Kubernetes API server (or kubelet) by resource, verb and HTTP status (error: no answer).",
            ),
            &["resource", "verb", "code"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "meshtrail_kubernetes_api_errors_total",
                "Failed Kubernetes requests and watch-stream errors (410 Gone, dropped streams), by resource.",
            ),
            &["resource"],
        )?;
        let cached = IntGaugeVec::new(
            Opts::new(
                "meshtrail_kubernetes_cached_objects",
                "Objects in the metadata caches: pods of this node, namespaces, peer IPs.",
            ),
            &["kind"],
        )?;
        let cache_bytes = IntGauge::new(
            "meshtrail_kubernetes_cache_bytes",
            "Heap bytes of the cached pod projections.",
        )?;
        let synced = IntGauge::new(
            "meshtrail_kubernetes_synced",
            "1 once the first pod list has been applied.",
        )?;
        let unenriched = IntCounter::new(
            "meshtrail_kubernetes_unenriched_events_total",
            "Events shipped with path metadata only: their pod was unknown (API unreachable, or not listed yet).",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(cached.clone()))?;
        registry.register(Box::new(cache_bytes.clone()))?;
        registry.register(Box::new(synced.clone()))?;
        registry.register(Box::new(unenriched.clone()))?;
        Ok(KubeMetrics {
            requests,
            errors,
            cached,
            cache_bytes,
            synced,
            unenriched,
        })
    }

    /// Counts one request; `code` is `None` when no answer came.
    pub fn request(&self, resource: &str, verb: &str, code: Option<u16>) {
        let mut buf = itoa::Buffer::new();
        let code_text = code.map_or("error", |c| buf.format(c));
        self.requests
            .with_label_values(&[resource, verb, code_text])
            .inc();
        if !code.is_some_and(|c| (200..300).contains(&c)) {
            self.errors.with_label_values(&[resource]).inc();
        }
    }

    /// Counts an error a watch stream reported.
    pub fn stream_error(&self, resource: &str) {
        self.errors.with_label_values(&[resource]).inc();
    }

    fn update(&self, store: &Store) {
        let (pods, namespaces, peers, bytes) = store.sizes();
        let set = |kind: &str, n: usize| {
            self.cached
                .with_label_values(&[kind])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        };
        set("pods", pods);
        set("namespaces", namespaces);
        set("peers", peers);
        self.cache_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.synced.set(i64::from(store.synced()));
    }
}

/// The running metadata source and its caches.
pub struct Kube {
    /// The caches.
    pub store: Arc<Store>,
    /// Its metrics.
    pub metrics: Arc<KubeMetrics>,
    /// Whether peers are looked up.
    pub enrich_peers: bool,
}

impl Kube {
    /// Starts the source for this node on a thread of its own.
    pub fn start(settings: &KubeSettings, node: &str, registry: &Registry) -> anyhow::Result<Kube> {
        let metrics =
            Arc::new(KubeMetrics::new(registry).context("registering Kubernetes metrics")?);
        let store = Arc::new(Store::new(settings.deleted_pod_grace));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the Kubernetes runtime")?;
        let (s, st, m, node) = (
            settings.clone(),
            store.clone(),
            metrics.clone(),
            node.to_owned(),
        );
        std::thread::Builder::new()
            .name("meshtrail-k8s".into())
            .spawn(move || runtime.block_on(run(s, node, st, m)))
            .context("starting the Kubernetes thread")?;
        Ok(Kube {
            store,
            metrics,
            enrich_peers: settings.enrich_peers,
        })
    }

    /// Waits until the first pod list arrived, at most `timeout`; reading starts then
    /// either way.
    pub fn wait_synced(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.store.synced() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.store.synced() {
            info!("Kubernetes metadata ready");
        } else if !timeout.is_zero() {
            warn!(
                waited_secs = timeout.as_secs(),
                "no pod list yet; reading with path metadata until it arrives"
            );
        }
    }
}

/// A number in [0, 1) that differs between nodes and starts.
fn unit_random(node: &str) -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ u64::from(nanos);
    for b in node.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h >> 11) as f64 / (1u64 << 53) as f64
}

async fn run(settings: KubeSettings, node: String, store: Arc<Store>, metrics: Arc<KubeMetrics>) {
    // Spread a DaemonSet roll-out's first lists over the jitter window.
    if !settings.start_jitter.is_zero() {
        let jitter = settings.start_jitter.mul_f64(unit_random(&node));
        tokio::time::sleep(jitter).await;
    }
    let sweeper = {
        let (store, metrics) = (store.clone(), metrics.clone());
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                store.sweep();
                metrics.update(&store);
            }
        }
    };
    let source = async {
        match &settings.source {
            KubeSource::Api { kubeconfig } => {
                api::run(kubeconfig.as_deref(), &node, &settings, &store, &metrics).await;
            }
            KubeSource::Kubelet {
                url,
                ca_file,
                insecure_skip_verify,
                poll,
            } => {
                kubelet::run(
                    url,
                    ca_file.as_deref(),
                    *insecure_skip_verify,
                    *poll,
                    &settings.annotations,
                    &store,
                    &metrics,
                )
                .await;
            }
        }
    };
    tokio::join!(sweeper, source);
}
