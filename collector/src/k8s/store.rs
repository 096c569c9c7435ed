//! The metadata caches the workers read: this node's pods, the namespaces' labels and,
//! opt-in, every pod IP's workload. Filled by a source (`api` watches or the kubelet),
//! read once per batch of lines, never waited on.
//!
//! A deleted pod stays until it has not been looked up for the grace period: its files may
//! still be draining, and a Job that logs and exits within milliseconds is still enriched.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::project::{ContainerInfo, PodInfo};
use crate::enrich::PathMeta;

/// A pod in the cache.
struct Entry {
    info: Arc<PodInfo>,
    /// When a delete was seen.
    deleted_at: Option<Instant>,
    /// Seconds since the store's start of the last lookup.
    last_used: AtomicU64,
}

/// A peer's workload: the value of the IP map.
#[derive(Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its namespace.
    pub namespace: String,
    /// Its workload.
    pub workload: String,
}

#[derive(Default)]
struct Pods {
    by_uid: HashMap<String, Entry>,
    /// `namespace/name` → uid, for paths that name a pod without its uid.
    by_name: HashMap<String, String>,
}

#[derive(Default)]
struct PeerMap {
    by_ip: HashMap<IpAddr, (String, Arc<Peer>)>,
    /// uid → IP, to forget a pod's IP when it is deleted.
    by_uid: HashMap<String, IpAddr>,
}

/// What a line's pod is, as the worker takes it.
#[derive(Clone, Debug)]
pub struct PodView {
    /// The pod.
    pub pod: Arc<PodInfo>,
    /// Its namespace's labels, rendered.
    pub namespace_labels: Option<Arc<[u8]>>,
    /// Which of its containers wrote the file, found once per lookup.
    container: Option<usize>,
}

impl PodView {
    /// The container that wrote the file, when the pod lists it.
    pub fn container(&self) -> Option<&ContainerInfo> {
        self.container.and_then(|i| self.pod.containers.get(i))
    }
}

/// The caches.
pub struct Store {
    started: Instant,
    grace: Duration,
    pods: RwLock<Pods>,
    namespaces: RwLock<HashMap<String, Arc<[u8]>>>,
    peers: RwLock<PeerMap>,
    /// The first pod list has been applied.
    synced: AtomicBool,
    /// Pods applied during a re-list, to find those that vanished meanwhile.
    relist: std::sync::Mutex<Option<HashSet<String>>>,
}

impl Store {
    /// Empty caches; deleted pods are kept `grace` past their last use.
    pub fn new(grace: Duration) -> Store {
        Store {
            started: Instant::now(),
            grace,
            pods: RwLock::default(),
            namespaces: RwLock::default(),
            peers: RwLock::default(),
            synced: AtomicBool::new(false),
            relist: std::sync::Mutex::new(None),
        }
    }

