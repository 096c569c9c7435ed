//! The parse path (frame, join, decode, parse, classify) allocates nothing per line: a
//! counting global allocator proves it.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]
#![allow(
    unsafe_code,
    reason = "a global allocator is an unsafe trait; this one only counts"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use meshtrail_parsers::classify;
use meshtrail_parsers::envoy::{Hint, Parsed, Parser};
use meshtrail_parsers::frame::{Framing, frame};
use meshtrail_parsers::partial::Joiner;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: delegates to the system allocator; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const LINES: &[&str] = &[
    r#"2026-11-22T10:00:00.000000000Z stdout F [2026-11-22T10:00:00.000Z] "GET /payment/v1/charge HTTP/1.1" 200 - via_upstream - "-" 1834 22081 341 339 "10.12.4.9" "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36" "3d4a7b40-8b1f-4b65-9d3e-1b3b5a6b7c8d" "payment.example.com" "10.44.1.27:8080" outbound|8080||payment-service.default.svc.cluster.local 10.44.0.3:50000 10.44.0.9:8443 10.1.2.3:40312 outbound_.8080_._.payment-service.default.svc.cluster.local default"#,
    r#"2026-11-22T10:00:00.000997000Z stdout F [2026-11-22T10:00:00.000Z] "POST /api HTTP/1.1" 503 UF,URX upstream_reset_before_response_started{connection_failure,TLS_error:_268435581:SSL_routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED} - "TLS error: 268435581:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED" 0 91 12 - "-" "curl/7.88.1" "a" "payment.example.com" "10.44.1.27:8080" outbound|8080||payment-service.default.svc.cluster.local - 10.44.0.9:8443 10.1.2.3:40312 - default"#,
    r#"2026-11-22T10:00:00.001994000Z stdout F [2026-11-22T10:00:00.001Z] "- - -" 0 - - - "-" 1200 443210 4001 - "-" "-" "-" "-" "151.101.65.67:443" outbound|443||api.external-payments.com 10.44.0.3:41122 10.44.0.9:8443 10.1.2.3:40312 api.external-payments.com -"#,
    r#"2026-11-22T10:00:00.002991000Z stdout F [2026-11-22T10:00:00.002Z] "GET /x HTTP/1.1" 403 - rbac_access_denied_matched_policy[ns[default]-policy[block-suspicious-ips]-rule[0]] - "-" 0 19 0 - "-" "okhttp/4.12.0" "b" "payment.example.com" "-" - - 10.44.0.9:8443 10.1.2.3:40312 - -"#,
    r#"2026-11-22T10:00:00.003988000Z stdout F [2026-11-22T10:00:00.003Z] "GET /y HTTP/1.1" 429 RL local_rate_limited - "-" 0 18 0 - "-" "-" "c" "payment.example.com" "-" - - 10.44.0.9:8443 10.1.2.3:40312 - -"#,
    r#"2026-11-22T10:00:00.004985000Z stderr F 2026-11-22T10:00:00.004985Z	info	xdsproxy	connected to upstream XDS server"#,
];

#[test]
fn the_parse_path_allocates_nothing_per_line() {
    let parser = Parser::auto();
    let mut joiner = Joiner::default();
    let mut hint = Hint::default();
    let mut run = |rounds: usize| {
        let mut access = 0;
        for _ in 0..rounds {
            for (i, line) in LINES.iter().enumerate() {
                let Some(joined) = joiner.push(frame(line.as_bytes(), Framing::Cri), i as u64)
                else {
                    continue;
                };
                let text = joined.text();
                if let Parsed::Access { fields, .. } = parser.parse(&text, &mut hint) {
                    let v = classify::classify(&fields, None);
                    access += usize::from(v.outcome.as_str().len() > 1);
                }
            }
        }
        access
    };
    run(10);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let access = run(1000);
    let allocated = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(access, 5000, "every access line was read");
    assert_eq!(
        allocated,
        0,
        "{allocated} allocations for {} lines",
        1000 * LINES.len()
    );
}
