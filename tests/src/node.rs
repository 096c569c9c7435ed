//! A node's log layout in a temporary directory, and writers that append numbered CRI lines
//! to a container's log and rotate it as the kubelet does.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// `/var/log/pods` and `/var/log/containers` under a temporary root, plus a data directory.
pub struct Node {
    /// The root, removed on drop.
    pub root: PathBuf,
}

impl Node {
    /// A fresh layout named after the test.
    pub fn new(test: &str) -> Node {
        let root =
            std::env::temp_dir().join(format!("meshtrail-e2e-{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("containers")).unwrap();
        fs::create_dir_all(root.join("pods")).unwrap();
        fs::create_dir_all(root.join("data")).unwrap();
        Node { root }
    }

    /// Creates a container's log directory and its `/var/log/containers` symlink; returns the
    /// path of its `0.log`.
    pub fn container(&self, namespace: &str, pod: &str, container: &str) -> PathBuf {
        // A UUID, as the kubelet names the directory.
        let uid = format!(
            "{:08x}-0000-4000-8000-{:012x}",
            fnv(pod) as u32,
            fnv(container) & 0xffff_ffff_ffff
        );
        self.container_of(namespace, pod, &uid, container)
    }

    /// [`Node::container`] of the pod with this uid.
    pub fn container_of(&self, namespace: &str, pod: &str, uid: &str, container: &str) -> PathBuf {
        let dir = self
            .root
            .join(format!("pods/{namespace}_{pod}_{uid}/{container}"));
        fs::create_dir_all(&dir).unwrap();
        let log = dir.join("0.log");
        File::create(&log).unwrap();
        let id = format!("{:016x}", fnv(&format!("{pod}/{container}"))).repeat(4);
        let link = self
            .root
            .join(format!("containers/{pod}_{namespace}_{container}-{id}.log"));
        std::os::unix::fs::symlink(&log, link).unwrap();
        log
    }

    /// The configuration for an agent on this node, with `extra` YAML appended.
    pub fn config(&self, extra: &str) -> PathBuf {
        let path = self.root.join("meshtrail.yaml");
        let text = format!(
            "node_name: test-node\ncluster_name: test\ndata_dir: {root}/data\n\
             tail:\n  include: [\"{root}/containers/*.log\"]\n  poll_interval_ms: 50\n  rotate_wait_secs: 1\n\
             sink:\n  type: file\n  path: {root}/out/events.ndjson\n  max_file_bytes: 10000000000\n\
             metrics:\n  address: 127.0.0.1:0\n{extra}",
            root = self.root.display()
        );
        fs::write(&path, text).unwrap();
        path
    }

    /// The configuration for an agent shipping to the Elasticsearch at `url`, with `extra`
    /// lines appended under `sink:`.
    pub fn config_es(&self, url: &str, extra: &str) -> PathBuf {
        let path = self.root.join("meshtrail.yaml");
        let text = format!(
            "node_name: test-node\ncluster_name: test\ndata_dir: {root}/data\n\
             tail:\n  include: [\"{root}/containers/*.log\"]\n  poll_interval_ms: 50\n  rotate_wait_secs: 1\n\
             sink:\n  type: elasticsearch\n  url: {url}\n  dead_letter_path: {root}/out/dead-letters.ndjson\n{extra}\
             metrics:\n  address: 127.0.0.1:0\nshutdown_timeout_secs: 2\n",
            root = self.root.display()
        );
        fs::write(&path, text).unwrap();
        path
    }

    /// The sink's output so far.
    pub fn output(&self) -> String {
        fs::read_to_string(self.root.join("out/events.ndjson")).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// An Istio 1.9 access-log line with these values; `-` for the rest.
#[allow(
    clippy::too_many_arguments,
    reason = "one argument per field of the line under test"
)]
pub fn istio_line(
    code: u16,
    flags: &str,
    details: &str,
    utfr: &str,
    cluster: &str,
    authority: &str,
    sni: &str,
    route: &str,
) -> String {
    let request = if code == 0 {
        "- - -".to_owned()
    } else {
        "GET /api HTTP/1.1".to_owned()
    };
    format!(
        r#"[2026-11-24T10:00:00.000Z] "{request}" {code} {flags} {details} - "{utfr}" 100 200 12 - "-" "curl/8.5.0" "req" "{authority}" "10.44.1.27:8080" {cluster} 10.44.0.3:50000 10.44.0.9:8443 10.1.2.3:40312 {sni} {route}"#
    )
}

/// An Istio access-log line whose request id is `seq-<writer>-<n>`.
pub fn access_line(writer: &str, n: u64) -> String {
    format!(
        r#"[2026-11-24T10:00:00.000Z] "GET /api/{n} HTTP/1.1" 200 - via_upstream - "-" 0 512 3 2 "10.0.0.{}" "curl/8.5.0" "seq-{writer}-{n}" "shop.example.com" "10.44.1.27:8080" outbound|8080||web.shop.svc.cluster.local 10.44.0.3:50000 10.44.0.9:8443 10.1.2.3:40312 - default"#,
        n % 250 + 1
    )
}

/// Appends numbered CRI lines to one container log and rotates it like the kubelet.
pub struct Writer {
    /// The writer's name, in every line.
    pub name: String,
    path: PathBuf,
    out: BufWriter<File>,
    size: u64,
    /// Lines written.
    pub written: u64,
    rotations: u64,
}

impl Writer {
    /// Appends to `path` (a container's `0.log`).
    pub fn new(name: &str, path: &Path) -> Writer {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .unwrap();
        let size = file.metadata().unwrap().len();
        Writer {
            name: name.to_owned(),
            path: path.to_owned(),
            out: BufWriter::with_capacity(1 << 16, file),
            size,
            written: 0,
            rotations: 0,
        }
    }

    /// Writes line number `self.written`; every 97th is split into a `P` and an `F` record,
    /// as containerd splits long lines.
    pub fn line(&mut self) {
        let n = self.written;
        let body = access_line(&self.name, n);
        let ts = format!(
            "2026-11-24T10:{:02}:{:02}.{:09}Z",
            n / 60_000 % 60,
            n / 1000 % 60,
            n % 1_000_000_000
        );
        let text = if n % 97 == 3 {
            let (a, b) = body.split_at(body.len() / 2);
            format!("{ts} stdout P {a}\n{ts} stdout F {b}\n")
        } else {
            format!("{ts} stdout F {body}\n")
        };
        self.out.write_all(text.as_bytes()).unwrap();
        self.size += text.len() as u64;
        self.written += 1;
    }

    /// Writes a line as is (one CRI record, or anything else).
    pub fn raw(&mut self, text: &str) {
        self.out.write_all(text.as_bytes()).unwrap();
        self.size += text.len() as u64;
    }

    /// Flushes to the file.
    pub fn flush(&mut self) {
        self.out.flush().unwrap();
    }

    /// Bytes in the current file.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Kubelet rotation: rename `0.log` to `0.log.<n>`, start a new `0.log`, gzip every
    /// rotated file but the newest, keep `keep` rotated files.
    pub fn rotate(&mut self, keep: usize) {
        self.flush();
        self.rotations += 1;
        let rotated = PathBuf::from(format!("{}.{:08}", self.path.display(), self.rotations));
        fs::rename(&self.path, &rotated).unwrap();
        self.out = BufWriter::with_capacity(1 << 16, File::create(&self.path).unwrap());
        self.size = 0;
        let mut older: Vec<PathBuf> = fs::read_dir(self.path.parent().unwrap())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p != &self.path && p != &rotated)
            .collect();
        older.sort();
        for p in older
            .iter()
            .filter(|p| p.extension().is_none_or(|e| e != "gz"))
        {
            gzip(p);
        }
        let mut all: Vec<PathBuf> = fs::read_dir(self.path.parent().unwrap())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p != &self.path)
            .collect();
        all.sort();
        while all.len() > keep {
            fs::remove_file(all.remove(0)).unwrap();
        }
    }

