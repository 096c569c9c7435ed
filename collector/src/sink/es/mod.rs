//! The Elasticsearch sink's pure parts: the bulk request encoder, the response classifier
//! and the retry backoff. Each is tested on exact bytes and on real Elasticsearch bodies;
//! the HTTP client that joins them is the Elasticsearch issue's next step.

pub mod bulk;
pub mod response;
pub mod retry;
