//! The Elasticsearch sink: [`sink`] runs it; [`connect`] builds the HTTP client (URL or
//! Cloud ID, TLS, client certificate); [`bulk`] encodes `_bulk` bodies and picks each
//! document's index or data stream ([`route`] first); [`response`] settles each item;
//! [`retry`] backs off; [`dlq`] keeps what Elasticsearch refused for good.

pub mod bulk;
pub mod connect;
pub mod dlq;
pub mod response;
pub mod retry;
pub mod route;
pub mod sink;
pub mod templates;
