//! Events as SCHEMA.md JSON: the only module that knows the event field names.

mod writer;

use meshtrail_parsers::addr;
use meshtrail_parsers::classify::Verdict;
use meshtrail_parsers::envoy::cluster::{self, Direction};
use meshtrail_parsers::envoy::{Failure, Field, Fields};
use meshtrail_parsers::frame::Stream;
use meshtrail_parsers::timestamp::Timestamp;

use crate::enrich::PathMeta;

use writer::Preformatted;
pub use writer::{ObjectWriter, StrArray};

/// The node and cluster the agent runs in.
#[derive(Clone, Debug, Default)]
pub struct Host {
    /// `host.name`, `kubernetes.node.name`.
    pub node: String,
    /// `orchestrator.cluster.name`.
    pub cluster: Option<String>,
}

impl Host {
    /// FNV-1a 32 of `cluster/node`: the part of every event id that names where it was read.
    pub fn id_prefix(&self) -> u32 {
        let mut h: u32 = 0x811c_9dc5;
        let cluster = self.cluster.as_deref().unwrap_or("");
        for b in cluster.bytes().chain([b'/']).chain(self.node.bytes()) {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        h
    }
}

/// Length of an [`event_id`].
pub const EVENT_ID_LEN: usize = 36;

/// The deterministic id of the line at `offset` of the file with `fingerprint`, read on
/// `host`: 8 hex digits of the host, 16 of the file, 12 of the offset. The same line read
/// again after a restart gets the same id, two identical lines at different offsets never
/// do; the Elasticsearch sink writes it as `_id` with `create`.
pub fn event_id(prefix: u32, fingerprint: u64, offset: u64) -> [u8; EVENT_ID_LEN] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; EVENT_ID_LEN];
    let mut put = |at: usize, digits: usize, v: u64| {
        for i in 0..digits {
            out[at + i] = HEX[((v >> (4 * (digits - 1 - i))) & 0xf) as usize];
        }
    };
    put(0, 8, u64::from(prefix));
    put(8, 16, fingerprint);
    put(24, 12, offset);
    out
}

/// Reads the fingerprint and offset back out of an [`event_id`].
pub fn parse_event_id(id: &str) -> Option<(u64, u64)> {
    if id.len() != EVENT_ID_LEN || !id.is_ascii() {
        return None;
    }
    Some((
        u64::from_str_radix(&id[8..24], 16).ok()?,
        u64::from_str_radix(&id[24..], 16).ok()?,
    ))
}

/// What is known of a line besides its text: where it came from and how it was framed.
#[derive(Clone, Copy, Debug, Default)]
pub struct Origin<'a> {
    /// The container runtime's timestamp (`event.created`).
    pub created: Option<&'a str>,
    /// `stream`.
    pub stream: Option<Stream>,
    /// `log.file.path`.
    pub file: Option<&'a str>,
    /// `log.offset`.
    pub offset: Option<u64>,
    /// Bytes cut off a line over the size cap (`log.flags: truncated`).
    pub truncated_bytes: u64,
    /// The line was not valid UTF-8 and was decoded lossily (`log.flags: invalid_utf8`).
    pub invalid_utf8: bool,
    /// The line was joined from several partial records (`log.flags: multiline`).
    pub joined: bool,
    /// What the file's path says of its container.
    pub kube: Option<&'a PathMeta>,
    /// The node and cluster.
    pub host: Option<&'a Host>,
    /// `event.id`, when the file's fingerprint is known.
    pub id: Option<[u8; EVENT_ID_LEN]>,
}

/// Writes `@timestamp` in milliseconds, UTC; `None` when `raw` is not RFC 3339.
fn write_time<'k>(w: &mut ObjectWriter<'_, 'k>, path: &'k str, raw: &str, nanos: bool) -> bool {
    // Envoy's own form is already what Elasticsearch keeps: copy it.
    let b = raw.as_bytes();
    if !nanos && b.len() == 24 && b[19] == b'.' && b[23] == b'Z' && Timestamp::parse(raw).is_some()
    {
        w.field(path, Preformatted(b));
        return true;
    }
    let Some(t) = Timestamp::parse(raw) else {
        return false;
    };
    let text = if nanos {
        t.nanos().to_string()
    } else {
        t.millis().to_string()
    };
    w.field(path, text.as_str());
    true
}

