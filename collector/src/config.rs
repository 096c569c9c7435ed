//! The agent's configuration: one YAML file (a ConfigMap in production), every field with
//! a default, validated once at start into [`Settings`]. A bad value is refused with the
//! field, the value and why.

use std::path::{Path, PathBuf};
use std::time::Duration;

use meshtrail_parsers::envoy::Parser;
use meshtrail_parsers::frame::Framing;
use serde::Deserialize;

/// The configuration file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// This node's name (`host.name`, `kubernetes.node.name`). Default: `$MESHTRAIL_NODE_NAME`,
    /// else `$NODE_NAME` (the downward API), else the host name.
    pub node_name: Option<String>,
    /// The cluster's name (`orchestrator.cluster.name`). Default: `$MESHTRAIL_CLUSTER_NAME`.
    pub cluster_name: Option<String>,
    /// Where checkpoints live. Default `/var/lib/meshtrail`; `$MESHTRAIL_DATA_DIR` overrides.
    pub data_dir: Option<PathBuf>,
    /// Which files to read and how.
    pub tail: TailConfig,
    /// Parsing and the in-memory budget.
    pub pipeline: PipelineConfig,
    /// Where events go.
    pub sink: SinkConfig,
    /// The admin listener (`/metrics`, `/healthz`, `/readyz`).
    pub metrics: MetricsConfig,
    /// How long a shutdown may take to flush and checkpoint, in seconds. Default 25 (a pod's
    /// default grace period is 30).
    pub shutdown_timeout_secs: Option<u64>,
    /// Kubernetes metadata.
    pub kubernetes: KubernetesConfig,
}

/// `kubernetes:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesConfig {
    /// Where pod metadata comes from: `api` (watches on the API server), `kubelet` (this
    /// node's kubelet `/pods`, polled; spares the API server) or `off`. Default: `api` in a
    /// cluster (`$KUBERNETES_SERVICE_HOST` set), `off` elsewhere.
    pub source: Option<String>,
    /// A kubeconfig file, for runs outside a cluster. Default: the in-cluster service
    /// account, else `$KUBECONFIG`.
    pub kubeconfig: Option<PathBuf>,
    /// The kubelet's address for `source: kubelet`. Default `https://$NODE_IP:10250`.
    pub kubelet_url: Option<String>,
    /// CA bundle that signed the kubelet's serving certificate. Default: the service
    /// account's CA.
    pub kubelet_ca_file: Option<PathBuf>,
    /// Accept any kubelet certificate (self-signed serving certificates). Default false;
    /// a warning is logged when on.
    pub kubelet_insecure_skip_verify: Option<bool>,
    /// How often the kubelet's `/pods` is read, in seconds. Default 10.
    pub kubelet_poll_secs: Option<u64>,
    /// Annotation keys copied to `kubernetes.annotations.*` (exact keys). Default none.
    pub annotations: Option<Vec<String>>,
    /// Name the workloads behind `source.ip` and `destination.ip`
    /// (`meshtrail.source.workload`…): one cluster-wide pod watch keeping IP → workload.
    /// Default false.
    pub enrich_peers: Option<bool>,
    /// How long a deleted pod's metadata outlives its last use, in seconds. Default 60.
    pub deleted_pod_grace_secs: Option<u64>,
    /// Longest random delay before the first request, in seconds, so that a DaemonSet
    /// roll-out does not list all at once. Default 5.
    pub start_jitter_secs: Option<u64>,
    /// How long reading waits at start for the first pod list, in seconds; reading then
    /// goes on with path metadata. Default 10; 0 does not wait.
    pub initial_sync_timeout_secs: Option<u64>,
}

/// `tail:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TailConfig {
    /// Glob patterns of files to read. Default `["/var/log/containers/*.log"]`; symlinks are
    /// followed to the kubelet's `/var/log/pods` files, whose rotations are then tracked.
    pub include: Option<Vec<String>>,
    /// Glob patterns of files never to read, matched against the pattern's path and its
    /// symlink target. Default: meshtrail's own container logs.
    pub exclude: Option<Vec<String>>,
    /// Container-log framing: `auto`, `cri`, `docker`, `kubectl` or `none`. Default `auto`.
    pub framing: Option<String>,
    /// Where to start in a file found at first start that has no checkpoint: `beginning`
    /// (default) or `end`. Files that appear later are always read from the beginning.
    pub start_at: Option<String>,
    /// How often to look for new lines in files whose directory inotify cannot watch (no
    /// inotify, or `fs.inotify.max_user_watches` reached), in milliseconds. Default 250.
    pub poll_interval_ms: Option<u64>,
    /// How often to look for new and rotated files (a listing of the directories and a look
    /// at every file matched), and at every file for new lines whatever inotify said, in
    /// milliseconds; a file created or renamed in a watched directory is looked for at once.
    /// Default 10 s when every include pattern's directory has no wildcard (inotify watches
    /// it, so the scan is only the safety net), else four poll intervals.
    pub scan_interval_ms: Option<u64>,
    /// How much to read from one file before turning to the next, in bytes. Default 256 KiB.
    pub read_block_bytes: Option<usize>,
    /// Longest line after joining partial records, in bytes; the rest is dropped, counted
    /// and flagged (`log.flags: truncated`). Default 1 MiB.
    pub max_line_bytes: Option<usize>,
    /// How long a rotated or deleted file stays open after its last growth, in seconds, so
    /// that late writes are read. Default 10.
    pub rotate_wait_secs: Option<u64>,
}

