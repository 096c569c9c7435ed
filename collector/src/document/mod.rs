//! Events as SCHEMA.md JSON: the only module that knows the event field names.

pub mod writer;

use meshtrail_parsers::addr;
use meshtrail_parsers::classify::Verdict;
use meshtrail_parsers::envoy::cluster::{self, Direction};
use meshtrail_parsers::envoy::{Failure, Field, Fields};
use meshtrail_parsers::frame::Stream;
use meshtrail_parsers::timestamp::Timestamp;

use crate::enrich::PathMeta;
use crate::k8s::store::{PodView, Store};
use meshtrail_parsers::classify::Role;

use writer::Preformatted;
pub use writer::{ObjectWriter, RawJson, StrArray, write_str};

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

/// `event.dataset` of access logs.
pub const ACCESS: &str = "meshtrail.access";
/// `event.dataset` of every other line.
pub const CONTAINER: &str = "meshtrail.container";

/// Length of an [`event_id`].
pub const EVENT_ID_LEN: usize = 36;

/// The deterministic id of the line at `offset` of the file with `fingerprint`, read on
/// `host`: 8 hex digits of the host, 16 of the file, 12 of the offset. The same line read
/// again after a restart gets the same id, two identical lines at different offsets never
/// do; the Elasticsearch sink writes it as `_id` with `create`.
pub fn event_id(prefix: u32, fingerprint: u64, offset: u64) -> [u8; EVENT_ID_LEN] {
    let mut out = [0u8; EVENT_ID_LEN];
    hex_into(&mut out[..8], u64::from(prefix));
    hex_into(&mut out[8..24], fingerprint);
    hex_into(&mut out[24..], offset);
    out
}

/// Writes the low `dst.len()` hex digits of `v` into `dst`, most significant first.
#[inline]
fn hex_into(dst: &mut [u8], v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = dst.len();
    for (i, d) in dst.iter_mut().enumerate() {
        *d = HEX[((v >> (4 * (digits - 1 - i))) & 0xf) as usize];
    }
}

/// The [`event_id`]s of one file read on one host: the first 24 digits are the same for
/// every line, so they are written once.
#[derive(Clone, Copy, Debug)]
pub struct EventIds {
    head: [u8; EVENT_ID_LEN],
}

impl EventIds {
    /// Ids of the file with `fingerprint`, read on the host with `prefix` ([`Host::id_prefix`]).
    pub fn new(prefix: u32, fingerprint: u64) -> EventIds {
        EventIds {
            head: event_id(prefix, fingerprint, 0),
        }
    }

    /// The id of the line at `offset`: the same as [`event_id`].
    #[inline]
    pub fn at(&self, offset: u64) -> [u8; EVENT_ID_LEN] {
        let mut out = self.head;
        hex_into(&mut out[24..], offset);
        out
    }
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
#[derive(Clone, Copy, Default)]
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
    /// The pod, from the Kubernetes source: its fields replace the path's.
    pub pod: Option<&'a PodView>,
    /// `meshtrail.gateway`.
    pub role: Option<Role>,
    /// IP → workload, for `meshtrail.source.*` and `meshtrail.destination.*`.
    pub peers: Option<&'a Store>,
    /// The node and cluster.
    pub host: Option<&'a Host>,
    /// `event.id`, when the file's fingerprint is known.
    pub id: Option<[u8; EVENT_ID_LEN]>,
    /// The fields every line of the file shares, rendered once ([`prerender`]); when set,
    /// `kube`, `pod`, `host` and `file` are not read again.
    pub pre: Option<&'a Prerendered>,
}

/// The members every document of one file shares, rendered once per batch rather than once
/// per line: `kubernetes`, `container`, `orchestrator`, `host`, and `log.file`.
#[derive(Clone, Debug, Default)]
pub struct Prerendered {
    head: Vec<u8>,
    file: Vec<u8>,
}

