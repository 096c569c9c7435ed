//! Realistic mesh traffic for the demo: requests of every security outcome, written by an
//! ingress gateway, an egress gateway and a sidecar as containerd writes container logs
//! (CRI records, long lines split in `P`/`F` parts, istio-agent lines on stderr), into a
//! kubelet-like `pods/` and `containers/` tree, rotated as the kubelet rotates.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use meshtrail_parsers::classify::Role;
use meshtrail_parsers::envoy::{Program, builtin};

/// A seeded generator, so every demo run shows the same traffic.
struct Rng(fastrand::Rng);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0.u64(..)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0.u64(0..n)
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.0.usize(0..items.len())]
    }
}

/// One kind of request, as the values of the meshtrail format's fields.
struct Scenario {
    weight: u64,
    role: Role,
    values: &'static [(&'static str, &'static str)],
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        weight: 50,
        role: Role::Ingress,
        values: &[
            ("response_code", "200"),
            ("response_code_details", "via_upstream"),
            (
                "upstream_cluster",
                "outbound|8080||web.shop.svc.cluster.local",
            ),
            ("downstream_tls_version", "TLSv1.3"),
            (
                "upstream_peer_uri_san",
                "spiffe://cluster.local/ns/shop/sa/web",
            ),
        ],
    },
    Scenario {
        weight: 6,
        role: Role::Ingress,
        values: &[
            ("response_code", "429"),
            ("response_flags", "RL"),
            ("response_code_details", "local_rate_limited"),
            (
                "upstream_cluster",
                "outbound|8080||web.shop.svc.cluster.local",
            ),
            ("downstream_tls_version", "TLSv1.3"),
        ],
    },
    Scenario {
        weight: 3,
        role: Role::Ingress,
        values: &[
            ("response_code", "401"),
            (
                "response_code_details",
                "jwt_authn_access_denied{Jwt_is_missing}",
            ),
            (
                "upstream_cluster",
                "outbound|8080||api.shop.svc.cluster.local",
            ),
            ("downstream_tls_version", "TLSv1.3"),
        ],
    },
    Scenario {
        weight: 2,
        role: Role::Ingress,
        values: &[
            ("response_code", "500"),
            ("response_flags", "RLSE"),
            ("response_code_details", "rate_limiter_error"),
            (
                "upstream_cluster",
                "outbound|8080||api.shop.svc.cluster.local",
            ),
            ("downstream_tls_version", "TLSv1.3"),
        ],
    },
    Scenario {
        weight: 30,
        role: Role::Sidecar,
        values: &[
            ("response_code", "200"),
            ("response_code_details", "via_upstream"),
            ("upstream_cluster", "inbound|8080||"),
            (
                "requested_server_name",
                "outbound_.8080_._.payment.shop.svc.cluster.local",
            ),
            ("downstream_tls_version", "TLSv1.3"),
            (
                "downstream_peer_uri_san",
                "spiffe://cluster.local/ns/shop/sa/web",
            ),
        ],
    },
    Scenario {
        weight: 4,
        role: Role::Sidecar,
        values: &[
            ("response_code", "403"),
            (
                "response_code_details",
                "rbac_access_denied_matched_policy[ns[shop]-policy[payment-allow-web]-rule[0]]",
            ),
            ("upstream_cluster", "inbound|8080||"),
            (
                "requested_server_name",
                "outbound_.8080_._.payment.shop.svc.cluster.local",
            ),
            ("downstream_tls_version", "TLSv1.3"),
            (
                "downstream_peer_uri_san",
                "spiffe://cluster.local/ns/default/sa/sleep",
            ),
        ],
    },
    Scenario {
        weight: 3,
        role: Role::Sidecar,
        values: &[
            ("response_code", "503"),
            ("response_flags", "UF,URX"),
            (
                "response_code_details",
                "upstream_reset_before_response_started{connection_failure,TLS_error:_268435581:SSL_routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED}",
            ),
            (
                "upstream_transport_failure_reason",
                "TLS error: 268435581:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED",
            ),
            (
                "upstream_cluster",
                "outbound|8080||ledger.shop.svc.cluster.local",
            ),
        ],
    },
    Scenario {
        weight: 2,
        role: Role::Sidecar,
        values: &[
            ("response_code", "0"),
            ("response_flags", "NR"),
            ("response_code_details", "filter_chain_not_found"),
            ("method", "-"),
            ("path", "-"),
            ("protocol", "-"),
        ],
    },
    Scenario {
        weight: 3,
        role: Role::Sidecar,
        values: &[
            ("response_code", "503"),
            ("response_flags", "UH"),
            ("response_code_details", "no_healthy_upstream"),
            (
                "upstream_cluster",
                "outbound|8080||ledger.shop.svc.cluster.local",
            ),
        ],
    },
    Scenario {
        weight: 6,
        role: Role::Egress,
        values: &[
            ("response_code", "0"),
            ("method", "-"),
            ("path", "-"),
            ("protocol", "-"),
            ("upstream_cluster", "outbound|443||api.stripe.com"),
            ("requested_server_name", "api.stripe.com"),
            ("upstream_host", "151.101.65.67:443"),
        ],
    },
    Scenario {
        weight: 3,
        role: Role::Sidecar,
        values: &[
            ("response_code", "502"),
            ("upstream_cluster", "BlackHoleCluster"),
            ("authority", "pastebin.com"),
            ("route_name", "block_all"),
        ],
    },
    Scenario {
        weight: 2,
        role: Role::Sidecar,
        values: &[
            ("response_code", "200"),
            ("response_code_details", "via_upstream"),
            ("upstream_cluster", "PassthroughCluster"),
            ("authority", "raw.githubusercontent.com"),
            ("upstream_host", "185.199.108.133:80"),
        ],
    },
];