/// `pipeline:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Access-log formats, tried in order: `auto`, built-in names, or Envoy format strings.
    /// Default `[auto]`.
    pub formats: Option<Vec<String>>,
    /// Parsing threads. Default: one per core.
    pub workers: Option<usize>,
    /// Memory held by lines read but not yet acknowledged by the sink (the lines, then their
    /// documents); reading pauses at this bound, so the files are the buffer. Default 16 MiB.
    pub max_in_flight_bytes: Option<usize>,
    /// Copy each access-log line into `event.original`. Default false.
    pub keep_original: Option<bool>,
}

/// `sink:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    /// `stdout` (default), `file` or `blackhole`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// For `file`: the NDJSON file. Default `<data_dir>/events.ndjson`.
    pub path: Option<PathBuf>,
    /// For `file`: size at which the file is rotated, in bytes. Default 100 MiB.
    pub max_file_bytes: Option<u64>,
    /// For `file`: rotated files kept. Default 5.
    pub max_files: Option<usize>,
    /// For `blackhole`: encode each event as its JSON document before dropping it (to
    /// measure encoding). Default false: events are parsed, classified and counted only.
    pub encode: Option<bool>,
    /// For `elasticsearch`: the cluster's URL, e.g. `http://elasticsearch:9200`.
    pub url: Option<String>,
    /// For `elasticsearch`: the data stream namespace (`logs-meshtrail.access-<namespace>`).
    /// Default `default`.
    pub namespace: Option<String>,
    /// For `elasticsearch`: write daily indices `<prefix>-YYYY.MM.DD` instead of data
    /// streams (as the Fluentd config's `logstash_format`).
    pub logstash_prefix: Option<String>,
    /// For `elasticsearch`: basic-auth user; the password comes from `password_file` or
    /// `$MESHTRAIL_ES_PASSWORD`.
    pub username: Option<String>,
    /// For `elasticsearch`: file holding the password (a mounted Secret).
    pub password_file: Option<PathBuf>,
    /// For `elasticsearch`: file holding an API key (`id:key` encoded, as Elasticsearch
    /// returns it); or `$MESHTRAIL_ES_API_KEY`.
    pub api_key_file: Option<PathBuf>,
    /// For `elasticsearch`: gzip request bodies. Default true.
    pub gzip: Option<bool>,
    /// For `elasticsearch`: which gzip writer, `meshtrail` (default) or `zlib`.
    pub gzip_writer: Option<String>,
    /// For `elasticsearch`: largest bulk request body before compression, bytes. Default 5 MiB.
    pub max_batch_bytes: Option<usize>,
    /// For `elasticsearch`: most documents per bulk request. Default 5000.
    pub max_batch_docs: Option<usize>,
    /// For `elasticsearch`: the most bulk requests in flight at once (how many are adapts
    /// to Elasticsearch's answers). Default 8.
    pub max_concurrent_requests: Option<usize>,
    /// For `elasticsearch`: the dead-letter file. Default `<data_dir>/dead-letters.ndjson`.
    pub dead_letter_path: Option<PathBuf>,
    /// For `elasticsearch`: install the ILM policy and templates at start. Default true.
    pub install_templates: Option<bool>,
    /// For `elasticsearch`: an Elastic Cloud ID, instead of `url`.
    pub cloud_id: Option<String>,
    /// For `elasticsearch`: file holding a bearer token (a service account token); or
    /// `$MESHTRAIL_ES_BEARER_TOKEN`.
    pub bearer_token_file: Option<PathBuf>,
    /// For `elasticsearch`: PEM bundle of CAs to trust besides the system's.
    pub ca_file: Option<PathBuf>,
    /// For `elasticsearch`: PEM client certificate, for clusters that ask for one.
    pub client_cert_file: Option<PathBuf>,
    /// For `elasticsearch`: the client certificate's PEM key.
    pub client_key_file: Option<PathBuf>,
    /// For `elasticsearch`: accept any server certificate. Default false; warned about.
    pub tls_insecure_skip_verify: Option<bool>,
    /// For `elasticsearch`: where events of some pods go instead, first match wins.
    pub routes: Option<Vec<RouteConfig>>,
    /// For `elasticsearch`: `elasticsearch` (default) or `opensearch` (ISM instead of ILM,
    /// `flat_object` instead of `flattened`).
    pub distribution: Option<String>,
    /// For `elasticsearch`: days before the lifecycle policy deletes data. Default 30.
    pub retention_days: Option<u32>,
}

/// One of `sink.routes`: events of pods that match go to their own data stream namespace
/// or index prefix (the Fluentd config's per-gateway `<match>` blocks).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    /// Match `meshtrail.gateway`: `ingress`, `egress` or `sidecar`.
    pub gateway: Option<String>,
    /// Match `kubernetes.namespace`.
    pub namespace: Option<String>,
    /// With data streams: the namespace part, `logs-meshtrail.access-<this>`.
    pub data_stream_namespace: Option<String>,
    /// With daily indices: the prefix, `<this>-YYYY.MM.DD`.
    pub logstash_prefix: Option<String>,
}

/// `metrics:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of the admin listener. Default `0.0.0.0:9947`; `off` disables it.
    pub address: Option<String>,
    /// Most security metric series kept; updates past it are dropped and counted in
    /// `meshtrail_metric_series_dropped_total`. Default 20000.
    pub max_series: Option<usize>,
}

/// A configuration value that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid YAML, or an unknown field, or a value of the wrong type.
    #[error("config file {path}: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// serde's message, with the line and column.
        message: String,
    },
    /// A value out of range or otherwise wrong.
    #[error("config field `{field}`: value {value}: {why}")]
    Invalid {
        /// Dotted path of the field.
        field: &'static str,
        /// The value, as given.
        value: String,
        /// Why it is refused and what is accepted.
        why: String,
    },
}

pub(crate) fn invalid(
    field: &'static str,
    value: impl std::fmt::Debug,
    why: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        field,
        value: format!("{value:?}"),
        why: why.into(),
    }
}

