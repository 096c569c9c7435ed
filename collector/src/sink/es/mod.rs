//! The Elasticsearch sink: [`sink`] runs it and [`request`] sends its bulk requests, as
//! many at once as [`pace`] allows; [`probe`] tells when a failing cluster is back; [`connect`] builds the HTTP client (URL or
//! Cloud ID, TLS, client certificate); [`bulk`] writes each document's `create` action, into
//! the index or data stream [`route`] picks; [`gzip`] compresses the body; [`response`]
//! settles each item; [`retry`] backs off; [`dlq`] keeps what Elasticsearch refused for good.

pub mod bulk;
pub mod config;
pub mod connect;
pub mod dlq;
pub mod gzip;
pub mod pace;
pub mod probe;
pub mod request;
pub mod response;
pub mod retry;
pub mod route;
pub mod sink;
pub mod templates;
