//! meshtrail's agent as a library: the `meshtrail` binary is [`cli::main`]; benchmarks and
//! tests reach the stages directly.
#![deny(missing_docs)]
// Denied everywhere but `memory`, which makes one allocator call.
#![deny(unsafe_code)]

pub mod ack;
pub mod admin;
pub mod app;
pub mod backoff;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod config_error;
pub mod demo;
pub mod document;
pub mod enrich;
pub mod k8s;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod parse_cmd;
pub mod pipeline;
pub mod sink;
pub mod stats;
pub mod tail;