/// Where to start in a file without a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// Its first byte.
    Beginning,
    /// Its end at the time it is found.
    End,
}

/// Where events go, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sink {
    /// NDJSON on standard output.
    Stdout,
    /// NDJSON files, size-rotated.
    File {
        /// The current file.
        path: PathBuf,
        /// Rotation size.
        max_bytes: u64,
        /// Rotated files kept.
        max_files: usize,
    },
    /// Discarded (benchmarks).
    Blackhole {
        /// Encode documents before dropping them.
        encode: bool,
    },
    /// Elasticsearch `_bulk`.
    Elasticsearch(EsSettings),
}

/// A credential that is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The Elasticsearch sink, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EsSettings {
    /// Base URL, without a trailing `/`.
    pub url: String,
    /// Data streams or daily indices.
    pub destination: crate::sink::es::bulk::Destination,
    /// The `Authorization` header value.
    pub authorization: Option<Secret>,
    /// Gzip bodies.
    pub gzip: bool,
    /// With which writer.
    pub gzip_writer: crate::sink::es::gzip::Writer,
    /// Batch bounds.
    pub max_batch_bytes: usize,
    /// Batch bounds.
    pub max_batch_docs: usize,
    /// Bulk requests in flight at once.
    pub max_concurrent_requests: usize,
    /// Dead letters.
    pub dead_letter_path: PathBuf,
    /// Install templates at start.
    pub install_templates: bool,
    /// TLS.
    pub tls: crate::sink::es::connect::Tls,
    /// Routing rules, first match wins; the rest goes to `destination`.
    pub routes: Vec<crate::sink::es::route::Route>,
    /// OpenSearch rather than Elasticsearch.
    pub opensearch: bool,
    /// Retention of the lifecycle policy, days.
    pub retention_days: u32,
}

/// Whether a file can be appended to at `path`: it is, or its directory is (or can be made)
/// one where files can be created. Checked by doing it: open for appending, or create and
/// remove a probe file in the nearest existing directory.
fn writable(path: &Path) -> Result<(), String> {
    if path.is_dir() {
        return Err("is a directory; expected a file path".into());
    }
    if path.exists() {
        return std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop)
            .map_err(|e| format!("cannot open it for appending: {e}"));
    }
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d.as_os_str().is_empty() {
            dir = Some(Path::new("."));
            continue;
        }
        if d.is_dir() {
            let probe = d.join(format!(".meshtrail-write-check-{}", std::process::id()));
            return std::fs::File::create(&probe)
                .map(|_| {
                    let _ = std::fs::remove_file(&probe);
                })
                .map_err(|e| format!("cannot create files under {}: {e}", d.display()));
        }
        if d.exists() {
            return Err(format!("{} is not a directory", d.display()));
        }
        dir = d.parent();
    }
    Err("no directory of it exists".into())
}

/// Standard base64 (RFC 4648) of `bytes`, for basic authentication.
fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `host.name`.
    pub node_name: String,
    /// `orchestrator.cluster.name`.
    pub cluster_name: Option<String>,
    /// Checkpoints directory.
    pub data_dir: PathBuf,
    /// Include globs.
    pub include: Vec<String>,
    /// Exclude globs.
    pub exclude: Vec<String>,
    /// Framing.
    pub framing: Framing,
    /// Start position for pre-existing files without a checkpoint.
    pub start_at: StartAt,
    /// How often the files being read are looked at.
    pub poll_interval: Duration,
    /// How often new and rotated files are looked for.
    pub scan_interval: Duration,
    /// Fair-share read size.
    pub read_block_bytes: usize,
    /// Line cap.
    pub max_line_bytes: usize,
    /// Rotated-file linger.
    pub rotate_wait: Duration,
    /// Format specs.
    pub formats: Vec<String>,
    /// Worker threads.
    pub workers: usize,
    /// In-flight byte budget.
    pub max_in_flight_bytes: usize,
    /// `event.original`.
    pub keep_original: bool,
    /// The sink.
    pub sink: Sink,
    /// Shutdown deadline.
    pub shutdown_timeout: Duration,
    /// The admin listener's address; `None` when off.
    pub metrics_address: Option<std::net::SocketAddr>,
    /// Series limit of the security metrics.
    pub max_series: usize,
    /// Kubernetes metadata; `None` when off.
    pub kubernetes: Option<KubeSettings>,
}

/// Where pod metadata comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KubeSource {
    /// Watches on the API server, with these client settings.
    Api {
        /// A kubeconfig; `None`: in-cluster, else `$KUBECONFIG`.
        kubeconfig: Option<PathBuf>,
    },
    /// The kubelet's `/pods`.
    Kubelet {
        /// Its base URL.
        url: String,
        /// CA bundle of its serving certificate.
        ca_file: Option<PathBuf>,
        /// Accept any certificate.
        insecure_skip_verify: bool,
        /// Poll interval.
        poll: Duration,
    },
}

/// The validated `kubernetes:` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeSettings {
    /// The source.
    pub source: KubeSource,
    /// Annotation keys to copy.
    pub annotations: Vec<String>,
    /// The cluster-wide IP → workload watch.
    pub enrich_peers: bool,
    /// Deleted-pod grace.
    pub deleted_pod_grace: Duration,
    /// Start-up jitter bound.
    pub start_jitter: Duration,
    /// Start-up wait for the first list.
    pub initial_sync_timeout: Duration,
}

