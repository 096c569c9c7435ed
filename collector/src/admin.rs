//! The admin listener: `/metrics` (Prometheus text format), `/healthz` (the loops are
//! alive), `/readyz` (configuration loaded, checkpoints writable, the sink answering).
//! hyper on a single-threaded tokio runtime of its own: scrapes never compete with parsing.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tracing::{info, warn};

use crate::ack::Budget;
use crate::metrics::Metrics;
use crate::stats::Counters;

/// What `/healthz` and `/readyz` answer from.
#[derive(Debug, Default)]
pub struct Health {
    /// The last checkpoint write succeeded (or none was due yet).
    pub checkpoint_ok: AtomicBool,
    /// The sink's last write succeeded (or none was due yet).
    pub sink_ok: AtomicBool,
    /// Unix seconds of the tailer loop's last turn.
    pub tail_heartbeat: AtomicU64,
}

impl Health {
    /// Healthy and ready until told otherwise.
    pub fn new() -> Health {
        let h = Health {
            checkpoint_ok: AtomicBool::new(true),
            sink_ok: AtomicBool::new(true),
            tail_heartbeat: AtomicU64::new(0),
        };
        h.beat();
        h
    }

    /// Records a turn of the tailer loop.
    pub fn beat(&self) {
        self.tail_heartbeat.store(now(), Ordering::Relaxed);
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Everything a request needs.
pub struct State {
    /// The families.
    pub metrics: Arc<Metrics>,
    /// Pipeline counters.
    pub counters: Arc<Counters>,
    /// In-flight bytes.
    pub budget: Arc<Budget>,
    /// Liveness and readiness facts.
    pub health: Arc<Health>,
}

fn respond(state: &State, path: &str) -> Response<Full<Bytes>> {
    let text = |code: StatusCode, body: String, kind: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = code;
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(kind),
        );
        r
    };
    match path {
        "/metrics" => text(
            StatusCode::OK,
            state.metrics.render(&state.counters, state.budget.used()),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        "/healthz" => {
            // The tailer turns at least every poll interval, or blocks only on backpressure.
            let stalled =
                now().saturating_sub(state.health.tail_heartbeat.load(Ordering::Relaxed)) > 120;
            if stalled {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "tail loop stalled for over 120 s\n".into(),
                    "text/plain",
                )
            } else {
                text(StatusCode::OK, "ok\n".into(), "text/plain")
            }
        }
        "/readyz" => {
            let mut why = Vec::new();
            if !state.health.checkpoint_ok.load(Ordering::Relaxed) {
                why.push("checkpoints are not writable");
            }
            if !state.health.sink_ok.load(Ordering::Relaxed) {
                why.push("the sink is failing");
            }
            if why.is_empty() {
                text(StatusCode::OK, "ready\n".into(), "text/plain")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{}\n", why.join("; ")),
                    "text/plain",
                )
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz or /readyz\n".into(),
            "text/plain",
        ),
    }
}

/// Binds `addr` now (so a taken port is an error at start) and serves on a thread of its own.
pub fn serve(addr: SocketAddr, state: State) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    info!(address = %local, "serving /metrics, /healthz, /readyz");
    let state = Arc::new(state);
    std::thread::Builder::new()
        .name("meshtrail-admin".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return warn!(error = %e, "admin runtime failed; no /metrics"),
            };
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => return warn!(error = %e, "admin listener failed; no /metrics"),
                };
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let state = state.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                            let r = respond(&state, req.uri().path());
                            async move { Ok::<_, Infallible>(r) }
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        })?;
    Ok(local)
}
