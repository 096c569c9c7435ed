//! The agent's configuration: one YAML file (a ConfigMap in production), every field with
//! a default, validated once at start into [`Settings`]. A bad value is refused with the
//! field, the value and why.
//!
//! This module only assembles: each stage owns its section and its checks
//! ([`crate::tail::config`], [`crate::sink::config`], [`crate::sink::es::config`],
//! [`crate::k8s::config`]); here are the top-level fields, `pipeline:`, `metrics:` and the
//! checks that span stages (the in-flight budget against the read size).

use std::path::{Path, PathBuf};
use std::time::Duration;

use meshtrail_parsers::envoy::Parser;
use serde::Deserialize;

use crate::config_error::invalid;
pub use crate::config_error::{ConfigError, Env};
pub use crate::k8s::config::{KubeSettings, KubeSource, KubernetesConfig};
pub use crate::sink::config::{Sink, SinkConfig};
pub use crate::sink::es::config::{EsSettings, RouteConfig, Secret};
pub use crate::tail::config::{StartAt, TailConfig, TailSettings};

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

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `host.name`.
    pub node_name: String,
    /// `orchestrator.cluster.name`.
    pub cluster_name: Option<String>,
    /// Checkpoints directory.
    pub data_dir: PathBuf,
    /// What is read, and how.
    pub tail: TailSettings,
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
        let tail = self.tail.validate()?;
        let read_block_bytes = tail.read_block_bytes;

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

        let sink = self.sink.validate(&data_dir, env)?;
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
            tail,
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
    use meshtrail_parsers::frame::Framing;

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
        assert_eq!(s.tail.include, ["/var/log/containers/*.log"]);
        assert_eq!(s.data_dir, PathBuf::from("/var/lib/meshtrail"));
        assert_eq!(
            (s.tail.framing, s.tail.start_at, s.sink.clone()),
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
            (s.tail.framing, s.tail.start_at, s.workers),
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
            (s.tail.poll_interval, s.tail.scan_interval),
            (Duration::from_millis(50), Duration::from_secs(10))
        );
        let s =
            settings("tail:\n  poll_interval_ms: 50\n  include: [/l/pods/*/*/*.log]\n").unwrap();
        assert_eq!(
            (s.tail.poll_interval, s.tail.scan_interval),
            (Duration::from_millis(50), Duration::from_millis(200))
        );
        let s = settings("tail:\n  scan_interval_ms: 5000\n").unwrap();
        assert_eq!(
            (s.tail.poll_interval, s.tail.scan_interval),
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
        "sink",
        "unknown variant `kafka`",
        "`stdout`, `file`, `blackhole`, `elasticsearch`"
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
    }
    refused!(
        path_on_stdout,
        "sink:\n  path: /x\n",
        "sink (type stdout)",
        "unknown field `path`"
    );
    refused!(
        es_field_on_file,
        "sink:\n  type: file\n  url: http://127.0.0.1:9200\n",
        "sink (type file)",
        "unknown field `url`",
        "`path`, `max_file_bytes`, `max_files`"
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