const PATHS: &[&str] = &[
    "/",
    "/cart",
    "/api/v1/orders?id=7781",
    "/login",
    "/healthz",
    "/payment/charge",
];
const AGENTS: &[&str] = &[
    "curl/8.5.0",
    "Mozilla/5.0 (X11; Linux x86_64) Firefox/126.0",
    "okhttp/4.12.0",
    "python-requests/2.31.0",
];
const CLIENTS: &[&str] = &["203.0.113.7", "198.51.100.23", "192.0.2.14", "203.0.113.99"];

/// The three proxies' pods: (role, namespace, pod, uid).
const PODS: &[(Role, &str, &str, &str)] = &[
    (
        Role::Ingress,
        "istio-system",
        "istio-ingressgateway-7d4f8b6c9-x2x7q",
        "7e0b4c1a-2f7e-4d0e-9a57-0d2c8b1e6f00",
    ),
    (
        Role::Egress,
        "istio-system",
        "istio-egressgateway-6b8d9c7f5-qwert",
        "8f1c5d2b-3a8f-4e1f-8b68-1e3d9c2f7a11",
    ),
    (
        Role::Sidecar,
        "shop",
        "payment-5d9c7b8f4-abcde",
        "9a2d6e3c-4b9a-4f2a-9c79-2f4eab3a8b22",
    ),
];

/// One proxy's log: its `0.log`, and how much was written to it since the last rotation.
struct Log {
    path: PathBuf,
    out: BufWriter<File>,
    bytes: u64,
    rotations: u64,
}

/// Writes generated requests into the proxies' logs, rotating each at `rotate_bytes`.
pub struct Traffic {
    program: Program,
    rng: Rng,
    logs: Vec<(Role, Log)>,
    rotate_bytes: u64,
    /// Requests written so far.
    pub written: u64,
}

impl Traffic {
    /// Lays out `root/pods/<ns>_<pod>_<uid>/istio-proxy/0.log` and the
    /// `root/containers/<pod>_<ns>_istio-proxy-<id>.log` links, as the kubelet does.
    pub fn new(root: &Path, rotate_bytes: u64) -> anyhow::Result<Traffic> {
        let containers = root.join("containers");
        fs::create_dir_all(&containers)
            .with_context(|| format!("creating {}", containers.display()))?;
        let mut logs = Vec::new();
        for (i, (role, ns, pod, uid)) in PODS.iter().enumerate() {
            let dir = root.join(format!("pods/{ns}_{pod}_{uid}/istio-proxy"));
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let path = dir.join("0.log");
            let file =
                File::create(&path).with_context(|| format!("creating {}", path.display()))?;
            let link = containers.join(format!(
                "{pod}_{ns}_istio-proxy-{}.log",
                format!("{i:x}").repeat(64)
            ));
            let _ = fs::remove_file(&link);
            std::os::unix::fs::symlink(&path, &link)
                .with_context(|| format!("linking {}", link.display()))?;
            logs.push((
                *role,
                Log {
                    path,
                    out: BufWriter::new(file),
                    bytes: 0,
                    rotations: 0,
                },
            ));
        }
        Ok(Traffic {
            program: Program::compile("meshtrail", builtin::MESHTRAIL)?,
            rng: Rng(fastrand::Rng::with_seed(0x9E37_79B9_7F4A_7C15)),
            logs,
            rotate_bytes,
            written: 0,
        })
    }