/// Renders what `origin`'s file shares ([`Origin::pre`]).
pub fn prerender(origin: &Origin<'_>) -> Prerendered {
    let members = |f: &dyn Fn(&mut ObjectWriter<'_>)| {
        let mut buf = Vec::new();
        let mut w = ObjectWriter::new(&mut buf);
        f(&mut w);
        w.finish();
        buf.get(1..buf.len() - 1).unwrap_or_default().to_vec()
    };
    Prerendered {
        head: members(&|w| origin_head(w, origin)),
        file: members(&|w| origin_file(w, origin)),
    }
}

/// Writes a timestamp under `key`, UTC: milliseconds for `@timestamp`, as written (when it
/// is already UTC) for `event.created`. False when `raw` is not RFC 3339.
/// `raw` comes from a field the parser or the framing already checked to be RFC 3339
/// (`%START_TIME%` is typed; a record's time is kept only when valid), so the common forms
/// are copied without a second check.
fn write_time(w: &mut ObjectWriter<'_>, key: &'static str, raw: &str, nanos: bool) -> bool {
    let b = raw.as_bytes();
    // Already what Elasticsearch keeps (Envoy's own form, or a runtime's UTC time): copy it.
    let envoy_form = b.len() == 24 && b[19] == b'.';
    if (envoy_form || nanos) && b.last() == Some(&b'Z') && b.len() >= 20 && b[10] == b'T' {
        w.field(key, Preformatted(b));
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
    w.field(key, text.as_str());
    true
}

/// `kubernetes.*`, `container.*`, `orchestrator.*`, `host.*`, `stream`, `log.*`.
fn origin_fields(w: &mut ObjectWriter<'_>, o: &Origin<'_>) {
    match o.pre {
        Some(p) => w.members(&p.head),
        None => origin_head(w, o),
    }
    if let Some(stream) = o.stream {
        w.field("stream", stream.as_str());
    }
    w.begin("log");
    match o.pre {
        Some(p) => w.members(&p.file),
        None => origin_file(w, o),
    }
    if let Some(offset) = o.offset {
        w.field("offset", offset);
    }
    let flags = [
        (o.joined, "multiline"),
        (o.truncated_bytes > 0, "truncated"),
        (o.invalid_utf8, "invalid_utf8"),
    ];
    if flags.iter().any(|(on, _)| *on) {
        w.field(
            "flags",
            StrArray(flags.iter().filter(|(on, _)| *on).map(|(_, f)| *f)),
        );
    }
    w.end();
}

/// `log.file.path`.
fn origin_file(w: &mut ObjectWriter<'_>, o: &Origin<'_>) {
    if let Some(path) = o.file {
        w.begin("file");
        w.field("path", path);
        w.end();
    }
}

/// `kubernetes`, `container`, `orchestrator`, `host`: the same for every line of a file.
fn origin_head(w: &mut ObjectWriter<'_>, o: &Origin<'_>) {
    let container = o.kube.and_then(|k| k.container.as_deref());
    let info = o.pod.and_then(PodView::container);
    if let Some(view) = o.pod {
        w.begin("kubernetes");
        w.members(&view.pod.rendered);
        if let Some(labels) = &view.namespace_labels {
            w.field("namespace_labels", RawJson(labels));
        }
        if let Some(c) = container {
            w.begin("container");
            w.field("name", c);
            w.end();
        }
        w.end();
    } else if let Some(k) = o.kube {
        w.begin("kubernetes");
        if let Some(v) = &k.namespace {
            w.field("namespace", v.as_str());
        }
        w.begin("pod");
        if let Some(v) = &k.pod {
            w.field("name", v.as_str());
        }
        if let Some(v) = &k.pod_uid {
            w.field("uid", v.as_str());
        }
        w.end();
        if let Some(v) = &k.container {
            w.begin("container");
            w.field("name", v.as_str());
            w.end();
        }
        if let Some(h) = o.host {
            w.begin("node");
            w.field("name", h.node.as_str());
            w.end();
        }
        w.end();
    }
    // The path's id names the container that wrote this file; the status names the
    // current one, which differs after a restart.
    let id = o
        .kube
        .and_then(|k| k.container_id.as_deref())
        .or_else(|| info.and_then(|c| c.id.as_deref()));
    w.begin("container");
    if let Some(id) = id {
        w.field("id", id);
    }
    if let Some(c) = info.filter(|c| !c.rendered.is_empty()) {
        w.members(&c.rendered);
    }
    w.end();
    if let Some(h) = o.host {
        w.begin("orchestrator");
        w.field("type", "kubernetes");
        if let Some(c) = &h.cluster {
            w.begin("cluster");
            w.field("name", c.as_str());
            w.end();
        }
        w.end();
        w.begin("host");
        w.field("name", h.node.as_str());
        w.end();
    }
}

/// `event.id`, `event.kind`, `event.dataset`: the head of the `event` object, which the
/// caller has begun. `event.id` comes first: the file sink finds it there.
fn event_head(w: &mut ObjectWriter<'_>, dataset: &'static str, id: Option<&[u8]>) {
    if let Some(id) = id {
        w.field("id", Preformatted(id));
    }
    w.field("kind", "event");
    w.field("dataset", dataset);
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
    w.begin("event");
    event_head(&mut w, CONTAINER, origin.id.as_ref().map(|i| &i[..]));
    if let Some(t) = origin.created {
        write_time(&mut w, "created", t, true);
    }
    w.end();
    w.field("message", message);
    origin_fields(&mut w, origin);
    if let Some(f) = failure {
        w.begin("meshtrail");
        w.begin("parse");
        w.field("error", f.to_string().as_str());
        w.end();
        w.end();
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

    w.begin("event");
    event_head(&mut w, ACCESS, origin.id.as_ref().map(|i| &i[..]));
    let category: &[&str] = if v.http {
        &["network", "web"]
    } else {
        &["network"]
    };
    w.field("category", StrArray(category.iter().copied()));
    let types = [
        (true, "access"),
        (v.denied(), "denied"),
        (v.error(), "error"),
    ];
    w.field(
        "type",
        StrArray(types.iter().filter(|(on, _)| *on).map(|(_, t)| *t)),
    );
    w.field("outcome", v.event_outcome.as_str());
    if let Some(ms) = f.int(Field::Duration) {
        w.field("duration", ms.saturating_mul(1_000_000));
    }
    if let Some(t) = origin.created {
        write_time(&mut w, "created", t, true);
    }
    if let Some(line) = original {
        w.field("original", line);
    }
    w.end();

    w.begin("http");
    w.begin("request");
    if let Some(m) = f.get(Field::Method) {
        w.field("method", m);
    }
    if let Some(id) = f.get(Field::RequestId) {
        w.field("id", id);
    }
    w.end();
    if let Some(code) = f.status() {
        w.begin("response");
        w.field("status_code", code);
        w.end();
    }
    if let Some(p) = f.get(Field::Protocol) {
        w.field("version", p.strip_prefix("HTTP/").unwrap_or(p));
    }
    w.end();

    w.begin("url");
    if let Some(path) = f.get(Field::Path) {
        w.field("original", path);
        let (p, q) = match memchr::memchr(b'?', path.as_bytes()) {
            Some(i) => (&path[..i], Some(&path[i + 1..])),
            None => (path, None),
        };
        w.field("path", p);
        if let Some(q) = q.filter(|q| !q.is_empty()) {
            w.field("query", q);
        }
    }
    if let Some(authority) = f.get(Field::Authority) {
        let (host, port) = addr::host_port(authority);
        w.field("domain", host);
        if let Some(p) = port {
            w.field("port", p);
        }
    }
    w.end();

    let source_ip = address(
        &mut w,
        "source",
        f.get(Field::DownstreamRemoteAddress),
        f.int(Field::BytesReceived),
    );
    let destination_ip = address(
        &mut w,
        "destination",
        f.get(Field::UpstreamHost),
        f.int(Field::BytesSent),
    );
    let xff = f.get(Field::XForwardedFor);
    if let Some(ip) = xff.and_then(addr::first_forwarded_ip).or(source_ip) {
        w.begin("client");
        // Checked to be an IP: nothing to escape.
        w.field("ip", Preformatted(ip.as_bytes()));
        w.end();
    }
    if let Some(ua) = f.get(Field::UserAgent) {
        w.begin("user_agent");
        w.field("original", ua);
        w.end();
    }

    tls(&mut w, f);

    w.begin("network");
    w.field(
        "transport",
        if f.get(Field::Protocol) == Some("HTTP/3") {
            "udp"
        } else {
            "tcp"
        },
    );
    if v.http {
        w.field("protocol", "http");
    }
    w.end();

    origin_fields(&mut w, origin);
    envoy(&mut w, f, xff);

    w.begin("meshtrail");
    if let Some(r) = origin.role {
        w.field("gateway", r.as_str());
    }
    w.begin("parse");
    w.field("format", format);
    w.end();
    security(&mut w, v);
    let identity = spiffe(f);
    peer(&mut w, identity);
    workloads(&mut w, origin, identity, source_ip, destination_ip);
    w.end();
    w.finish();
}

/// `<group>.address`, `.ip`, `.port`, `.bytes`; returns the IP.
fn address<'a>(
    w: &mut ObjectWriter<'_>,
    group: &'static str,
    raw: Option<&'a str>,
    bytes: Option<u64>,
) -> Option<&'a str> {
    let mut ip = None;
    w.begin(group);
    if let Some(a) = raw {
        match addr::ip_port(a) {
            // An IP and a port are hex digits, dots, colons and brackets: nothing to escape.
            Some((i, p)) => {
                w.field("address", Preformatted(a.as_bytes()));
                w.field("ip", Preformatted(i.as_bytes()));
                w.field("port", p);
                ip = Some(i);
            }
            None => w.field("address", a),
        }
    }
    if let Some(b) = bytes {
        w.field("bytes", b);
    }
    w.end();
    ip
}