    /// logrotate's copytruncate with `rotate 2`: `0.log.1` becomes `0.log.2`, the file is
    /// copied to `0.log.1`, then truncated in place.
    pub fn copytruncate(&mut self) {
        self.flush();
        let copy = PathBuf::from(format!("{}.1", self.path.display()));
        if copy.exists() {
            fs::rename(&copy, format!("{}.2", self.path.display())).unwrap();
        }
        fs::copy(&self.path, &copy).unwrap();
        OpenOptions::new()
            .write(true)
            .open(&self.path)
            .unwrap()
            .set_len(0)
            .unwrap();
        self.size = 0;
    }
}

/// Replaces `path` by `path.gz` as the kubelet does: compressed into `path.gz.tmp`, renamed,
/// then the original removed.
pub fn gzip(path: &Path) {
    let data = fs::read(path).unwrap();
    let gz = PathBuf::from(format!("{}.gz", path.display()));
    let tmp = PathBuf::from(format!("{}.gz.tmp", path.display()));
    let mut enc =
        flate2::write::GzEncoder::new(File::create(&tmp).unwrap(), flate2::Compression::fast());
    enc.write_all(&data).unwrap();
    enc.finish().unwrap();
    fs::rename(&tmp, &gz).unwrap();
    fs::remove_file(path).unwrap();
}

/// How often each `seq-<writer>-<n>` appears in NDJSON output.
pub fn count_seqs(output: &str) -> std::collections::HashMap<(String, u64), u32> {
    let mut counts = std::collections::HashMap::new();
    for line in output.lines() {
        let Some(at) = line.find("\"seq-") else {
            continue;
        };
        let rest = &line[at + 5..];
        let Some(end) = rest.find('"') else { continue };
        let Some((w, n)) = rest[..end].rsplit_once('-') else {
            continue;
        };
        if let Ok(n) = n.parse() {
            *counts.entry((w.to_owned(), n)).or_insert(0) += 1;
        }
    }
    counts
}