impl KubernetesConfig {
    fn validate(self, env: Env<'_>) -> Result<Option<KubeSettings>, ConfigError> {
        let in_cluster = env("KUBERNETES_SERVICE_HOST").is_some();
        let source = match self.source.as_deref() {
            None if in_cluster => "api",
            None => "off",
            Some(s) => s,
        };
        let source = match source {
            "off" => return Ok(None),
            "api" => KubeSource::Api {
                kubeconfig: self.kubeconfig,
            },
            "kubelet" => {
                let url = match (self.kubelet_url, env("NODE_IP")) {
                    (Some(u), _) => u,
                    (None, Some(ip)) if ip.contains(':') => format!("https://[{ip}]:10250"),
                    (None, Some(ip)) => format!("https://{ip}:10250"),
                    (None, None) => {
                        return Err(invalid(
                            "kubernetes.kubelet_url",
                            "",
                            "set it, or give the pod NODE_IP from the downward API (status.hostIP)",
                        ));
                    }
                };
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(invalid(
                        "kubernetes.kubelet_url",
                        &url,
                        "expected an http:// or https:// URL such as https://10.0.0.5:10250",
                    ));
                }
                let poll = self.kubelet_poll_secs.unwrap_or(10);
                if !(1..=3600).contains(&poll) {
                    return Err(invalid(
                        "kubernetes.kubelet_poll_secs",
                        poll,
                        "expected 1 to 3600 seconds",
                    ));
                }
                KubeSource::Kubelet {
                    url,
                    ca_file: self.kubelet_ca_file,
                    insecure_skip_verify: self.kubelet_insecure_skip_verify.unwrap_or(false),
                    poll: Duration::from_secs(poll),
                }
            }
            other => {
                return Err(invalid(
                    "kubernetes.source",
                    other,
                    "expected api, kubelet or off",
                ));
            }
        };
        let secs = |field: &'static str, v: Option<u64>, default: u64, max: u64| {
            let v = v.unwrap_or(default);
            if v > max {
                return Err(invalid(field, v, format!("expected 0 to {max} seconds")));
            }
            Ok(Duration::from_secs(v))
        };
        Ok(Some(KubeSettings {
            source,
            annotations: self.annotations.unwrap_or_default(),
            enrich_peers: self.enrich_peers.unwrap_or(false),
            deleted_pod_grace: secs(
                "kubernetes.deleted_pod_grace_secs",
                self.deleted_pod_grace_secs,
                60,
                86_400,
            )?,
            start_jitter: secs(
                "kubernetes.start_jitter_secs",
                self.start_jitter_secs,
                5,
                600,
            )?,
            initial_sync_timeout: secs(
                "kubernetes.initial_sync_timeout_secs",
                self.initial_sync_timeout_secs,
                10,
                600,
            )?,
        }))
    }
}

/// Environment variables a DaemonSet injects, read through a function so tests can set them.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

