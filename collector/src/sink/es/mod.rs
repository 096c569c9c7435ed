//! The Elasticsearch sink's parts: the bulk request encoder, the response classifier, the
//! retry backoff and the dead-letter file. Each is tested on exact bytes and on real Elasticsearch bodies;
//! the HTTP client that joins them is the Elasticsearch issue's next step.

pub mod bulk;
pub mod dlq;
pub mod response;
pub mod retry;
pub mod sink;
