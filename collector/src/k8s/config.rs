//! `kubernetes:` as written and validated: where pod metadata comes from (API watches, the
//! kubelet, or nowhere) and how the store keeps it.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config_error::{ConfigError, Env, invalid};

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
    /// Applies the defaults and the environment and checks every value; `None` when off.
    pub fn validate(self, env: Env<'_>) -> Result<Option<KubeSettings>, ConfigError> {
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