fn tls(w: &mut ObjectWriter<'_>, f: &Fields<'_>) {
    w.begin("tls");
    if let Some(v) = f.get(Field::DownstreamTlsVersion) {
        match v.strip_prefix("TLSv") {
            Some(num) => {
                w.field("version_protocol", "tls");
                w.field("version", num);
            }
            None => w.field("version", v),
        }
    }
    if let Some(c) = f.get(Field::DownstreamTlsCipher) {
        w.field("cipher", c);
    }
    w.begin("client");
    if let Some(sni) = f.get(Field::RequestedServerName) {
        w.field("server_name", sni);
    }
    if let Some(san) = f.get(Field::DownstreamPeerUriSan) {
        w.begin("x509");
        w.field("alternative_names", StrArray(san.split(',').map(str::trim)));
        w.end();
    }
    w.end();
    if let Some(san) = f.get(Field::UpstreamPeerUriSan) {
        w.begin("server");
        w.begin("x509");
        w.field("alternative_names", StrArray(san.split(',').map(str::trim)));
        w.end();
        w.end();
    }
    w.end();
}

fn envoy(w: &mut ObjectWriter<'_>, f: &Fields<'_>, xff: Option<&str>) {
    w.begin("envoy");
    if f.get(Field::ResponseFlags).is_some() {
        w.field("response_flags", StrArray(f.flag_codes()));
    }
    let texts = [
        (Field::ResponseCodeDetails, "response_code_details"),
        (
            Field::ConnectionTerminationDetails,
            "connection_termination_details",
        ),
        (
            Field::UpstreamTransportFailureReason,
            "upstream_transport_failure_reason",
        ),
        (
            Field::DownstreamTransportFailureReason,
            "downstream_transport_failure_reason",
        ),
    ];
    for (field, key) in texts {
        if let Some(v) = f.get(field) {
            w.field(key, v);
        }
    }
    if let Some(ms) = f.int(Field::UpstreamServiceTime) {
        w.field("upstream_service_time_ms", ms);
    }
    if let Some(x) = xff {
        w.field("x_forwarded_for", x);
    }
    if let Some(a) = f.get(Field::Authority) {
        w.field("authority", a);
    }
    if let Some(c) = f.upstream_cluster() {
        w.field("upstream_cluster", c);
        if let Some(parts) = cluster::decode(c) {
            w.begin("cluster");
            w.field("direction", parts.direction.as_str());
            if let Some(p) = parts.port {
                w.field("port", p);
            }
            if let Some(s) = parts.subset {
                // Inbound clusters of Istio before 1.6 carry the port name there.
                w.field(
                    if parts.direction == Direction::Inbound {
                        "port_name"
                    } else {
                        "subset"
                    },
                    s,
                );
            }
            if let Some(h) = parts.host {
                w.field("host", h);
            }
            w.end();
        }
    }
    let rest = [
        (Field::UpstreamLocalAddress, "upstream_local_address"),
        (Field::DownstreamLocalAddress, "downstream_local_address"),
        (Field::RouteName, "route_name"),
        (Field::IstioPolicyStatus, "istio_policy_status"),
    ];
    for (field, key) in rest {
        if let Some(v) = f.get(field) {
            w.field(key, v);
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
                w.field_escaped(key, n)
            }
            _ => w.field_escaped(key, value),
        }
    }
    w.end();
}

