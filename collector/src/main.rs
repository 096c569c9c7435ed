//! `meshtrail`: Envoy/Istio access logs into security events, metrics and Elasticsearch.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod cli;
mod demo;
mod document;
mod parse_cmd;
mod pipeline;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
