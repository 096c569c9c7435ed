//! The kubelet source: this node's kubelet `GET /pods`, polled, for clusters whose API
//! server must be spared. The kubelet has no watch, no selectors and no namespaces: each
//! poll replaces the pod cache, and `kubernetes.namespace_labels` is not available.
//!
//! It needs `get` on `nodes/proxy` (the kubelet authorizes `/pods` so) and the service
//! account token; the kubelet's serving certificate is often self-signed, hence
//! `kubelet_ca_file` and, as an explicit opt-in, `kubelet_insecure_skip_verify`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::List;
use k8s_openapi::api::core::v1::Pod;
use kube::config::AuthInfo;
use kube::{Client, Config};
use tracing::{error, info, warn};

use super::KubeMetrics;
use super::count::CountLayer;
use super::project::PodInfo;
use super::store::Store;

/// The service account token the kubelet authenticates.
const TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// The cluster CA, the default trust for the kubelet's certificate.
const CA: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

fn client(
    url: &str,
    ca_file: Option<&Path>,
    insecure: bool,
    metrics: &Arc<KubeMetrics>,
) -> Result<Client, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("kubernetes.kubelet_url {url}: {e}"))?;
    let mut config = Config::new(uri);
    config.default_retry = false;
    config.read_timeout = Some(Duration::from_secs(30));
    let mut auth = AuthInfo::default();
    if Path::new(TOKEN).exists() {
        auth.token_file = Some(TOKEN.to_owned());
    }
    config.auth_info = auth;
    if insecure {
        warn!(
            url,
            "kubernetes.kubelet_insecure_skip_verify is on: the kubelet's certificate is not checked"
        );
        config.accept_invalid_certs = true;
    } else if let Some(ca) = ca_file.or_else(|| Some(Path::new(CA)).filter(|p| p.exists())) {
        config.root_cert_file = Some(ca.to_owned());
    }
    let builder = kube::client::ClientBuilder::try_from(config).map_err(|e| e.to_string())?;
    Ok(builder.with_layer(&CountLayer(metrics.clone())).build())
}

/// Polls until the process ends.
pub async fn run(
    url: &str,
    ca_file: Option<&Path>,
    insecure: bool,
    poll: Duration,
    annotations: &[String],
    store: &Store,
    metrics: &Arc<KubeMetrics>,
) {
    let client = match client(url, ca_file, insecure, metrics) {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, "cannot configure the kubelet client; events carry path metadata only");
            return;
        }
    };
    info!(
        url,
        poll_secs = poll.as_secs(),
        "reading pod metadata from the kubelet"
    );
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let request = match http::Request::get("/pods").body(Vec::new()) {
            Ok(r) => r,
            Err(e) => {
                error!(error = %e, "building the kubelet request");
                return;
            }
        };
        match client.request::<List<Pod>>(request).await {
            Ok(list) => {
                store.relist_begin();
                for pod in &list.items {
                    if let Some(info) = PodInfo::from_pod(pod, annotations) {
                        store.apply_pod(info);
                    }
                }
                store.relist_done();
            }
            Err(e) => warn!(error = %e, "kubelet /pods"),
        }
    }
}
