//! `meshtrail demo`: the product on a laptop, with no cluster and no Elasticsearch.
//!
//! Lays out a node-like log directory, keeps writing realistic ingress-gateway,
//! egress-gateway and sidecar traffic into it ([`traffic`]), and runs the real agent on it:
//! tailing with checkpoints and rotations, parsing, classification, path-derived metadata,
//! `/metrics`, and the NDJSON file sink (or Elasticsearch with `--es-url`). While it runs it
//! shows what the agent found ([`summary`]); Ctrl-C stops it cleanly.

pub mod summary;
pub mod traffic;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;

use crate::app::Live;
use crate::config::Config;

/// What the demo is asked to do.
#[derive(Clone, Debug)]
pub struct Args {
    /// Where the logs, checkpoints and events go.
    pub dir: PathBuf,
    /// Requests written per second.
    pub rate: u64,
    /// Stop after this long; `None`: at Ctrl-C.
    pub duration: Option<Duration>,
    /// Ship to this Elasticsearch instead of the NDJSON file.
    pub es_url: Option<String>,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn config(dir: &Path, metrics: &str, es_url: Option<&str>) -> String {
    let q = |p: PathBuf| serde_json::to_string(&p.display().to_string()).unwrap_or_default();
    let sink = match es_url {
        Some(url) => format!(
            "sink:\n  type: elasticsearch\n  url: {}\n  dead_letter_path: {}\n",
            serde_json::to_string(url).unwrap_or_default(),
            q(dir.join("dead-letters.ndjson"))
        ),
        None => format!(
            "sink:\n  type: file\n  path: {}\n  max_file_bytes: 1073741824\n",
            q(dir.join("events.ndjson"))
        ),
    };
    format!(
        "node_name: demo-node\ncluster_name: demo\ndata_dir: {data}\n\
         tail:\n  include: [{include}]\n  poll_interval_ms: 100\n  rotate_wait_secs: 2\n\
         {sink}metrics:\n  address: {metrics}\nkubernetes:\n  source: off\nshutdown_timeout_secs: 5\n",
        data = q(dir.join("data")),
        include = q(dir.join("logs/containers/*.log")),
    )
}

/// Runs the demo until Ctrl-C or the duration.
pub fn run(args: &Args) -> anyhow::Result<()> {
    // The agent's patterns are absolute: `--dir` (default `./meshtrail-demo`) is made so.
    let dir =
        &std::path::absolute(&args.dir).with_context(|| format!("--dir {}", args.dir.display()))?;
    // A fresh directory each time: the demo's events are this run's.
    let _ = std::fs::remove_dir_all(dir.join("logs"));
    let _ = std::fs::remove_dir_all(dir.join("data"));
    let _ = std::fs::remove_file(dir.join("events.ndjson"));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let metrics = format!("127.0.0.1:{}", free_port()?);
    let yaml = config(dir, &metrics, args.es_url.as_deref());
    let settings = Config::parse(&yaml, "demo")?.validate(&|k| {
        std::env::var(k)
            .ok()
            .filter(|_| k != "KUBERNETES_SERVICE_HOST")
    })?;
    let mut traffic = traffic::Traffic::new(&dir.join("logs"), 8 << 20)?;

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("handling Ctrl-C")?;
    }
    let agent_stop = Arc::new(AtomicBool::new(false));
    let agent = {
        let (settings, agent_stop) = (settings.clone(), agent_stop.clone());
        let live = Arc::new(Live::new(&settings)?);
        std::thread::Builder::new()
            .name("meshtrail-demo-agent".into())
            .spawn(move || crate::app::run_until(&settings, &agent_stop, false, live))?
    };

    let terminal = std::io::stdout().is_terminal();
    let events_path = args.es_url.is_none().then(|| dir.join("events.ndjson"));
    let mut events = summary::Events::new(events_path.clone());
    let started = Instant::now();
    let (mut last_acked, mut last_at) = (0.0, Instant::now());
    let mut rate = 0.0;
    let spinner = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
    let mut tick = 0usize;
    let mut next_print = Instant::now();
    while !stop.load(Ordering::Relaxed)
        && args.duration.is_none_or(|d| started.elapsed() < d)
        && !agent.is_finished()
    {
        traffic.write(args.rate.div_ceil(10), SystemTime::now())?;
        std::thread::sleep(Duration::from_millis(100));
        if Instant::now() < next_print {
            continue;
        }
        next_print = Instant::now() + Duration::from_secs(if terminal { 1 } else { 5 });
        let exposition = summary::scrape(&metrics).unwrap_or_default();
        let acked = summary::sum(&exposition, "meshtrail_events_acknowledged_total", None);
        let secs = last_at.elapsed().as_secs_f64();
        if secs > 0.0 {
            rate = (acked - last_acked) / secs;
        }
        (last_acked, last_at) = (acked, Instant::now());
        events.update();
        tick += 1;
        let text = summary::render(&exposition, &events, rate, spinner[tick % spinner.len()]);
        let mut out = std::io::stdout().lock();
        if terminal {
            // Redraw in place.
            let _ = write!(out, "\x1b[H\x1b[2J{text}\n  Ctrl-C to stop\n");
        } else {
            let first = text.lines().next().unwrap_or_default();
            let _ = writeln!(out, "{first}");
        }
        let _ = out.flush();
    }

    // Stop writing, let the agent read to the end, deliver and checkpoint.
    let written = traffic.written;
    let exposition_before = summary::scrape(&metrics).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines_target = summary::sum(&exposition_before, "meshtrail_lines_read_total", None);
    while Instant::now() < deadline {
        let e = summary::scrape(&metrics).unwrap_or_default();
        let acked = summary::sum(&e, "meshtrail_events_acknowledged_total", None);
        let read = summary::sum(&e, "meshtrail_lines_read_total", None);
        if acked >= read && read >= lines_target {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let exposition = summary::scrape(&metrics).unwrap_or_default();
    events.update();
    agent_stop.store(true, Ordering::Relaxed);
    match agent.join() {
        Ok(r) => r?,
        Err(_) => anyhow::bail!("the agent thread panicked"),
    }
    let text = summary::render(&exposition, &events, rate, '✓');
    let mut out = std::io::stdout().lock();
    if terminal {
        let _ = write!(out, "\x1b[H\x1b[2J");
    }
    writeln!(out, "{text}")?;
    writeln!(
        out,
        "{written} requests written in {:.0} s\n\ninput logs:  {}\ncheckpoints: {}",
        started.elapsed().as_secs_f64(),
        dir.join("logs").display(),
        dir.join("data").display()
    )?;
    match (&events_path, &args.es_url) {
        (Some(p), _) => writeln!(out, "events:      {}", p.display())?,
        (None, Some(url)) => writeln!(out, "events:      {url} (data streams logs-meshtrail.*)")?,
        (None, None) => {}
    }
    Ok(())
}