fn origin_fields<'k>(w: &mut ObjectWriter<'_, 'k>, o: &Origin<'_>) {
    if let Some(k) = o.kube {
        let fields = [
            ("kubernetes.namespace", &k.namespace),
            ("kubernetes.pod.name", &k.pod),
            ("kubernetes.pod.uid", &k.pod_uid),
            ("kubernetes.container.name", &k.container),
        ];
        for (path, v) in fields {
            if let Some(v) = v {
                w.field(path, v.as_str());
            }
        }
        if let Some(h) = o.host {
            w.field("kubernetes.node.name", h.node.as_str());
        }
        if let Some(id) = &k.container_id {
            w.field("container.id", id.as_str());
        }
    }
    if let Some(h) = o.host {
        w.field("orchestrator.type", "kubernetes");
        if let Some(c) = &h.cluster {
            w.field("orchestrator.cluster.name", c.as_str());
        }
        w.field("host.name", h.node.as_str());
    }
    if let Some(stream) = o.stream {
        w.field("stream", stream.as_str());
    }
    if let Some(path) = o.file {
        w.field("log.file.path", path);
    }
    if let Some(offset) = o.offset {
        w.field("log.offset", offset);
    }
    let flags = [
        (o.joined, "multiline"),
        (o.truncated_bytes > 0, "truncated"),
        (o.invalid_utf8, "invalid_utf8"),
    ];
    if flags.iter().any(|(on, _)| *on) {
        w.field(
            "log.flags",
            StrArray(flags.iter().filter(|(on, _)| *on).map(|(_, f)| *f)),
        );
    }
}

/// Writes an `event.*` group's common head: `event.id` first, where the file sink finds it.
fn event_head<'k>(w: &mut ObjectWriter<'_, 'k>, dataset: &'k str, id: Option<&[u8]>) {
    if let Some(id) = id {
        w.field("event.id", Preformatted(id));
    }
    w.field("event.kind", "event");
    w.field("event.dataset", dataset);
}

fn created<'k>(w: &mut ObjectWriter<'_, 'k>, o: &Origin<'_>) {
    if let Some(t) = o.created {
        write_time(w, "event.created", t, true);
    }
}

/// A line that is not an access log: `meshtrail.container`.
pub fn container(
    out: &mut Vec<u8>,
    origin: &Origin<'_>,
    message: &str,
    failure: Option<&Failure<'_>>,
) {
    let mut w = ObjectWriter::new(out);
    if let Some(t) = origin.created {
        write_time(&mut w, "@timestamp", t, false);
    }
    event_head(
        &mut w,
        "meshtrail.container",
        origin.id.as_ref().map(|i| &i[..]),
    );
    created(&mut w, origin);
    w.field("message", message);
    origin_fields(&mut w, origin);
    if let Some(f) = failure {
        let why = f.to_string();
        w.field("meshtrail.parse.error", why.as_str());
    }
    w.finish();
}

/// Names an extra field may not take, because a known field writes them under `envoy`.
const ENVOY_NAMES: &[&str] = &[
    "response_flags",
    "response_code_details",
    "connection_termination_details",
    "upstream_transport_failure_reason",
    "downstream_transport_failure_reason",
    "upstream_service_time_ms",
    "x_forwarded_for",
    "authority",
    "upstream_cluster",
    "cluster",
    "upstream_local_address",
    "downstream_local_address",
    "route_name",
    "istio_policy_status",
];