    fn now_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Whether the first pod list arrived.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// The pod a file's path names, by uid, else by namespace and name.
    pub fn lookup(&self, path: &PathMeta) -> Option<PodView> {
        let pods = self.pods.read().unwrap_or_else(|p| p.into_inner());
        let entry = match &path.pod_uid {
            Some(uid) => pods.by_uid.get(uid),
            None => {
                let key = format!("{}/{}", path.namespace.as_deref()?, path.pod.as_deref()?);
                pods.by_name.get(&key).and_then(|uid| pods.by_uid.get(uid))
            }
        }?;
        entry.last_used.store(self.now_secs(), Ordering::Relaxed);
        let pod = entry.info.clone();
        drop(pods);
        let namespace_labels = self
            .namespaces
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&pod.namespace)
            .cloned();
        let container = path
            .container
            .as_deref()
            .and_then(|c| pod.containers.iter().position(|i| i.name == c));
        Some(PodView {
            pod,
            namespace_labels,
            container,
        })
    }

    /// A re-list begins: pods not applied before [`Store::relist_done`] are gone.
    pub fn relist_begin(&self) {
        *self.relist.lock().unwrap_or_else(|p| p.into_inner()) = Some(HashSet::new());
    }

    /// The re-list ended: pods it did not name are marked deleted.
    pub fn relist_done(&self) {
        let seen = self.relist.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(seen) = seen {
            let mut pods = self.pods.write().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            for (uid, e) in &mut pods.by_uid {
                if !seen.contains(uid) && e.deleted_at.is_none() {
                    e.deleted_at = Some(now);
                }
            }
        }
        self.synced.store(true, Ordering::Release);
    }

    /// Adds or replaces a pod.
    pub fn apply_pod(&self, info: PodInfo) {
        if let Some(seen) = self
            .relist
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            seen.insert(info.uid.clone());
        }
        let mut pods = self.pods.write().unwrap_or_else(|p| p.into_inner());
        let key = format!("{}/{}", info.namespace, info.name);
        let uid = info.uid.clone();
        pods.by_name.insert(key, uid.clone());
        let last_used = AtomicU64::new(self.now_secs());
        pods.by_uid.insert(
            uid,
            Entry {
                info: Arc::new(info),
                deleted_at: None,
                last_used,
            },
        );
    }

    /// Marks a pod deleted; it is dropped after the grace period.
    pub fn delete_pod(&self, uid: &str) {
        let mut pods = self.pods.write().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = pods.by_uid.get_mut(uid) {
            e.deleted_at.get_or_insert_with(Instant::now);
        }
    }

    /// Drops deleted pods unused for the grace period.
    pub fn sweep(&self) {
        let now = self.now_secs();
        let grace = self.grace;
        let mut pods = self.pods.write().unwrap_or_else(|p| p.into_inner());
        let Pods { by_uid, by_name } = &mut *pods;
        by_uid.retain(|_, e| {
            let idle = Duration::from_secs(now.saturating_sub(e.last_used.load(Ordering::Relaxed)));
            !(e.deleted_at.is_some_and(|d| d.elapsed() >= grace) && idle >= grace)
        });
        by_name.retain(|_, uid| by_uid.contains_key(uid));
    }

    /// Sets a namespace's rendered labels.
    pub fn apply_namespace(&self, name: String, labels: Vec<u8>) {
        let mut ns = self.namespaces.write().unwrap_or_else(|p| p.into_inner());
        if labels.is_empty() {
            ns.remove(&name);
        } else {
            ns.insert(name, labels.into());
        }
    }

    /// Forgets a namespace.
    pub fn delete_namespace(&self, name: &str) {
        self.namespaces
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    /// Replaces every namespace (after a list).
    pub fn replace_namespaces(&self, all: HashMap<String, Arc<[u8]>>) {
        *self.namespaces.write().unwrap_or_else(|p| p.into_inner()) = all;
    }

    /// Records the workload behind a pod IP.
    pub fn apply_peer(&self, uid: &str, ip: IpAddr, namespace: &str, workload: &str) {
        let mut peers = self.peers.write().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = peers.by_uid.insert(uid.to_owned(), ip)
            && old != ip
        {
            peers.by_ip.remove(&old);
        }
        let unchanged = peers
            .by_ip
            .get(&ip)
            .is_some_and(|(u, p)| u == uid && p.namespace == namespace && p.workload == workload);
        if !unchanged {
            let peer = Arc::new(Peer {
                namespace: namespace.to_owned(),
                workload: workload.to_owned(),
            });
            peers.by_ip.insert(ip, (uid.to_owned(), peer));
        }
    }

    /// Forgets a pod's IP, unless another pod took it meanwhile.
    pub fn delete_peer(&self, uid: &str) {
        let mut peers = self.peers.write().unwrap_or_else(|p| p.into_inner());
        if let Some(ip) = peers.by_uid.remove(uid)
            && peers.by_ip.get(&ip).is_some_and(|(u, _)| u == uid)
        {
            peers.by_ip.remove(&ip);
        }
    }

    /// Forgets every peer not in `keep` (after a re-list).
    pub fn retain_peers(&self, keep: &HashSet<String>) {
        let mut peers = self.peers.write().unwrap_or_else(|p| p.into_inner());
        let PeerMap { by_ip, by_uid } = &mut *peers;
        by_uid.retain(|uid, _| keep.contains(uid));
        by_ip.retain(|_, (uid, _)| keep.contains(uid));
    }

    /// The workload behind an IP.
    pub fn peer(&self, ip: IpAddr) -> Option<Arc<Peer>> {
        self.peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_ip
            .get(&ip)
            .map(|(_, p)| p.clone())
    }

    /// Whether any peer is known (the IP map is in use).
    pub fn has_peers(&self) -> bool {
        !self
            .peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_ip
            .is_empty()
    }

    /// (pods, namespaces, peers) cached, and the heap bytes the pods' projections hold.
    pub fn sizes(&self) -> (usize, usize, usize, usize) {
        let pods = self.pods.read().unwrap_or_else(|p| p.into_inner());
        let bytes = pods
            .by_uid
            .values()
            .map(|e| std::mem::size_of::<Entry>() + e.info.heap_bytes())
            .sum();
        let n = pods.by_uid.len();
        drop(pods);
        let ns = self
            .namespaces
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        let peers = self
            .peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_ip
            .len();
        (n, ns, peers, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::project::WorkloadKind;

    fn info(uid: &str, name: &str) -> PodInfo {
        PodInfo {
            uid: uid.into(),
            namespace: "ns".into(),
            name: name.into(),
            ip: None,
            workload_kind: WorkloadKind::Pod,
            workload: name.into(),
            gateway: None,
            containers: Vec::new(),
            rendered: Vec::new(),
        }
    }

    fn path(uid: Option<&str>, name: &str) -> PathMeta {
        PathMeta {
            namespace: Some("ns".into()),
            pod: Some(name.into()),
            pod_uid: uid.map(Into::into),
            ..PathMeta::default()
        }
    }

    #[test]
    fn lookup_by_uid_or_name() {
        let s = Store::new(Duration::from_secs(60));
        s.apply_pod(info("u1", "web-1"));
        assert_eq!(s.lookup(&path(Some("u1"), "x")).unwrap().pod.name, "web-1");
        assert_eq!(s.lookup(&path(None, "web-1")).unwrap().pod.uid, "u1");
        assert!(s.lookup(&path(Some("u2"), "web-1")).is_none());
    }

    #[test]
    fn deleted_pods_outlive_their_last_use() {
        let s = Store::new(Duration::ZERO);
        s.apply_pod(info("u1", "job-1"));
        s.delete_pod("u1");
        // Still there until swept.
        assert!(s.lookup(&path(Some("u1"), "job-1")).is_some());
        s.sweep();
        assert!(s.lookup(&path(Some("u1"), "job-1")).is_none());

        let s = Store::new(Duration::from_secs(3600));
        s.apply_pod(info("u1", "job-1"));
        s.delete_pod("u1");
        s.sweep();
        assert!(s.lookup(&path(Some("u1"), "job-1")).is_some());
    }

    #[test]
    fn relist_marks_vanished_pods_deleted() {
        let s = Store::new(Duration::ZERO);
        s.apply_pod(info("u1", "a"));
        s.apply_pod(info("u2", "b"));
        s.relist_begin();
        s.apply_pod(info("u2", "b"));
        s.relist_done();
        s.sweep();
        assert!(s.lookup(&path(Some("u1"), "a")).is_none());
        assert!(s.lookup(&path(Some("u2"), "b")).is_some());
        assert!(s.synced());
    }

    #[test]
    fn peers_follow_ip_reuse() {
        let s = Store::new(Duration::ZERO);
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        s.apply_peer("u1", ip, "shop", "web");
        assert_eq!(s.peer(ip).unwrap().workload, "web");
        // The IP goes to a new pod before the old one's delete arrives.
        s.apply_peer("u2", ip, "shop", "cart");
        s.delete_peer("u1");
        assert_eq!(s.peer(ip).unwrap().workload, "cart");
        s.delete_peer("u2");
        assert!(s.peer(ip).is_none());
    }
}