fn default_node_name(env: Env<'_>) -> String {
    env("MESHTRAIL_NODE_NAME")
        .or_else(|| env("NODE_NAME"))
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

impl Config {
    /// Reads a YAML file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses YAML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Syntax {
            path: origin.to_owned(),
            message: e.to_string(),
        })
    }

    /// Applies defaults, the environment and checks every value.
    pub fn validate(self, env: Env<'_>) -> Result<Settings, ConfigError> {
        let data_dir = env("MESHTRAIL_DATA_DIR")
            .map(PathBuf::from)
            .or(self.data_dir)
            .unwrap_or_else(|| "/var/lib/meshtrail".into());
        let t = self.tail;
        let include = t
            .include
            .unwrap_or_else(|| vec!["/var/log/containers/*.log".to_owned()]);
        if include.is_empty() {
            return Err(invalid(
                "tail.include",
                &include,
                "give at least one glob pattern, e.g. /var/log/containers/*.log",
            ));
        }
        for p in &include {
            if !p.starts_with('/') {
                return Err(invalid(
                    "tail.include",
                    p,
                    "patterns must be absolute paths",
                ));
            }
        }
        let exclude = t.exclude.unwrap_or_else(|| {
            vec!["/var/log/containers/meshtrail-*_kube-system_*.log".to_owned()]
        });
        let framing = match t.framing {
            Some(f) => f
                .parse::<Framing>()
                .map_err(|why| invalid("tail.framing", &f, why))?,
            None => Framing::Auto,
        };
        let start_at = match t.start_at.as_deref() {
            None | Some("beginning") => StartAt::Beginning,
            Some("end") => StartAt::End,
            Some(other) => {
                return Err(invalid("tail.start_at", other, "expected beginning or end"));
            }
        };
        let poll_ms = t.poll_interval_ms.unwrap_or(250);
        if !(10..=60_000).contains(&poll_ms) {
            return Err(invalid(
                "tail.poll_interval_ms",
                poll_ms,
                "expected 10 to 60000 milliseconds",
            ));
        }
        // Files appearing under a wildcard directory (`/var/log/pods/*/*/*.log`) are found
        // only by scanning; elsewhere inotify finds them and the scan is the safety net.
        let watchable = include
            .iter()
            .all(|p| crate::tail::watch::pattern_dir(p).is_some());
        let default_scan_ms = if watchable {
            (4 * poll_ms).max(10_000)
        } else {
            4 * poll_ms
        };
        let scan_ms = t.scan_interval_ms.unwrap_or(default_scan_ms);
        if !(poll_ms..=600_000).contains(&scan_ms) {
            return Err(invalid(
                "tail.scan_interval_ms",
                scan_ms,
                "expected tail.poll_interval_ms to 600000 milliseconds",
            ));
        }
        let read_block_bytes = t.read_block_bytes.unwrap_or(256 << 10);
        if !(4096..=(64 << 20)).contains(&read_block_bytes) {
            return Err(invalid(
                "tail.read_block_bytes",
                read_block_bytes,
                "expected 4096 to 67108864 bytes",
            ));
        }
        let max_line_bytes = t.max_line_bytes.unwrap_or(1 << 20);
        if !(1024..=(64 << 20)).contains(&max_line_bytes) {
            return Err(invalid(
                "tail.max_line_bytes",
                max_line_bytes,
                "expected 1024 to 67108864 bytes",
            ));
        }
        let rotate_wait = t.rotate_wait_secs.unwrap_or(10);
        if rotate_wait > 3600 {
            return Err(invalid(
                "tail.rotate_wait_secs",
                rotate_wait,
                "expected at most 3600 seconds",
            ));
        }

        let p = self.pipeline;
        let formats = p.formats.unwrap_or_else(|| vec!["auto".to_owned()]);
        if let Err(e) = Parser::from_specs(formats.iter().map(String::as_str)) {
            return Err(invalid("pipeline.formats", &formats, e.to_string()));
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let workers = p.workers.unwrap_or(cores);
        if !(1..=256).contains(&workers) {
            return Err(invalid(
                "pipeline.workers",
                workers,
                "expected 1 to 256 threads",
            ));
        }
        let max_in_flight_bytes = p.max_in_flight_bytes.unwrap_or(16 << 20);
        if max_in_flight_bytes < 1 << 20 {
            return Err(invalid(
                "pipeline.max_in_flight_bytes",
                max_in_flight_bytes,
                "expected at least 1048576 bytes (1 MiB)",
            ));
        }
        if max_in_flight_bytes < 2 * read_block_bytes {
            return Err(invalid(
                "pipeline.max_in_flight_bytes",
                max_in_flight_bytes,
                format!("must be at least twice tail.read_block_bytes ({read_block_bytes})"),
            ));
        }

        let s = self.sink;
        let sink = match s.kind.as_deref().unwrap_or("stdout") {
            kind @ ("stdout" | "blackhole") => {
                if s.path.is_some() || s.max_file_bytes.is_some() || s.max_files.is_some() {
                    return Err(invalid(
                        "sink.type",
                        kind,
                        "path, max_file_bytes and max_files belong to the file sink",
                    ));
                }
                match (kind, s.encode) {
                    ("stdout", Some(_)) => {
                        return Err(invalid(
                            "sink.type",
                            kind,
                            "encode belongs to the blackhole sink",
                        ));
                    }
                    ("stdout", None) => Sink::Stdout,
                    _ => Sink::Blackhole {
                        encode: s.encode.unwrap_or(false),
                    },
                }
            }
            "elasticsearch" => {
                let url = match (&s.url, &s.cloud_id) {
                    (Some(_), Some(_)) => {
                        return Err(invalid(
                            "sink.cloud_id",
                            "(set)",
                            "give url or cloud_id, not both",
                        ));
                    }
                    (Some(u), None) => u.clone(),
                    (None, Some(id)) => crate::sink::es::connect::cloud_id_url(id)
                        .map_err(|why| invalid("sink.cloud_id", "(set)", why))?,
                    (None, None) => {
                        return Err(invalid(
                            "sink.url",
                            "none",
                            "the elasticsearch sink needs the cluster's URL (e.g. https://elasticsearch:9200) or cloud_id",
                        ));
                    }
                };
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(invalid(
                        "sink.url",
                        &url,
                        "expected http://host:port or https://host:port",
                    ));
                }
                let client_cert = match (&s.client_cert_file, &s.client_key_file) {
                    (Some(c), Some(k)) => Some((c.clone(), k.clone())),
                    (None, None) => None,
                    (c, _) => {
                        return Err(invalid(
                            if c.is_some() {
                                "sink.client_key_file"
                            } else {
                                "sink.client_cert_file"
                            },
                            "none",
                            "a client certificate needs both client_cert_file and client_key_file",
                        ));
                    }
                };
                let tls = crate::sink::es::connect::Tls {
                    ca_file: s.ca_file.clone(),
                    client_cert,
                    insecure_skip_verify: s.tls_insecure_skip_verify.unwrap_or(false),
                };
                // Opened now, not when the sink starts: a bad file stops the agent before
                // it reads a line.
                crate::sink::es::connect::check_files(&tls)
                    .map_err(|(field, path, why)| invalid(field, path, why))?;
                let destination = match &s.logstash_prefix {
                    Some(prefix) => {
                        crate::sink::es::bulk::check_name(prefix)
                            .map_err(|why| invalid("sink.logstash_prefix", prefix, why))?;
                        crate::sink::es::bulk::Destination::DailyIndex {
                            prefix: prefix.clone(),
                        }
                    }
                    None => {
                        let ns = s.namespace.clone().unwrap_or_else(|| "default".to_owned());
                        crate::sink::es::bulk::check_name(&ns)
                            .map_err(|why| invalid("sink.namespace", &ns, why))?;
                        crate::sink::es::bulk::Destination::DataStream { namespace: ns }
                    }
                };
                let read_secret = |field: &'static str,
                                   path: &Option<PathBuf>,
                                   var: &str|
                 -> Result<Option<String>, ConfigError> {
                    if let Some(p) = path {
                        let text = std::fs::read_to_string(p)
                            .map_err(|e| invalid(field, p, format!("cannot read it: {e}")))?;
                        return Ok(Some(text.trim().to_owned()));
                    }
                    Ok(env(var).filter(|v| !v.is_empty()))
                };
                let api_key =
                    read_secret("sink.api_key_file", &s.api_key_file, "MESHTRAIL_ES_API_KEY")?;
                let bearer = read_secret(
                    "sink.bearer_token_file",
                    &s.bearer_token_file,
                    "MESHTRAIL_ES_BEARER_TOKEN",
                )?;
                let authorization = match (&s.username, api_key, bearer) {
                    (Some(user), None, None) => {
                        let password = read_secret(
                            "sink.password_file",
                            &s.password_file,
                            "MESHTRAIL_ES_PASSWORD",
                        )?
                        .ok_or_else(|| {
                            invalid(
                                "sink.password_file",
                                "none",
                                "a username needs password_file or $MESHTRAIL_ES_PASSWORD",
                            )
                        })?;
                        Some(Secret(format!(
                            "Basic {}",
                            base64(format!("{user}:{password}").as_bytes())
                        )))
                    }
                    (None, Some(key), None) => Some(Secret(format!("ApiKey {key}"))),
                    (None, None, Some(token)) => Some(Secret(format!("Bearer {token}"))),
                    (None, None, None) => None,
                    _ => {
                        return Err(invalid(
                            "sink.username/api_key_file/bearer_token_file",
                            "(several set)",
                            "give one of: username and password, an API key, a bearer token",
                        ));
                    }
                };
                let opensearch = match s.distribution.as_deref() {
                    None | Some("elasticsearch") => false,
                    Some("opensearch") => true,
                    Some(other) => {
                        return Err(invalid(
                            "sink.distribution",
                            other,
                            "expected elasticsearch or opensearch",
                        ));
                    }
                };
                if opensearch
                    && authorization
                        .as_ref()
                        .is_some_and(|a| a.0.starts_with("ApiKey "))
                {
                    return Err(invalid(
                        "sink.api_key_file",
                        "(set)",
                        "OpenSearch has no Elasticsearch API keys: use username and password, or a bearer token",
                    ));
                }
                let retention_days = s.retention_days.unwrap_or(30);
                if !(1..=3650).contains(&retention_days) {
                    return Err(invalid(
                        "sink.retention_days",
                        retention_days,
                        "expected 1 to 3650 days",
                    ));
                }
                let routes = crate::sink::es::route::Route::from_config(
                    s.routes.as_deref().unwrap_or_default(),
                    &destination,
                )?;
                let max_batch_bytes = s.max_batch_bytes.unwrap_or(5 << 20);
                if !((64 << 10)..=(100 << 20)).contains(&max_batch_bytes) {
                    return Err(invalid(
                        "sink.max_batch_bytes",
                        max_batch_bytes,
                        "expected 65536 to 104857600 (Elasticsearch refuses bodies over http.max_content_length, 100mb by default)",
                    ));
                }
                let max_batch_docs = s.max_batch_docs.unwrap_or(5000);
                if !(1..=100_000).contains(&max_batch_docs) {
                    return Err(invalid(
                        "sink.max_batch_docs",
                        max_batch_docs,
                        "expected 1 to 100000",
                    ));
                }
                let max_concurrent_requests = s.max_concurrent_requests.unwrap_or(8);
                if !(1..=32).contains(&max_concurrent_requests) {
                    return Err(invalid(
                        "sink.max_concurrent_requests",
                        max_concurrent_requests,
                        "expected 1 to 32",
                    ));
                }
                Sink::Elasticsearch(EsSettings {
                    url: url.trim_end_matches('/').to_owned(),
                    destination,
                    authorization,
                    gzip: s.gzip.unwrap_or(true),
                    gzip_writer: match s.gzip_writer.as_deref() {
                        None | Some("meshtrail") => crate::sink::es::gzip::Writer::Meshtrail,
                        Some("zlib") => crate::sink::es::gzip::Writer::Zlib,
                        Some(other) => {
                            return Err(invalid(
                                "sink.gzip_writer",
                                other,
                                "expected meshtrail (the agent's own deflate writer) or zlib (zlib-rs through flate2, level 1)",
                            ));
                        }
                    },
                    max_batch_bytes,
                    max_batch_docs,
                    max_concurrent_requests,
                    dead_letter_path: {
                        let path = s
                            .dead_letter_path
                            .clone()
                            .unwrap_or_else(|| data_dir.join("dead-letters.ndjson"));
                        writable(&path)
                            .map_err(|why| invalid("sink.dead_letter_path", &path, why))?;
                        path
                    },
                    install_templates: s.install_templates.unwrap_or(true),
                    tls,
                    routes,
                    opensearch,
                    retention_days,
                })
            }
            "file" if s.encode.is_some() => {
                return Err(invalid(
                    "sink.encode",
                    s.encode,
                    "encode belongs to the blackhole sink",
                ));
            }
            "file" => {
                let max_bytes = s.max_file_bytes.unwrap_or(100 << 20);
                if max_bytes < 1 << 20 {
                    return Err(invalid(
                        "sink.max_file_bytes",
                        max_bytes,
                        "expected at least 1048576 bytes (1 MiB)",
                    ));
                }
                let max_files = s.max_files.unwrap_or(5);
                if max_files > 1000 {
                    return Err(invalid(
                        "sink.max_files",
                        max_files,
                        "expected at most 1000",
                    ));
                }
                Sink::File {
                    path: s.path.unwrap_or_else(|| data_dir.join("events.ndjson")),
                    max_bytes,
                    max_files,
                }
            }
            other => {
                return Err(invalid(
                    "sink.type",
                    other,
                    "expected stdout, file, blackhole or elasticsearch",
                ));
            }
        };
        let shutdown = self.shutdown_timeout_secs.unwrap_or(25);
        if !(1..=3600).contains(&shutdown) {
            return Err(invalid(
                "shutdown_timeout_secs",
                shutdown,
                "expected 1 to 3600 seconds",
            ));
        }
        let m = self.metrics;
        let metrics_address = match m.address.as_deref() {
            Some("off") => None,
            Some(a) => Some(a.parse().map_err(|e| {
                invalid(
                    "metrics.address",
                    a,
                    format!("{e}: expected host:port such as 0.0.0.0:9947, or off"),
                )
            })?),
            None => Some(std::net::SocketAddr::from(([0, 0, 0, 0], 9947))),
        };
        let max_series = m.max_series.unwrap_or(20_000);
        if !(100..=10_000_000).contains(&max_series) {
            return Err(invalid(
                "metrics.max_series",
                max_series,
                "expected 100 to 10000000",
            ));
        }
        let kubernetes = self.kubernetes.validate(env)?;
        Ok(Settings {
            kubernetes,
            metrics_address,
            max_series,
            node_name: self
                .node_name
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| default_node_name(env)),
            cluster_name: self.cluster_name.or_else(|| env("MESHTRAIL_CLUSTER_NAME")),
            data_dir,
            include,
            exclude,
            framing,
            start_at,
            poll_interval: Duration::from_millis(poll_ms),
            scan_interval: Duration::from_millis(scan_ms),
            read_block_bytes,
            max_line_bytes,
            rotate_wait: Duration::from_secs(rotate_wait),
            formats,
            workers,
            max_in_flight_bytes,
            keep_original: p.keep_original.unwrap_or(false),
            sink,
            shutdown_timeout: Duration::from_secs(shutdown),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn settings(yaml: &str) -> Result<Settings, ConfigError> {
        Config::parse(yaml, "test.yaml")?.validate(&no_env)
    }

    #[test]
    fn no_config_is_a_node_default() {
        let s = settings("").unwrap();
        assert_eq!(s.include, ["/var/log/containers/*.log"]);
        assert_eq!(s.data_dir, PathBuf::from("/var/lib/meshtrail"));
        assert_eq!(
            (s.framing, s.start_at, s.sink.clone()),
            (Framing::Auto, StartAt::Beginning, Sink::Stdout)
        );
        assert_eq!(s.max_in_flight_bytes, 16 << 20);
    }

    #[test]
    fn kubernetes_source_follows_the_environment_and_is_checked() {
        assert_eq!(
            settings("").unwrap().kubernetes,
            None,
            "off outside a cluster"
        );
        let in_cluster = |k: &str| match k {
            "KUBERNETES_SERVICE_HOST" => Some("10.96.0.1".to_owned()),
            "NODE_IP" => Some("192.168.0.10".to_owned()),
            _ => None,
        };
        let k = Config::parse("", "t")
            .unwrap()
            .validate(&in_cluster)
            .unwrap()
            .kubernetes
            .unwrap();
        assert_eq!(k.source, KubeSource::Api { kubeconfig: None });
        assert_eq!(
            (k.deleted_pod_grace, k.start_jitter, k.enrich_peers),
            (Duration::from_secs(60), Duration::from_secs(5), false)
        );
        let k = Config::parse("kubernetes:\n  source: kubelet\n", "t")
            .unwrap()
            .validate(&in_cluster)
            .unwrap()
            .kubernetes
            .unwrap();
        assert!(
            matches!(&k.source, KubeSource::Kubelet { url, insecure_skip_verify: false, .. } if url == "https://192.168.0.10:10250"),
            "{k:?}"
        );
        let err = settings("kubernetes:\n  source: kubelet\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("kubernetes.kubelet_url") && err.contains("NODE_IP"),
            "{err}"
        );
        let err = settings("kubernetes:\n  source: apiserver\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("kubernetes.source") && err.contains("api, kubelet or off"),
            "{err}"
        );
        let err = settings("kubernetes:\n  source: api\n  start_jitter_secs: 9999\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("kubernetes.start_jitter_secs"), "{err}");
    }

    #[test]
    fn environment_overrides() {
        let env = |k: &str| match k {
            "NODE_NAME" => Some("node-7".to_owned()),
            "MESHTRAIL_CLUSTER_NAME" => Some("prod".to_owned()),
            "MESHTRAIL_DATA_DIR" => Some("/data".to_owned()),
            _ => None,
        };
        let s = Config::parse("data_dir: /x", "t")
            .unwrap()
            .validate(&env)
            .unwrap();
        assert_eq!(
            (s.node_name.as_str(), s.cluster_name.as_deref(), s.data_dir),
            ("node-7", Some("prod"), PathBuf::from("/data"))
        );
    }

    #[test]
    fn full_file() {
        let s = settings(
            "node_name: n1\ntail:\n  include: [/logs/*.log]\n  framing: cri\n  start_at: end\n  poll_interval_ms: 50\n\
             pipeline:\n  formats: [meshtrail, auto]\n  workers: 3\nsink:\n  type: file\n  path: /tmp/out.ndjson\n  max_files: 2\n",
        )
        .unwrap();
        assert_eq!(
            (s.framing, s.start_at, s.workers),
            (Framing::Cri, StartAt::End, 3)
        );
        assert_eq!(
            s.sink,
            Sink::File {
                path: "/tmp/out.ndjson".into(),
                max_bytes: 100 << 20,
                max_files: 2
            }
        );
    }

    macro_rules! refused {
        ($name:ident, $yaml:expr, $($needle:expr),+) => {
            #[test]
            fn $name() {
                let e = settings($yaml).unwrap_err().to_string();
                $(assert!(e.contains($needle), "{e:?} lacks {:?}", $needle);)+
            }
        };
    }

    refused!(
        unknown_field,
        "tail:\n  incude: [/x]\n",
        "unknown field `incude`",
        "line 2"
    );
    refused!(
        wrong_type,
        "pipeline:\n  workers: many\n",
        "workers",
        "invalid type"
    );
    refused!(
        unknown_gzip_writer,
        "sink:\n  type: elasticsearch\n  url: http://127.0.0.1:9200\n  gzip_writer: lzma\n",
        "`sink.gzip_writer`",
        "lzma",
        "expected meshtrail"
    );
    refused!(
        scan_more_often_than_poll,
        "tail:\n  poll_interval_ms: 500\n  scan_interval_ms: 100\n",
        "`tail.scan_interval_ms`",
        "100",
        "tail.poll_interval_ms"
    );

    #[test]
    fn scan_interval_defaults_to_ten_seconds_or_four_polls_under_wildcard_dirs() {
        let s = settings("tail:\n  poll_interval_ms: 50\n").unwrap();
        assert_eq!(
            (s.poll_interval, s.scan_interval),
            (Duration::from_millis(50), Duration::from_secs(10))
        );
        let s =
            settings("tail:\n  poll_interval_ms: 50\n  include: [/l/pods/*/*/*.log]\n").unwrap();
        assert_eq!(
            (s.poll_interval, s.scan_interval),
            (Duration::from_millis(50), Duration::from_millis(200))
        );
        let s = settings("tail:\n  scan_interval_ms: 5000\n").unwrap();
        assert_eq!(
            (s.poll_interval, s.scan_interval),
            (Duration::from_millis(250), Duration::from_secs(5))
        );
    }

    refused!(
        relative_glob,
        "tail:\n  include: [logs/*.log]\n",
        "`tail.include`",
        "\"logs/*.log\"",
        "absolute"
    );
    refused!(
        bad_framing,
        "tail:\n  framing: json\n",
        "`tail.framing`",
        "\"json\"",
        "cri"
    );
    refused!(
        bad_format,
        "pipeline:\n  formats: [istio-2]\n",
        "`pipeline.formats`",
        "istio-2",
        "unknown format"
    );
    refused!(
        bad_format_string,
        "pipeline:\n  formats: ['%A%%B%']\n",
        "`pipeline.formats`",
        "separator"
    );
    refused!(
        small_budget,
        "pipeline:\n  max_in_flight_bytes: 1000\n",
        "`pipeline.max_in_flight_bytes`",
        "1000",
        "at least"
    );
    refused!(
        bad_sink,
        "sink:\n  type: kafka\n",
        "`sink.type`",
        "kafka",
        "stdout, file, blackhole or elasticsearch"
    );
    refused!(
        es_without_url,
        "sink:\n  type: elasticsearch\n",
        "`sink.url`",
        "URL"
    );
    refused!(
        es_bad_namespace,
        "sink:\n  type: elasticsearch\n  url: http://es:9200\n  namespace: Prod-EU\n",
        "`sink.namespace`",
        "lower case"
    );
    refused!(
        es_user_without_password,
        "sink:\n  type: elasticsearch\n  url: http://es:9200\n  username: elastic\n",
        "`sink.password_file`"
    );

    #[test]
    fn es_transport_and_credentials_are_checked() {
        let es = |extra: &str| settings(&format!("sink:\n  type: elasticsearch\n{extra}"));
        let cloud = "  cloud_id: \"staging:dXMtZWFzdC0xLmF3cy5mb3VuZC5pbyRjZWM2ZjI2MWE3NGJmMjRjZTMzYmI4ODExYjg0Mjk0ZiRjNmMyY2E2ZDA0MjI0OWFmMGNjN2Q3YTllOTYyNTc0Mw==\"\n";
        let Sink::Elasticsearch(e) = es(cloud).unwrap().sink else {
            panic!("not elasticsearch")
        };
        assert_eq!(
            e.url,
            "https://cec6f261a74bf24ce33bb8811b84294f.us-east-1.aws.found.io"
        );
        let err = es(&format!("  url: https://es:9200\n{cloud}"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sink.cloud_id") && err.contains("not both"),
            "{err}"
        );
        let err = es("  url: ftp://es\n").unwrap_err().to_string();
        assert!(
            err.contains("sink.url") && err.contains("https://"),
            "{err}"
        );
        let err = es("  url: https://es:9200\n  client_cert_file: /c.pem\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sink.client_key_file"), "{err}");
        let dir = std::env::temp_dir().join(format!("meshtrail-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("k"), "key").unwrap();
        std::fs::write(dir.join("t"), "tok\n").unwrap();
        let err = es(&format!(
            "  url: https://es:9200\n  api_key_file: {0}/k\n  bearer_token_file: {0}/t\n",
            dir.display()
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("give one of"), "{err}");
        let Sink::Elasticsearch(e) = es(&format!(
            "  url: https://es:9200\n  bearer_token_file: {}/t\n",
            dir.display()
        ))
        .unwrap()
        .sink
        else {
            panic!("not elasticsearch")
        };
        assert_eq!(e.authorization.map(|a| a.0), Some("Bearer tok".to_owned()));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn es_secrets_are_never_printed() {
        let env = |k: &str| (k == "MESHTRAIL_ES_PASSWORD").then(|| "s3cret".to_owned());
        let s = Config::parse(
            "sink:\n  type: elasticsearch\n  url: http://es:9200/\n  username: elastic\n",
            "t",
        )
        .unwrap()
        .validate(&env)
        .unwrap();
        let Sink::Elasticsearch(es) = &s.sink else {
            panic!()
        };
        assert_eq!(
            es.authorization,
            Some(Secret("Basic ZWxhc3RpYzpzM2NyZXQ=".into()))
        );
        assert_eq!(es.url, "http://es:9200");
        let printed = format!("{s:?}");
        assert!(
            !printed.contains("s3cret")
                && !printed.contains("ZWxh")
                && printed.contains("<redacted>"),
            "{printed}"
        );
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
    }
    refused!(
        path_on_stdout,
        "sink:\n  path: /x\n",
        "`sink.type`",
        "file sink"
    );
    refused!(
        zero_workers,
        "pipeline:\n  workers: 0\n",
        "`pipeline.workers`",
        "0"
    );
    refused!(
        bad_start,
        "tail:\n  start_at: middle\n",
        "`tail.start_at`",
        "middle"
    );
    refused!(not_yaml, "tail: [", "test.yaml");
    refused!(
        bad_metrics_address,
        "metrics:\n  address: nine\n",
        "`metrics.address`",
        "nine",
        "host:port"
    );
}