/// An access log: `meshtrail.access`.
pub fn access(
    out: &mut Vec<u8>,
    origin: &Origin<'_>,
    format: &str,
    f: &Fields<'_>,
    v: &Verdict<'_>,
    original: Option<&str>,
) {
    let mut w = ObjectWriter::new(out);
    if !f
        .get(Field::StartTime)
        .is_some_and(|t| write_time(&mut w, "@timestamp", t, false))
    {
        if let Some(t) = origin.created {
            write_time(&mut w, "@timestamp", t, false);
        }
    }

    event_head(
        &mut w,
        "meshtrail.access",
        origin.id.as_ref().map(|i| &i[..]),
    );
    let category: &[&str] = if v.http {
        &["network", "web"]
    } else {
        &["network"]
    };
    w.field("event.category", StrArray(category.iter().copied()));
    let types = [
        (true, "access"),
        (v.denied(), "denied"),
        (v.error(), "error"),
    ];
    w.field(
        "event.type",
        StrArray(types.iter().filter(|(on, _)| *on).map(|(_, t)| *t)),
    );
    w.field("event.outcome", v.event_outcome.as_str());
    if let Some(ms) = f.int(Field::Duration) {
        w.field("event.duration", ms.saturating_mul(1_000_000));
    }
    created(&mut w, origin);
    if let Some(line) = original {
        w.field("event.original", line);
    }

    if let Some(m) = f.get(Field::Method) {
        w.field("http.request.method", m);
    }
    if let Some(id) = f.get(Field::RequestId) {
        w.field("http.request.id", id);
    }
    if let Some(code) = f.status() {
        w.field("http.response.status_code", code);
    }
    if let Some(p) = f.get(Field::Protocol) {
        w.field("http.version", p.strip_prefix("HTTP/").unwrap_or(p));
    }

    if let Some(path) = f.get(Field::Path) {
        w.field("url.original", path);
        let (p, q) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        w.field("url.path", p);
        if let Some(q) = q.filter(|q| !q.is_empty()) {
            w.field("url.query", q);
        }
    }
    if let Some(authority) = f.get(Field::Authority) {
        let (host, port) = addr::host_port(authority);
        w.field("url.domain", host);
        if let Some(p) = port {
            w.field("url.port", p);
        }
    }

    let source_ip = address(
        &mut w,
        "source",
        f.get(Field::DownstreamRemoteAddress),
        f.int(Field::BytesReceived),
    );
    address(
        &mut w,
        "destination",
        f.get(Field::UpstreamHost),
        f.int(Field::BytesSent),
    );
    let xff = f.get(Field::XForwardedFor);
    if let Some(ip) = xff.and_then(addr::first_forwarded_ip).or(source_ip) {
        w.field("client.ip", ip);
    }
    if let Some(ua) = f.get(Field::UserAgent) {
        w.field("user_agent.original", ua);
    }

    tls(&mut w, f);

    w.field(
        "network.transport",
        if f.get(Field::Protocol) == Some("HTTP/3") {
            "udp"
        } else {
            "tcp"
        },
    );
    if v.http {
        w.field("network.protocol", "http");
    }

    origin_fields(&mut w, origin);
    envoy(&mut w, f, xff);

    w.field("meshtrail.parse.format", format);
    security(&mut w, v);
    peer(&mut w, f);
    w.finish();
}

/// `<group>.address`, `.ip`, `.port`, `.bytes`; returns the IP.
fn address<'a, 'k>(
    w: &mut ObjectWriter<'_, 'k>,
    group: &'static str,
    raw: Option<&'a str>,
    bytes: Option<u64>,
) -> Option<&'a str> {
    let (path_addr, path_ip, path_port, path_bytes) = match group {
        "source" => ("source.address", "source.ip", "source.port", "source.bytes"),
        _ => (
            "destination.address",
            "destination.ip",
            "destination.port",
            "destination.bytes",
        ),
    };
    let mut ip = None;
    if let Some(a) = raw {
        w.field(path_addr, a);
        if let Some((i, p)) = addr::ip_port(a) {
            w.field(path_ip, i);
            w.field(path_port, p);
            ip = Some(i);
        }
    }
    if let Some(b) = bytes {
        w.field(path_bytes, b);
    }
    ip
}

fn tls<'k>(w: &mut ObjectWriter<'_, 'k>, f: &Fields<'_>) {
    if let Some(v) = f.get(Field::DownstreamTlsVersion) {
        match v.strip_prefix("TLSv") {
            Some(num) => {
                w.field("tls.version_protocol", "tls");
                w.field("tls.version", num);
            }
            None => w.field("tls.version", v),
        }
    }
    if let Some(c) = f.get(Field::DownstreamTlsCipher) {
        w.field("tls.cipher", c);
    }
    if let Some(sni) = f.get(Field::RequestedServerName) {
        w.field("tls.client.server_name", sni);
    }
    if let Some(san) = f.get(Field::DownstreamPeerUriSan) {
        w.field(
            "tls.client.x509.alternative_names",
            StrArray(san.split(',').map(str::trim)),
        );
    }
    if let Some(san) = f.get(Field::UpstreamPeerUriSan) {
        w.field(
            "tls.server.x509.alternative_names",
            StrArray(san.split(',').map(str::trim)),
        );
    }
}

