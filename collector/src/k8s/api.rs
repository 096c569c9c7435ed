//! The API-server source: one list and one watch per resource, kept open.
//!
//! * this node's pods (`fieldSelector=spec.nodeName=<node>`), the namespaces (for their
//!   labels) and, with `enrich_peers`, every pod, of which only IP → workload is kept;
//! * lists ask for `resourceVersion=0`, served from the API server's watch cache, paginated;
//! * kube-runtime's watcher re-watches from the last resource version when a watch ends,
//!   re-lists only after `410 Gone`, and backs off with jitter after errors.
//!
//! Whole objects are never kept: each event is projected ([`super::project`]) and dropped.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Config};
use tracing::{error, info, warn};

use super::KubeMetrics;
use super::config::KubeSettings;
use super::count::CountLayer;
use super::project::{self, PodInfo};
use super::store::Store;

/// Objects per list page.
const PAGE: u32 = 500;

/// A client for the cluster: `kubeconfig` when given, else in-cluster, else `$KUBECONFIG`.
pub async fn client(
    kubeconfig: Option<&Path>,
    metrics: &Arc<KubeMetrics>,
) -> Result<Client, String> {
    let mut config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| format!("kubernetes.kubeconfig {}: {e}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| format!("kubernetes.kubeconfig {}: {e}", path.display()))?
        }
        None => Config::infer()
            .await
            .map_err(|e| format!("no in-cluster service account and no usable $KUBECONFIG: {e}"))?,
    };
    // The watcher has its own backoff; a retry inside the client would hide requests from
    // the request counter.
    config.default_retry = false;
    let builder = kube::client::ClientBuilder::try_from(config).map_err(|e| e.to_string())?;
    Ok(builder.with_layer(&CountLayer(metrics.clone())).build())
}

/// Runs the watches until the process ends.
pub async fn run(
    kubeconfig: Option<&Path>,
    node: &str,
    settings: &KubeSettings,
    store: &Store,
    metrics: &Arc<KubeMetrics>,
) {
    let mut wait = Duration::from_secs(1);
    let client = loop {
        match client(kubeconfig, metrics).await {
            Ok(c) => break c,
            Err(e) => {
                error!(error = %e, retry_in_secs = wait.as_secs(), "cannot configure the Kubernetes client");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(60));
            }
        }
    };
    info!(
        node,
        peers = settings.enrich_peers,
        "watching Kubernetes metadata"
    );
    let pods = watch_pods(client.clone(), node, &settings.annotations, store, metrics);
    let namespaces = watch_namespaces(client.clone(), store, metrics);
    let peers = async {
        if settings.enrich_peers {
            watch_peers(client.clone(), store, metrics).await;
        }
    };
    tokio::join!(pods, namespaces, peers);
}

fn config() -> watcher::Config {
    watcher::Config::default().any_semantic().page_size(PAGE)
}

async fn watch_pods(
    client: Client,
    node: &str,
    annotations: &[String],
    store: &Store,
    metrics: &KubeMetrics,
) {
    let api: Api<Pod> = Api::all(client);
    let cfg = config().fields(&format!("spec.nodeName={node}"));
    let mut events = watcher::watcher(api, cfg).default_backoff().boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init) => store.relist_begin(),
            Ok(Event::InitApply(pod) | Event::Apply(pod)) => {
                if let Some(info) = PodInfo::from_pod(&pod, annotations) {
                    store.apply_pod(info);
                }
            }
            Ok(Event::Delete(pod)) => {
                if let Some(uid) = &pod.metadata.uid {
                    store.delete_pod(uid);
                }
            }
            Ok(Event::InitDone) => store.relist_done(),
            Err(e) => {
                metrics.stream_error("pods");
                warn!(error = %e, "pod watch");
            }
        }
    }
}

async fn watch_namespaces(client: Client, store: &Store, metrics: &KubeMetrics) {
    let api: Api<Namespace> = Api::all(client);
    let mut events = watcher::watcher(api, config()).default_backoff().boxed();
    let mut listing: Option<HashMap<String, Arc<[u8]>>> = None;
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init) => listing = Some(HashMap::new()),
            Ok(Event::InitApply(ns)) => {
                if let (Some(all), Some((name, labels))) =
                    (listing.as_mut(), project::namespace_labels(&ns))
                    && !labels.is_empty()
                {
                    all.insert(name, labels.into());
                }
            }
            Ok(Event::InitDone) => {
                if let Some(all) = listing.take() {
                    store.replace_namespaces(all);
                }
            }
            Ok(Event::Apply(ns)) => {
                if let Some((name, labels)) = project::namespace_labels(&ns) {
                    store.apply_namespace(name, labels);
                }
            }
            Ok(Event::Delete(ns)) => {
                if let Some(name) = &ns.metadata.name {
                    store.delete_namespace(name);
                }
            }
            Err(e) => {
                metrics.stream_error("namespaces");
                warn!(error = %e, "namespace watch");
            }
        }
    }
}

/// Every pod of the cluster, reduced to IP → (namespace, workload).
async fn watch_peers(client: Client, store: &Store, metrics: &KubeMetrics) {
    let api: Api<Pod> = Api::all(client);
    let mut events = watcher::watcher(api, config()).default_backoff().boxed();
    let mut listed: Option<HashSet<String>> = None;
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init) => listed = Some(HashSet::new()),
            Ok(Event::InitApply(pod) | Event::Apply(pod)) => {
                let Some(info) = PodInfo::from_pod(&pod, &[]) else {
                    continue;
                };
                if let Some(l) = listed.as_mut() {
                    l.insert(info.uid.clone());
                }
                // Host-network pods share the node's IP: it names no workload.
                let host_network = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.host_network)
                    .unwrap_or(false);
                match info.ip {
                    Some(ip) if !host_network => {
                        store.apply_peer(&info.uid, ip, &info.namespace, &info.workload);
                    }
                    _ => store.delete_peer(&info.uid),
                }
            }
            Ok(Event::Delete(pod)) => {
                if let Some(uid) = &pod.metadata.uid {
                    store.delete_peer(uid);
                }
            }
            Ok(Event::InitDone) => {
                if let Some(keep) = listed.take() {
                    store.retain_peers(&keep);
                }
            }
            Err(e) => {
                metrics.stream_error("peers");
                warn!(error = %e, "peer pod watch");
            }
        }
    }
}
