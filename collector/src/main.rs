//! `meshtrail`: Envoy/Istio access logs into security events, metrics and Elasticsearch.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    meshtrail::cli::main()
}
