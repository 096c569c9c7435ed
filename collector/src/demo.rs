//! `meshtrail demo`: the product on a laptop, with no cluster and no Elasticsearch.
//!
//! Writes realistic ingress-gateway, egress-gateway and sidecar traffic (every security
//! outcome, partial CRI records, non-access lines) as CRI log files, runs them through the
//! same pipeline as the agent, writes the events as NDJSON and prints what it found.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use meshtrail_parsers::classify::{Egress, Outcome, Role, Verdict};
use meshtrail_parsers::envoy::{Field, Fields, Hint, Parser, Program, builtin};
use meshtrail_parsers::frame::{self, Framing};
use meshtrail_parsers::partial::Joiner;

use crate::pipeline::FileContext;
use crate::pipeline::{LineProcessor, Observe, Options};

/// A small deterministic generator (xorshift64*), so every demo run shows the same traffic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
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

fn file_for(role: Role) -> &'static str {
    match role {
        Role::Ingress => "istio-ingressgateway.log",
        Role::Egress => "istio-egressgateway.log",
        Role::Sidecar => "payment-istio-proxy.log",
    }
}

/// Writes `lines` requests across the three proxies' CRI log files.
fn generate(dir: &Path, lines: u64) -> anyhow::Result<Vec<(PathBuf, Role)>> {
    let program = Program::compile("meshtrail", builtin::MESHTRAIL)?;
    let roles = [Role::Ingress, Role::Egress, Role::Sidecar];
    let mut files = Vec::new();
    let mut writers = Vec::new();
    for role in roles {
        let path = dir.join(file_for(role));
        writers.push(BufWriter::new(
            File::create(&path).with_context(|| format!("creating {}", path.display()))?,
        ));
        files.push((path, role));
    }
    let total: u64 = SCENARIOS.iter().map(|s| s.weight).sum();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for i in 0..lines {
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
        let (secs, millis) = (i / 50, (i % 50) * 20);
        let start = format!(
            "2026-11-24T10:{:02}:{:02}.{:03}Z",
            secs / 60 % 60,
            secs % 60,
            millis
        );
        let created = format!(
            "2026-11-24T10:{:02}:{:02}.{:03}417Z",
            secs / 60 % 60,
            secs % 60,
            millis + 1
        );
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
        let line = program.render(|key| {
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
        let w = &mut writers[roles.iter().position(|r| *r == scenario.role).unwrap_or(0)];
        // Every 97th request arrives split in two CRI records, as containerd does with long lines.
        if i % 97 == 0 && line.len() > 40 {
            let (a, b) = line.split_at(40);
            writeln!(w, "{created} stdout P {a}")?;
            writeln!(w, "{created} stdout F {b}")?;
        } else {
            writeln!(w, "{created} stdout F {line}")?;
        }
        if i % 200 == 0 {
            writeln!(
                w,
                "{created} stderr F {start}\tinfo\txdsproxy\tconnected to upstream XDS server: istiod.istio-system.svc:15012"
            )?;
        }
    }
    for mut w in writers {
        w.flush()?;
    }
    Ok(files)
}

/// What the summary counts.
#[derive(Default)]
struct Summary {
    outcomes: HashMap<&'static str, u64>,
    denied_sources: HashMap<String, u64>,
    blocked: HashMap<String, u64>,
}

impl Observe for Summary {
    fn access(&mut self, f: &Fields<'_>, v: &Verdict<'_>, _: Option<Role>) {
        *self.outcomes.entry(v.outcome.as_str()).or_default() += 1;
        let client = f.get(Field::XForwardedFor).or(f
            .get(Field::DownstreamRemoteAddress)
            .and_then(|a| a.rsplit_once(':').map(|(ip, _)| ip)));
        if matches!(
            v.outcome,
            Outcome::AuthnDenied | Outcome::AuthzDenied | Outcome::RateLimited
        ) {
            *self
                .denied_sources
                .entry(client.unwrap_or("-").to_owned())
                .or_default() += 1;
        }
        if v.egress == Some(Egress::Blocked) {
            let dest = f
                .get(Field::Authority)
                .or(f.get(Field::RequestedServerName))
                .unwrap_or("-");
            *self.blocked.entry(dest.to_owned()).or_default() += 1;
        }
    }
}

fn top(map: &HashMap<String, u64>, n: usize) -> Vec<(&str, u64)> {
    let mut v: Vec<_> = map.iter().map(|(k, c)| (k.as_str(), *c)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    v.truncate(n);
    v
}

/// Runs the demo in `dir` with `lines` generated requests.
pub fn run(dir: &Path, lines: u64) -> anyhow::Result<()> {
    let logs = dir.join("logs");
    fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let files = generate(&logs, lines)?;
    let parser = Parser::auto();
    let mut processor = LineProcessor::new(std::sync::Arc::new(parser), Options::default());
    let mut summary = Summary::default();
    let events_path = dir.join("events.ndjson");
    let mut out = BufWriter::new(
        File::create(&events_path)
            .with_context(|| format!("creating {}", events_path.display()))?,
    );
    let mut doc = Vec::new();
    for (path, role) in &files {
        let name = path.display().to_string();
        let reader = BufReader::new(File::open(path)?);
        let (mut joiner, mut hint, mut offset) = (Joiner::default(), Hint::default(), 0u64);
        for line in reader.split(b'\n') {
            let line = line?;
            let start = offset;
            offset += line.len() as u64 + 1;
            if let Some(joined) = joiner.push(frame::frame(&line, Framing::Cri), start) {
                doc.clear();
                let ctx = FileContext {
                    path: Some(&name),
                    role: Some(*role),
                    ..FileContext::default()
                };
                processor.process(&joined, &ctx, &mut hint, &mut summary, &mut doc);
                out.write_all(&doc)?;
            }
        }
    }
    out.flush()?;

    let stats = &processor.stats;
    println!(
        "meshtrail demo: {} lines from 3 proxies, {} access logs, {} other lines, {} unreadable access logs\n",
        stats.lines(),
        stats.lines() - stats.container,
        stats.container,
        stats.parse_errors
    );
    println!("  security outcome     events");
    for outcome in Outcome::ALL {
        println!(
            "  {:<20} {:>6}",
            outcome.as_str(),
            summary.outcomes.get(outcome.as_str()).copied().unwrap_or(0)
        );
    }
    println!("\n  top denied sources (authn, authz, rate limit)");
    for (src, n) in top(&summary.denied_sources, 5) {
        println!("  {src:<20} {n:>6}");
    }
    println!("\n  blocked egress destinations");
    for (dst, n) in top(&summary.blocked, 5) {
        println!("  {dst:<28} {n:>6}");
    }
    println!(
        "\ninput logs: {}\nevents:     {}",
        logs.display(),
        events_path.display()
    );
    Ok(())
}
