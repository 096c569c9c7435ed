//! `meshtrail`: Envoy/Istio access logs into security events, metrics and Elasticsearch.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod ack;
mod admin;
mod app;
mod checkpoint;
mod cli;
mod config;
mod demo;
mod document;
mod enrich;
mod logging;
mod metrics;
mod parse_cmd;
mod pipeline;
mod sink;
mod stats;
mod tail;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
