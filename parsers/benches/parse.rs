//! `cargo bench -p meshtrail-parsers`: framing, compile, match and the whole parse path,
//! against a `regex` baseline that extracts the same typed fields, in one run.
//!
//! Input: 100,000 lines of `shared/bench/gen_istio_cri.py` when the shared folder is beside
//! the checkout (generated once into `target/`), else a built-in sample. Every benchmark
//! checks its count, so a fast wrong answer cannot pass for a fast one.
#![allow(clippy::unwrap_used, reason = "bench set-up: a panic is the report")]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use meshtrail_parsers::classify;
use meshtrail_parsers::envoy::{Field, Fields, Hint, Outcome, Parsed, Parser, Program, builtin};
use meshtrail_parsers::frame::{Framing, frame};
use meshtrail_parsers::partial::Joiner;
use regex::bytes::Regex;

#[path = "shared/generated.rs"]
mod generated;
use generated::generated_lines;

const SAMPLE: &str = r#"2026-11-22T10:00:00.000000000Z stdout F [2026-11-22T10:00:00.000Z] "GET /payment/v1/charge HTTP/1.1" 200 - via_upstream - "-" 1834 22081 341 339 "10.12.4.9" "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36" "3d4a7b40-8b1f-4b65-9d3e-1b3b5a6b7c8d" "payment.example.com" "10.44.1.27:8080" outbound|8080||payment-service.default.svc.cluster.local 10.44.0.3:50000 10.44.0.9:8443 10.1.2.3:40312 outbound_.8080_._.payment-service.default.svc.cluster.local default
2026-11-22T10:00:00.001994000Z stdout F [2026-11-22T10:00:00.001Z] "- - -" 0 - - - "-" 1200 443210 4001 - "-" "-" "-" "-" "151.101.65.67:443" outbound|443||api.external-payments.com 10.44.0.3:41122 10.44.0.9:8443 10.1.2.3:40312 api.external-payments.com -
2026-11-22T10:00:00.002991000Z stdout F [2026-11-22T10:00:00.002Z] "GET /x HTTP/1.1" 403 - rbac_access_denied_matched_policy[ns[default]-policy[block-suspicious-ips]-rule[0]] - "-" 0 19 0 - "-" "okhttp/4.12.0" "b" "payment.example.com" "-" - - 10.44.0.9:8443 10.1.2.3:40312 - -
"#;

fn input() -> Vec<Vec<u8>> {
    let text = generated_lines().unwrap_or_else(|| SAMPLE.repeat(1000).into_bytes());
    text.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// The regex a Fluent Bit or Vector user writes for the same job: CRI and Istio 1.9 in one.
const BASELINE: &str = r#"^(\S+) (stdout|stderr) ([PF]) \[([^\]]+)\] "(\S+) (\S+) (\S+)" (\d+) (\S+) (\S+) (\S+) "([^"]*)" (\d+) (\d+) (\d+) (\S+) "([^"]*)" "([^"]*)" "([^"]*)" "([^"]*)" "([^"]*)" (\S+) (\S+) (\S+) (\S+) (\S+) (\S+)$"#;

fn num(b: &[u8]) -> Option<u64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

fn benches(c: &mut Criterion) {
    let lines = input();
    let n = lines.len();
    let bytes: usize = lines.iter().map(Vec::len).sum();
    let parser = Parser::from_specs(["istio-1.9"]).unwrap();
    let auto = Parser::auto();

    let mut g = c.benchmark_group("frame");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("cri", |b| {
        b.iter(|| {
            lines
                .iter()
                .filter(|l| !frame(l, Framing::Cri).partial)
                .count()
        });
        assert_eq!(
            lines
                .iter()
                .filter(|l| frame(l, Framing::Cri).malformed.is_none())
                .count(),
            n
        );
    });
    g.finish();

    let mut g = c.benchmark_group("envoy");
    g.bench_function("compile/istio-1.9", |b| {
        b.iter(|| Program::compile("istio-1.9", black_box(builtin::ISTIO_1_9)).unwrap())
    });
    g.finish();

    let bodies: Vec<String> = lines
        .iter()
        .map(|l| String::from_utf8(frame(l, Framing::Cri).body.into_owned()).unwrap())
        .collect();
    let mut g = c.benchmark_group("envoy/match");
    g.throughput(Throughput::Elements(n as u64));
    for (name, p) in [("istio-1.9", &parser), ("auto", &auto)] {
        g.bench_with_input(BenchmarkId::from_parameter(name), &bodies, |b, bodies| {
            b.iter(|| {
                let mut hint = Hint::default();
                let read = bodies
                    .iter()
                    .filter(|l| matches!(p.parse(l, &mut hint), Parsed::Access { .. }))
                    .count();
                assert_eq!(read, n);
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("cri+istio-1.9+classify", |b| {
        b.iter(|| {
            let (mut joiner, mut hint, mut denied) = (Joiner::default(), Hint::default(), 0usize);
            for (i, line) in lines.iter().enumerate() {
                let Some(joined) = joiner.push(frame(line, Framing::Cri), i as u64) else {
                    continue;
                };
                let text = joined.text();
                // As the agent's workers do: into a `Fields` of the caller's, not moved out.
                let mut fields = Fields::new();
                if let Outcome::Access { .. } = parser.parse_into(&text, &mut hint, &mut fields) {
                    let v = classify::classify(&fields, None);
                    denied += usize::from(v.denied());
                    black_box(fields.int(Field::BytesSent));
                }
            }
            assert!(denied > 0);
        })
    });
    let re = Regex::new(BASELINE).unwrap();
    g.bench_function("regex-baseline", |b| {
        let mut locs = re.capture_locations();
        b.iter(|| {
            let mut read = 0usize;
            for line in &lines {
                if re.captures_read(&mut locs, line).is_none() {
                    continue;
                }
                let get = |i: usize| locs.get(i).map(|(s, e)| &line[s..e]);
                let typed = [8usize, 13, 14, 15, 16].map(|i| get(i).and_then(num));
                black_box((
                    typed,
                    get(4),
                    get(5),
                    get(6),
                    get(9),
                    get(10),
                    get(18),
                    get(22),
                ));
                read += 1;
            }
            assert_eq!(read, n);
        })
    });
    g.finish();
}

criterion_group! {
    name = parse;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(5)).warm_up_time(std::time::Duration::from_secs(1));
    targets = benches
}
criterion_main!(parse);
