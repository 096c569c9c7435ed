//! `cargo bench -p meshtrail --bench gzip`: the sink's gzip writer against zlib-rs at
//! level 1 (flate2's `Compression::fast`, what the sink used before) on real bulk bodies:
//! each line of the parser benchmarks' input (`parsers/benches/shared/generated.rs`, else
//! a built-in sample) made into its document by the agent's own line processor, after its
//! `create` action, in 5 MiB bodies.
//! Both outputs are inflated once and compared with the input before timing.
#![allow(clippy::unwrap_used, reason = "bench set-up: a panic is the report")]

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use meshtrail::document::{EventIds, Host};
use meshtrail::enrich::PathMeta;
use meshtrail::pipeline::{FileContext, LineProcessor, Options};
use meshtrail::sink::es::gzip::Gzip;
use meshtrail_parsers::envoy::{Hint, Parser};
use meshtrail_parsers::frame::{Framing, frame};
use meshtrail_parsers::partial::Joiner;

#[path = "../../parsers/benches/shared/generated.rs"]
mod generated;
use generated::generated_lines;

const SAMPLE: &str = r#"2026-11-22T10:00:00.000000000Z stdout F [2026-11-22T10:00:00.000Z] "GET /payment/v1/charge HTTP/1.1" 200 - via_upstream - "-" 1834 22081 341 339 "10.12.4.9" "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36" "3d4a7b40-8b1f-4b65-9d3e-1b3b5a6b7c8d" "payment.example.com" "10.44.1.27:8080" outbound|8080||payment-service.default.svc.cluster.local 10.44.0.3:50000 10.44.0.9:8443 10.1.2.3:40312 outbound_.8080_._.payment-service.default.svc.cluster.local default
2026-11-22T10:00:00.002991000Z stdout F [2026-11-22T10:00:00.002Z] "GET /x HTTP/1.1" 403 - rbac_access_denied_matched_policy[ns[default]-policy[block-suspicious-ips]-rule[0]] - "-" 0 19 0 - "-" "okhttp/4.12.0" "b" "payment.example.com" "-" - - 10.44.0.9:8443 10.1.2.3:40312 - -
"#;

/// The bulk bodies: `create` action and document per line, cut every 5 MiB.
fn bodies() -> (Vec<Vec<u8>>, usize) {
    let text = generated_lines().unwrap_or_else(|| SAMPLE.repeat(5000).into_bytes());
    let mut processor = LineProcessor::new(
        Arc::new(Parser::auto()),
        Options {
            keep_original: false,
            no_documents: false,
        },
    );
    // Named as the kubelet names it, so documents carry what the path says of the pod.
    let path = "/var/log/pods/istio-system_istio-ingressgateway-7d4f_7e0b4c1a-2f7e-4d0e-9a57-0d2c8b1e6f00/istio-proxy/0.log";
    let kube = PathMeta::from_paths(None, Path::new(path));
    let host = Host {
        node: "bench-node".into(),
        cluster: None,
    };
    let ctx = FileContext {
        path: Some(path),
        kube: Some(&kube),
        host: Some(&host),
        ids: Some(EventIds::new(host.id_prefix(), 0xf00d)),
        ..FileContext::default()
    };
    let (mut hint, mut joiner) = (Hint::default(), Joiner::new(1 << 20));
    let (mut bodies, mut body, mut doc, mut docs) = (Vec::new(), Vec::new(), Vec::new(), 0);
    let mut offset = 0u64;
    for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let Some(joined) = joiner.push(frame(line, Framing::Cri), offset) else {
            continue;
        };
        doc.clear();
        processor.process(&joined, &ctx, &mut hint, &mut (), &mut doc);
        body.extend_from_slice(br#"{"create":{"_index":"logs-meshtrail.access-default","_id":""#);
        body.extend_from_slice(&EventIds::new(host.id_prefix(), 0xf00d).at(offset));
        body.extend_from_slice(b"\"}}\n");
        body.extend_from_slice(&doc);
        docs += 1;
        offset += line.len() as u64 + 1;
        if body.len() >= 5 << 20 {
            bodies.push(std::mem::take(&mut body));
        }
    }
    bodies.push(body);
    (bodies, docs)
}

fn ours(body: &[u8]) -> Vec<u8> {
    let mut gz = Gzip::new(Vec::new());
    gz.write_all(body).unwrap();
    gz.finish()
}

fn zlib_level_1(body: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(body).unwrap();
    gz.finish().unwrap()
}

fn benches(c: &mut Criterion) {
    let (bodies, docs) = bodies();
    let input: usize = bodies.iter().map(Vec::len).sum();
    let mut g = c.benchmark_group("gzip_bulk_body");
    g.sample_size(10)
        .throughput(Throughput::Elements(docs as u64));
    for (name, compress) in [
        ("meshtrail", ours as fn(&[u8]) -> Vec<u8>),
        ("zlib-rs-level-1", zlib_level_1),
    ] {
        let mut out = 0;
        for body in &bodies {
            let z = compress(body);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&z[..])
                .read_to_end(&mut back)
                .unwrap();
            assert!(back == *body, "{name}: the body does not inflate back");
            out += z.len();
        }
        eprintln!(
            "{name}: {docs} documents, {:.0} bytes each, {:.1} compressed (ratio {:.2})",
            input as f64 / docs as f64,
            out as f64 / docs as f64,
            input as f64 / out as f64
        );
        g.bench_function(name, |b| {
            b.iter(|| {
                bodies
                    .iter()
                    .map(|body| compress(body).len())
                    .sum::<usize>()
            })
        });
    }
    g.finish();
}

criterion_group!(gzip, benches);
criterion_main!(gzip);
