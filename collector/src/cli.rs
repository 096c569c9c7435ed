//! Command-line dispatch and exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use meshtrail_parsers::frame::Framing;
use meshtrail_parsers::partial::DEFAULT_MAX_LINE_BYTES;

use crate::parse_cmd::{self, ParseArgs};

/// Exit code for a configuration or usage error (BSD `EX_USAGE`, as linkerd uses).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "meshtrail",
    version,
    about = "Envoy/Istio access logs into security events, metrics and Elasticsearch"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent: tail container logs, parse, classify and ship events, with
    /// checkpoints that move only when the sink has the events.
    Run {
        /// The YAML configuration; without it, node defaults (`/var/log/containers/*.log`,
        /// checkpoints in `/var/lib/meshtrail`, events on standard output).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Stop once every file found is read to its end and delivered (backfills,
        /// benchmarks), instead of following the files.
        #[arg(long)]
        once: bool,
    },
    /// Check a configuration file and print the effective settings; exit 64 if it is bad.
    Validate {
        /// The YAML configuration.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the product on generated ingress, egress and sidecar traffic, with no cluster
    /// and no Elasticsearch, and show what it finds.
    Demo {
        /// Where to write the generated logs, the checkpoints and the events.
        #[arg(long, default_value = "meshtrail-demo")]
        dir: PathBuf,
        /// Requests written per second.
        #[arg(long, default_value_t = 500)]
        rate: u64,
        /// Stop after this many seconds (default: at Ctrl-C).
        #[arg(long)]
        duration: Option<u64>,
        /// Ship the events to this Elasticsearch (e.g. http://localhost:9200) instead of
        /// `<dir>/events.ndjson`.
        #[arg(long)]
        es_url: Option<String>,
    },
    /// Parse container-log or access-log lines from files or standard input and print one
    /// JSON event per line (NDJSON), e.g.
    /// `kubectl logs -n istio-system deploy/istio-ingressgateway --timestamps | meshtrail parse`.
    Parse {
        /// Access-log format: auto, a built-in name (meshtrail, istio-1.9, istio-1.3,
        /// istio-1.2, istio-1.8, istio-1.1, istio-1.1-pre, envoy-default, istio-json) or an
        /// Envoy format string. Repeat to try several in order.
        #[arg(long = "format", value_name = "FORMAT")]
        formats: Vec<String>,
        /// Container-log framing: auto, cri, docker, kubectl or none.
        #[arg(long, default_value = "auto", value_parser = |s: &str| s.parse::<Framing>())]
        framing: Framing,
        /// Print counts per format and of unparsed lines to standard error.
        #[arg(long)]
        stats: bool,
        /// Copy each access-log line into `event.original`.
        #[arg(long)]
        keep_original: bool,
        /// Longest line kept after joining partial records; the rest is dropped and flagged.
        #[arg(long, default_value_t = DEFAULT_MAX_LINE_BYTES, value_name = "BYTES")]
        max_line_bytes: usize,
        /// Files to read; standard input when none or `-`.
        files: Vec<PathBuf>,
    },
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    crate::memory::tune_allocator();
    // One TLS provider for the process: the Elasticsearch and Kubernetes clients share it.
    crate::sink::es::connect::install_crypto_provider();
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config, once } => {
            crate::logging::init();
            // A bad configuration is refused before anything starts.
            if let Err(e) = crate::app::load(config.as_deref()) {
                tracing::error!(error = %format!("{e:#}"), "configuration refused");
                eprintln!("meshtrail: {e:#}");
                return ExitCode::from(EXIT_CONFIG);
            }
            match crate::app::run(config.as_deref(), once) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "meshtrail failed");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Validate { config } => match crate::app::load(Some(&config)) {
            Ok(settings) => {
                println!("{settings:#?}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("meshtrail: {e:#}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Demo {
            dir,
            rate,
            duration,
            es_url,
        } => match crate::demo::run(&crate::demo::Args {
            dir,
            rate,
            duration: duration.map(std::time::Duration::from_secs),
            es_url,
        }) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("meshtrail: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Parse {
            formats,
            framing,
            stats,
            keep_original,
            max_line_bytes,
            files,
        } => {
            // A bad format is a usage error: refuse before reading anything.
            if let Err(e) = parse_cmd::parser(&formats) {
                eprintln!("meshtrail: {e:#}");
                return ExitCode::from(EXIT_CONFIG);
            }
            let args = ParseArgs {
                formats,
                framing,
                files,
                stats,
                keep_original,
                max_line_bytes,
            };
            match parse_cmd::run(&args) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("meshtrail: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