/// `meshtrail.security.*`, inside `meshtrail`.
fn security(w: &mut ObjectWriter<'_>, v: &Verdict<'_>) {
    w.begin("security");
    w.field("outcome", v.outcome.as_str());
    w.field("mtls", v.mtls.as_str());
    if let Some(r) = v.mtls_failure_reason {
        w.field("mtls_failure_reason", r.as_str());
    }
    if let Some(r) = v.rate_limit {
        w.field("rate_limit", r.as_str());
    }
    if let Some(d) = v.denial {
        w.begin("denial");
        w.field("kind", d.kind.as_str());
        if let Some(p) = d.policy {
            w.field("policy", p);
        }
        if let Some(r) = d.reason {
            w.field("reason", r);
        }
        w.end();
    }
    if let Some(e) = v.egress {
        w.field("egress", e.as_str());
    }
    w.end();
}

/// A SPIFFE identity `spiffe://<td>/ns/<ns>/sa/<sa>`: (trust domain, namespace, service
/// account), from the downstream peer's certificate.
type Spiffe<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>);

fn spiffe<'a>(f: &'a Fields<'_>) -> Option<Spiffe<'a>> {
    let san = f.get(Field::DownstreamPeerUriSan)?;
    let id = san
        .split(',')
        .map(str::trim)
        .find_map(|s| s.strip_prefix("spiffe://"))?;
    let mut parts = id.split('/');
    let td = parts.next().filter(|s| !s.is_empty());
    let (ns, sa) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("ns"), Some(ns), Some("sa"), Some(sa)) => (Some(ns), Some(sa)),
        _ => (None, None),
    };
    Some((td, ns, sa))
}