fn envoy<'k>(w: &mut ObjectWriter<'_, 'k>, f: &Fields<'_>, xff: Option<&str>) {
    if f.get(Field::ResponseFlags).is_some() {
        w.field("envoy.response_flags", StrArray(f.flag_codes()));
    }
    let texts = [
        (Field::ResponseCodeDetails, "envoy.response_code_details"),
        (
            Field::ConnectionTerminationDetails,
            "envoy.connection_termination_details",
        ),
        (
            Field::UpstreamTransportFailureReason,
            "envoy.upstream_transport_failure_reason",
        ),
        (
            Field::DownstreamTransportFailureReason,
            "envoy.downstream_transport_failure_reason",
        ),
    ];
    for (field, path) in texts {
        if let Some(v) = f.get(field) {
            w.field(path, v);
        }
    }
    if let Some(ms) = f.int(Field::UpstreamServiceTime) {
        w.field("envoy.upstream_service_time_ms", ms);
    }
    if let Some(x) = xff {
        w.field("envoy.x_forwarded_for", x);
    }
    if let Some(a) = f.get(Field::Authority) {
        w.field("envoy.authority", a);
    }
    if let Some(c) = f.upstream_cluster() {
        w.field("envoy.upstream_cluster", c);
        if let Some(parts) = cluster::decode(c) {
            w.field("envoy.cluster.direction", parts.direction.as_str());
            if let Some(p) = parts.port {
                w.field("envoy.cluster.port", p);
            }
            if let Some(s) = parts.subset {
                // Inbound clusters of Istio before 1.6 carry the port name there.
                let path = if parts.direction == Direction::Inbound {
                    "envoy.cluster.port_name"
                } else {
                    "envoy.cluster.subset"
                };
                w.field(path, s);
            }
            if let Some(h) = parts.host {
                w.field("envoy.cluster.host", h);
            }
        }
    }
    let rest = [
        (Field::UpstreamLocalAddress, "envoy.upstream_local_address"),
        (
            Field::DownstreamLocalAddress,
            "envoy.downstream_local_address",
        ),
        (Field::RouteName, "envoy.route_name"),
        (Field::IstioPolicyStatus, "envoy.istio_policy_status"),
    ];
    for (field, path) in rest {
        if let Some(v) = f.get(field) {
            w.field(path, v);
        }
    }
    for (name, value) in f.extras() {
        let renamed;
        let key = if ENVOY_NAMES.contains(&name) {
            renamed = format!("{name}_2");
            renamed.as_str()
        } else {
            name
        };
        match value.parse::<i64>() {
            Ok(n) if value.len() <= 18 && value.bytes().all(|b| b.is_ascii_digit()) => {
                w.field_in("envoy", key, n)
            }
            _ => w.field_in("envoy", key, value),
        }
    }
}

fn security<'k>(w: &mut ObjectWriter<'_, 'k>, v: &Verdict<'_>) {
    w.field("meshtrail.security.outcome", v.outcome.as_str());
    w.field("meshtrail.security.mtls", v.mtls.as_str());
    if let Some(r) = v.mtls_failure_reason {
        w.field("meshtrail.security.mtls_failure_reason", r.as_str());
    }
    if let Some(r) = v.rate_limit {
        w.field("meshtrail.security.rate_limit", r.as_str());
    }
    if let Some(d) = v.denial {
        w.field("meshtrail.security.denial.kind", d.kind.as_str());
        if let Some(p) = d.policy {
            w.field("meshtrail.security.denial.policy", p);
        }
        if let Some(r) = d.reason {
            w.field("meshtrail.security.denial.reason", r);
        }
    }
    if let Some(e) = v.egress {
        w.field("meshtrail.security.egress", e.as_str());
    }
}

/// `meshtrail.peer.*` from a SPIFFE identity `spiffe://<td>/ns/<ns>/sa/<sa>`.
fn peer<'k>(w: &mut ObjectWriter<'_, 'k>, f: &Fields<'_>) {
    let Some(san) = f.get(Field::DownstreamPeerUriSan) else {
        return;
    };
    let Some(id) = san
        .split(',')
        .map(str::trim)
        .find_map(|s| s.strip_prefix("spiffe://"))
    else {
        return;
    };
    let mut parts = id.split('/');
    let td = parts.next().filter(|s| !s.is_empty());
    let (ns, sa) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("ns"), Some(ns), Some("sa"), Some(sa)) => (Some(ns), Some(sa)),
        _ => (None, None),
    };
    if let Some(td) = td {
        w.field("meshtrail.peer.trust_domain", td);
    }
    if let Some(ns) = ns {
        w.field("meshtrail.peer.namespace", ns);
    }
    if let Some(sa) = sa {
        w.field("meshtrail.peer.service_account", sa);
    }
}