    /// Writes `n` more requests, stamped `now`, and flushes.
    pub fn write(&mut self, n: u64, now: std::time::SystemTime) -> anyhow::Result<()> {
        let total: u64 = SCENARIOS.iter().map(|s| s.weight).sum();
        let since = now
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let t = meshtrail_parsers::timestamp::Timestamp {
            unix_secs: since.as_secs() as i64,
            nanos: since.subsec_nanos(),
        };
        let stamp = t.millis().to_string();
        let (date, rest) = stamp.split_at(stamp.len().min(19));
        let base = format!("{date}{}", rest.trim_end_matches('Z'));
        for _ in 0..n {
            let i = self.written;
            self.written += 1;
            let rng = &mut self.rng;
            let mut roll = rng.below(total);
            let scenario = SCENARIOS
                .iter()
                .find(|s| {
                    roll < s.weight || {
                        roll -= s.weight;
                        false
                    }
                })
                .unwrap_or(&SCENARIOS[0]);
            let start = format!("{}Z", base.get(..23).unwrap_or(&base));
            let created = format!("{}417Z", base.get(..23).unwrap_or(&base));
            let client = rng.pick(CLIENTS);
            let remote = format!("{client}:{}", 30000 + rng.below(30000));
            let request_id = format!(
                "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                rng.next() as u32,
                rng.below(1 << 16),
                rng.below(1 << 12),
                rng.below(1 << 12),
                rng.next() >> 16
            );
            let duration = (1 + rng.below(120)).to_string();
            let bytes = rng.below(20000).to_string();
            let line = self.program.render(|key| {
                if let Some((_, v)) = scenario.values.iter().find(|(k, _)| *k == key) {
                    return Some(*v);
                }
                Some(match key {
                    "start_time" => &start,
                    "method" => ["GET", "POST"][(i % 2) as usize],
                    "path" => PATHS[(i % PATHS.len() as u64) as usize],
                    "protocol" => "HTTP/1.1",
                    "bytes_received" => "312",
                    "bytes_sent" => &bytes,
                    "duration" => &duration,
                    "x_forwarded_for" if scenario.role == Role::Ingress => client,
                    "user_agent" => AGENTS[(i % AGENTS.len() as u64) as usize],
                    "request_id" => &request_id,
                    "authority" => "shop.example.com",
                    "upstream_host" => "10.44.1.27:8080",
                    "downstream_local_address" => "10.44.0.9:8443",
                    "downstream_remote_address" => &remote,
                    _ => return None,
                })
            });
            let Some((_, log)) = self.logs.iter_mut().find(|(r, _)| *r == scenario.role) else {
                continue;
            };
            let mut text = String::with_capacity(line.len() + 64);
            // Every 97th request arrives split in two CRI records, as containerd does with
            // long lines.
            if i % 97 == 0 && line.len() > 40 {
                let (a, b) = line.split_at(40);
                text.push_str(&format!("{created} stdout P {a}\n{created} stdout F {b}\n"));
            } else {
                text.push_str(&format!("{created} stdout F {line}\n"));
            }
            if i % 200 == 0 {
                text.push_str(&format!(
                    "{created} stderr F {start}\tinfo\txdsproxy\tconnected to upstream XDS server: istiod.istio-system.svc:15012\n"
                ));
            }
            log.out.write_all(text.as_bytes())?;
            log.bytes += text.len() as u64;
            if log.bytes >= self.rotate_bytes {
                log.rotate()?;
            }
        }
        for (_, log) in &mut self.logs {
            log.out.flush()?;
        }
        Ok(())
    }
}

impl Log {
    /// `0.log` → `0.log.<n>`, a fresh `0.log`; the kubelet keeps a few rotations.
    fn rotate(&mut self) -> anyhow::Result<()> {
        self.out.flush()?;
        self.rotations += 1;
        let rotated = PathBuf::from(format!("{}.{:08}", self.path.display(), self.rotations));
        fs::rename(&self.path, &rotated)?;
        self.out = BufWriter::new(File::create(&self.path)?);
        self.bytes = 0;
        if self.rotations > 3 {
            let old = format!("{}.{:08}", self.path.display(), self.rotations - 3);
            let _ = fs::remove_file(old);
        }
        Ok(())
    }
}