/// `meshtrail.source.*` and `meshtrail.destination.*`: the workloads behind the IPs, from
/// the IP map (`enrich_peers`); the source's namespace from its SPIFFE identity first,
/// which needs no API.
fn workloads(
    w: &mut ObjectWriter<'_>,
    o: &Origin<'_>,
    identity: Option<Spiffe<'_>>,
    source_ip: Option<&str>,
    destination_ip: Option<&str>,
) {
    let lookup = |ip: Option<&str>| {
        let peers = o.peers?;
        peers.peer(ip?.parse().ok()?)
    };
    let source = lookup(source_ip);
    w.begin("source");
    if let Some(ns) = identity
        .and_then(|(_, ns, _)| ns)
        .or(source.as_ref().map(|p| p.namespace.as_str()))
    {
        w.field("namespace", ns);
    }
    if let Some(p) = &source {
        w.field("workload", p.workload.as_str());
    }
    w.end();
    if let Some(p) = lookup(destination_ip) {
        w.begin("destination");
        w.field("namespace", p.namespace.as_str());
        w.field("workload", p.workload.as_str());
        w.end();
    }
}

/// `meshtrail.peer.*` from a SPIFFE identity.
fn peer(w: &mut ObjectWriter<'_>, identity: Option<Spiffe<'_>>) {
    let Some((td, ns, sa)) = identity else {
        return;
    };
    w.begin("peer");
    if let Some(td) = td {
        w.field("trust_domain", td);
    }
    if let Some(ns) = ns {
        w.field("namespace", ns);
    }
    if let Some(sa) = sa {
        w.field("service_account", sa);
    }
    w.end();
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshtrail_parsers::classify::{Role, classify};
    use meshtrail_parsers::envoy::{Hint, Parsed, Parser};
    use serde_json::{Value, json};

    const LINE: &str = r#"[2026-11-24T10:00:00.123Z] "POST /pay?id=7 HTTP/2" 403 - rbac_access_denied_matched_policy[ns[shop]-policy[deny]-rule[0]] - "-" 12 19 4 - "203.0.113.7, 10.0.0.1" "curl/8.5.0" "req-1" "shop.example.com:8443" "10.44.1.27:8080" inbound|8080|| 127.0.0.6:43211 10.44.0.9:8080 10.1.2.3:40312 outbound_.8080_._.pay.shop.svc.cluster.local default tls=TLSv1.3 cipher=TLS_AES_128_GCM_SHA256 peer="spiffe://cluster.local/ns/shop/sa/web" upstream_peer="-" dtfr="-""#;

    fn render(role: Option<Role>) -> Value {
        let parser = Parser::auto();
        let Parsed::Access { format, fields } = parser.parse(LINE, &mut Hint::default()) else {
            panic!("not read")
        };
        let verdict = classify(&fields, role);
        let kube = PathMeta {
            namespace: Some("shop".into()),
            pod: Some("pay-7d4f".into()),
            pod_uid: Some("7e0b4c1a-2f7e-4d0e-9a57-0d2c8b1e6f00".into()),
            container: Some("istio-proxy".into()),
            container_id: None,
        };
        let host = Host {
            node: "node-1".into(),
            cluster: Some("prod".into()),
        };
        let origin = Origin {
            created: Some("2026-11-24T10:00:00.200000001Z"),
            stream: Some(Stream::Stdout),
            file: Some("/var/log/containers/x.log"),
            offset: Some(4096),
            kube: Some(&kube),
            host: Some(&host),
            id: Some(event_id(host.id_prefix(), 0xabc, 4096)),
            ..Origin::default()
        };
        let mut out = Vec::new();
        access(&mut out, &origin, format, &fields, &verdict, None);
        serde_json::from_slice(&out).unwrap()
    }

    /// One full document, field by field: the SCHEMA.md contract in one place.
    #[test]
    fn access_document() {
        let doc = render(Some(Role::Sidecar));
        let id = String::from_utf8(
            event_id(
                Host {
                    node: "node-1".into(),
                    cluster: Some("prod".into()),
                }
                .id_prefix(),
                0xabc,
                4096,
            )
            .to_vec(),
        )
        .unwrap();
        let want = json!({
            "@timestamp": "2026-11-24T10:00:00.123Z",
            "event": {"id": id, "kind": "event", "dataset": "meshtrail.access", "category": ["network", "web"],
                      "type": ["access", "denied"], "outcome": "failure", "duration": 4_000_000,
                      "created": "2026-11-24T10:00:00.200000001Z"},
            "http": {"request": {"method": "POST", "id": "req-1"}, "response": {"status_code": 403}, "version": "2"},
            "url": {"original": "/pay?id=7", "path": "/pay", "query": "id=7", "domain": "shop.example.com", "port": 8443},
            "source": {"address": "10.1.2.3:40312", "ip": "10.1.2.3", "port": 40312, "bytes": 12},
            "destination": {"address": "10.44.1.27:8080", "ip": "10.44.1.27", "port": 8080, "bytes": 19},
            "client": {"ip": "203.0.113.7"},
            "user_agent": {"original": "curl/8.5.0"},
            "tls": {"version_protocol": "tls", "version": "1.3", "cipher": "TLS_AES_128_GCM_SHA256",
                    "client": {"server_name": "outbound_.8080_._.pay.shop.svc.cluster.local",
                               "x509": {"alternative_names": ["spiffe://cluster.local/ns/shop/sa/web"]}}},
            "network": {"transport": "tcp", "protocol": "http"},
            "kubernetes": {"namespace": "shop", "pod": {"name": "pay-7d4f", "uid": "7e0b4c1a-2f7e-4d0e-9a57-0d2c8b1e6f00"},
                           "container": {"name": "istio-proxy"}, "node": {"name": "node-1"}},
            "orchestrator": {"type": "kubernetes", "cluster": {"name": "prod"}},
            "host": {"name": "node-1"},
            "stream": "stdout",
            "log": {"file": {"path": "/var/log/containers/x.log"}, "offset": 4096},
            "envoy": {"response_code_details": "rbac_access_denied_matched_policy[ns[shop]-policy[deny]-rule[0]]",
                      "x_forwarded_for": "203.0.113.7, 10.0.0.1", "authority": "shop.example.com:8443",
                      "upstream_cluster": "inbound|8080||", "cluster": {"direction": "inbound", "port": 8080},
                      "upstream_local_address": "127.0.0.6:43211", "downstream_local_address": "10.44.0.9:8080",
                      "route_name": "default"},
            "meshtrail": {"parse": {"format": "meshtrail"},
                          "security": {"outcome": "authz_denied", "mtls": "success",
                                       "denial": {"kind": "rbac", "policy": "ns[shop]-policy[deny]-rule[0]"}},
                          "peer": {"trust_domain": "cluster.local", "namespace": "shop", "service_account": "web"},
                          // From the SPIFFE identity: no API needed.
                          "source": {"namespace": "shop"}}
        });
        assert_eq!(doc, want, "\ngot:  {doc}\nwant: {want}");
    }

    #[test]
    fn pod_metadata_replaces_the_path_and_peers_are_named() {
        use crate::k8s::project::PodInfo;
        use crate::k8s::store::Store;
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
            "metadata": {"name": "pay-7d4f-x2", "namespace": "shop", "uid": "u-1",
                         "labels": {"app.kubernetes.io/name": "pay", "pod-template-hash": "7d4f"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                              "name": "pay-7d4f", "uid": "r", "controller": true}]},
            "spec": {"nodeName": "node-1", "containers": [{"name": "istio-proxy", "image": "istio/proxyv2:1.24.0"}]},
            "status": {"podIP": "10.44.1.27", "containerStatuses": [{"name": "istio-proxy",
                "image": "istio/proxyv2:1.24.0", "imageID": "", "ready": true, "restartCount": 0,
                "containerID": "containerd://abc"}]}
        }))
        .unwrap();
        let store = Store::new(std::time::Duration::from_secs(60));
        store.apply_pod(PodInfo::from_pod(&pod, &[]).unwrap());
        store.apply_namespace("shop".into(), br#"{"istio-injection":"enabled"}"#.to_vec());
        store.apply_peer("u-9", "10.1.2.3".parse().unwrap(), "web", "frontend");
        store.apply_peer("u-1", "10.44.1.27".parse().unwrap(), "shop", "pay");
        let path = PathMeta {
            pod_uid: Some("u-1".into()),
            container: Some("istio-proxy".into()),
            ..PathMeta::default()
        };
        let view = store.lookup(&path).unwrap();
        let origin = Origin {
            kube: Some(&path),
            pod: Some(&view),
            role: view.pod.role("istio-proxy"),
            peers: Some(&store),
            ..Origin::default()
        };
        let parser = Parser::auto();
        let Parsed::Access { format, fields } = parser.parse(LINE, &mut Hint::default()) else {
            panic!("not read")
        };
        let v = classify(&fields, origin.role);
        let mut out = Vec::new();
        access(&mut out, &origin, format, &fields, &v, None);
        let doc: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            doc["kubernetes"],
            json!({"namespace": "shop", "pod": {"name": "pay-7d4f-x2", "uid": "u-1", "ip": "10.44.1.27"},
                   "node": {"name": "node-1"},
                   "labels": {"app_kubernetes_io/name": "pay", "pod-template-hash": "7d4f"},
                   "deployment": {"name": "pay"}, "replicaset": {"name": "pay-7d4f"},
                   "namespace_labels": {"istio-injection": "enabled"},
                   "container": {"name": "istio-proxy"}})
        );
        assert_eq!(
            doc["container"],
            json!({"id": "abc", "runtime": "containerd", "image": {"name": "istio/proxyv2:1.24.0"}})
        );
        assert_eq!(doc["meshtrail"]["gateway"], "sidecar");
        // The SPIFFE namespace wins over the IP map's.
        assert_eq!(
            doc["meshtrail"]["source"],
            json!({"namespace": "shop", "workload": "frontend"})
        );
        assert_eq!(
            doc["meshtrail"]["destination"],
            json!({"namespace": "shop", "workload": "pay"})
        );
    }

    #[test]
    fn container_document_with_parse_error() {
        let parser = Parser::auto();
        let line = r#"[2026-11-24T10:00:00.123Z] "GET / HTTP/1.1" abc"#;
        let Parsed::Other(failure) = parser.parse(line, &mut Hint::default()) else {
            panic!()
        };
        let origin = Origin {
            created: Some("2026-11-24T10:00:00.5+01:00"),
            truncated_bytes: 3,
            invalid_utf8: true,
            ..Origin::default()
        };
        let mut out = Vec::new();
        container(&mut out, &origin, line, failure.as_ref());
        let doc: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(doc["@timestamp"], "2026-11-24T09:00:00.500Z");
        assert_eq!(doc["event"]["created"], "2026-11-24T09:00:00.500000000Z");
        assert_eq!(doc["event"]["dataset"], "meshtrail.container");
        assert_eq!(doc["message"], line);
        assert_eq!(doc["log"]["flags"], json!(["truncated", "invalid_utf8"]));
        assert!(
            doc["meshtrail"]["parse"]["error"]
                .as_str()
                .unwrap()
                .contains("%RESPONSE_CODE%")
        );
    }

    #[test]
    fn per_file_ids_equal_event_ids() {
        let ids = EventIds::new(0xdead_beef, 0x0123_4567_89ab_cdef);
        for offset in [0, 1, 0xabc, 0xfff_ffff_ffff, 0x1234_5678_9abc] {
            assert_eq!(
                ids.at(offset),
                event_id(0xdead_beef, 0x0123_4567_89ab_cdef, offset)
            );
        }
    }

    #[test]
    fn event_ids_round_trip() {
        let id = event_id(0xdead_beef, 0x0123_4567_89ab_cdef, 0xfff_ffff_ffff);
        let text = std::str::from_utf8(&id).unwrap();
        assert_eq!(text, "deadbeef0123456789abcdef0fffffffffff");
        assert_eq!(
            parse_event_id(text),
            Some((0x0123_4567_89ab_cdef, 0xfff_ffff_ffff))
        );
        assert_eq!(parse_event_id("short"), None);
        assert_ne!(
            Host {
                node: "a".into(),
                cluster: None
            }
            .id_prefix(),
            Host {
                node: "b".into(),
                cluster: None
            }
            .id_prefix()
        );
    }
}