/// Checks that every line `0..written` of each writer appears exactly once; returns a
/// description of what is wrong.
pub fn exactly_once(output: &str, writers: &[(&str, u64)]) -> Result<(), String> {
    let counts = count_seqs(output);
    let mut lost = Vec::new();
    let mut dup = Vec::new();
    for (w, written) in writers {
        for n in 0..*written {
            match counts.get(&((*w).to_owned(), n)) {
                None => lost.push(format!("{w}-{n}")),
                Some(1) => {}
                Some(c) => dup.push(format!("{w}-{n} x{c}")),
            }
        }
    }
    let extra = counts.len() as u64
        - writers
            .iter()
            .map(|(_, n)| n)
            .sum::<u64>()
            .min(counts.len() as u64);
    if lost.is_empty() && dup.is_empty() && extra == 0 {
        return Ok(());
    }
    Err(format!(
        "{} lost (first: {:?}), {} duplicated (first: {:?}), {} unexpected",
        lost.len(),
        lost.iter().take(5).collect::<Vec<_>>(),
        dup.len(),
        dup.iter().take(5).collect::<Vec<_>>(),
        extra
    ))
}

fn write(w: &mut Writer, n: usize, line: &str) {
    for _ in 0..n {
        w.raw(&format!("2026-11-24T10:00:00.000000000Z stdout F {line}\n"));
    }
}

/// Writes 31 lines: 30 access logs of an ingress gateway, two sidecars and an egress
/// gateway with known counts of every security outcome, and one line of another program.
pub fn security_traffic(node: &Node) {
    let ingress = node.container(
        "istio-system",
        "istio-ingressgateway-7d4f8b6c9-x2x7q",
        "istio-proxy",
    );
    let sidecar = node.container("shop", "payment-5d9c7b8f4-abcde", "istio-proxy");
    let egress = node.container(
        "istio-system",
        "istio-egressgateway-6b8d9c7f5-qwert",
        "istio-proxy",
    );
    let out = "outbound|8080||web.shop.svc.cluster.local";
    let sni = "outbound_.8080_._.payment.shop.svc.cluster.local";
    let mut w = Writer::new("in", &ingress);
    write(
        &mut w,
        5,
        &istio_line(
            200,
            "-",
            "via_upstream",
            "-",
            out,
            "shop.example.com",
            "-",
            "r",
        ),
    );
    write(
        &mut w,
        3,
        &istio_line(
            429,
            "RL",
            "local_rate_limited",
            "-",
            out,
            "shop.example.com",
            "-",
            "r",
        ),
    );
    write(
        &mut w,
        2,
        &istio_line(
            401,
            "-",
            "jwt_authn_access_denied{Jwt_is_missing}",
            "-",
            out,
            "shop.example.com",
            "-",
            "r",
        ),
    );
    w.flush();
    let mut w = Writer::new("side", &sidecar);
    write(
        &mut w,
        4,
        &istio_line(
            403,
            "-",
            "rbac_access_denied_matched_policy[ns[shop]-policy[deny-web]-rule[0]]",
            "-",
            "inbound|8080||",
            "payment",
            sni,
            "-",
        ),
    );
    write(
        &mut w,
        6,
        &istio_line(
            200,
            "-",
            "via_upstream",
            "-",
            "inbound|8080||",
            "payment",
            sni,
            "-",
        ),
    );
    write(
        &mut w,
        2,
        &istio_line(
            503,
            "UF,URX",
            "upstream_reset_before_response_started{connection_failure}",
            "TLS error: 268435581:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED",
            "outbound|8080||ledger.shop.svc.cluster.local",
            "ledger",
            "-",
            "-",
        ),
    );
    write(
        &mut w,
        1,
        &istio_line(
            502,
            "-",
            "-",
            "-",
            "BlackHoleCluster",
            "pastebin.com",
            "-",
            "-",
        ),
    );
    write(
        &mut w,
        3,
        &istio_line(
            200,
            "-",
            "via_upstream",
            "-",
            "PassthroughCluster",
            "example.org",
            "-",
            "allow_any",
        ),
    );
    w.raw("2026-11-24T10:00:00.000000000Z stderr F not an access log\n");
    w.flush();
    let mut w = Writer::new("eg", &egress);
    write(
        &mut w,
        2,
        &istio_line(
            0,
            "-",
            "-",
            "-",
            "outbound|443||api.stripe.com",
            "-",
            "api.stripe.com",
            "-",
        ),
    );
    w.flush();
    // A PERMISSIVE port that took two plaintext requests (inbound, no SNI).
    let legacy = node.container("shop", "legacy-0", "istio-proxy");
    let mut w = Writer::new("plain", &legacy);
    write(
        &mut w,
        2,
        &istio_line(
            200,
            "-",
            "via_upstream",
            "-",
            "inbound|8080||",
            "legacy",
            "-",
            "-",
        ),
    );
    w.flush();
}
