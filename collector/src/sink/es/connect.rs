//! How the sink reaches Elasticsearch: the URL (or an Elastic Cloud ID), TLS with a custom
//! CA bundle and a client certificate, and the HTTP client built from them. rustls with the
//! `ring` provider, the one TLS stack of the binary (the Kubernetes client uses it too).

use std::path::PathBuf;
use std::time::Duration;

use tracing::warn;

/// TLS settings of the sink.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tls {
    /// PEM bundle of CAs trusted besides the system's.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) and its key, for clusters that ask for one.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Accept any server certificate. Explicit opt-in only; warned about at start.
    pub insecure_skip_verify: bool,
}

/// Makes rustls's `ring` provider the process default, as the HTTP client expects one.
/// Idempotent.
pub fn install_crypto_provider() {
    // Err means one is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Reads the files `tls` names and checks they hold what they must (a PEM bundle with a
/// certificate; a PEM certificate and key), as the client will: a refusal names the field,
/// the file and why, for the configuration check at start.
pub fn check_files(tls: &Tls) -> Result<(), (&'static str, PathBuf, String)> {
    install_crypto_provider();
    if let Some(path) = &tls.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| ("sink.ca_file", path.clone(), format!("cannot read it: {e}")))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            (
                "sink.ca_file",
                path.clone(),
                format!("not a PEM bundle: {e}"),
            )
        })?;
        if certs.is_empty() {
            return Err((
                "sink.ca_file",
                path.clone(),
                "no certificate in it: expected PEM (-----BEGIN CERTIFICATE-----)".into(),
            ));
        }
    }
    if let Some((cert, key)) = &tls.client_cert {
        let mut pem = std::fs::read(cert).map_err(|e| {
            (
                "sink.client_cert_file",
                cert.clone(),
                format!("cannot read it: {e}"),
            )
        })?;
        pem.push(b'\n');
        pem.extend(std::fs::read(key).map_err(|e| {
            (
                "sink.client_key_file",
                key.clone(),
                format!("cannot read it: {e}"),
            )
        })?);
        reqwest::Identity::from_pem(&pem).map_err(|e| {
            (
                "sink.client_cert_file",
                cert.clone(),
                format!(
                    "with sink.client_key_file {}: not a PEM certificate and key: {e}",
                    key.display()
                ),
            )
        })?;
    }
    Ok(())
}

/// The blocking HTTP client for `_bulk` and the templates.
pub fn client(tls: &Tls) -> Result<reqwest::blocking::Client, String> {
    install_crypto_provider();
    let mut b = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(50));
    if let Some(path) = &tls.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| format!("sink.ca_file {}: cannot read it: {e}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("sink.ca_file {}: not a PEM bundle: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "sink.ca_file {}: no certificate in it",
                path.display()
            ));
        }
        b = b.tls_certs_merge(certs);
    }
    if let Some((cert, key)) = &tls.client_cert {
        let mut pem = std::fs::read(cert).map_err(|e| {
            format!(
                "sink.client_cert_file {}: cannot read it: {e}",
                cert.display()
            )
        })?;
        pem.push(b'\n');
        pem.extend(std::fs::read(key).map_err(|e| {
            format!(
                "sink.client_key_file {}: cannot read it: {e}",
                key.display()
            )
        })?);
        let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
            format!(
                "sink.client_cert_file {} / sink.client_key_file {}: not a PEM certificate and key: {e}",
                cert.display(),
                key.display()
            )
        })?;
        b = b.identity(id);
    }
    if tls.insecure_skip_verify {
        warn!("sink.tls_insecure_skip_verify is on: Elasticsearch's certificate is not checked");
        b = b.tls_danger_accept_invalid_certs(true);
    }
    b.build()
        .map_err(|e| format!("building the HTTP client: {e}"))
}

/// An error with its causes, `outer: inner: root`: reqwest's own text ("error sending
/// request") hides the reason (an unknown certificate issuer, a refused connection).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = c.source();
    }
    text
}

/// The Elasticsearch URL an Elastic Cloud ID names: `<label>:<base64 of
/// host[:port]$es-uuid$kibana-uuid>` → `https://<es-uuid>.<host>[:port]`.
pub fn cloud_id_url(id: &str) -> Result<String, String> {
    let encoded = id.rsplit_once(':').map_or(id, |(_, b)| b);
    let decoded = base64_decode(encoded.trim()).ok_or("the part after the label is not base64")?;
    let text = String::from_utf8(decoded).map_err(|_| "the decoded Cloud ID is not text")?;
    let mut parts = text.split('$');
    let (Some(host), Some(es)) = (parts.next(), parts.next()) else {
        return Err("expected host$elasticsearch-id$kibana-id once decoded".into());
    };
    if host.is_empty() || es.is_empty() {
        return Err("expected host$elasticsearch-id$kibana-id once decoded".into());
    }
    Ok(match host.split_once(':') {
        Some((h, port)) => format!("https://{es}.{h}:{port}"),
        None => format!("https://{es}.{host}"),
    })
}

/// Standard base64 (RFC 4648), padding optional: Cloud IDs are copied with and without it.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    ENGINE.decode(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_ids() {
        // The example of Elastic's documentation: "us-east-1.aws.found.io$abc$def".
        assert_eq!(
            cloud_id_url("staging:dXMtZWFzdC0xLmF3cy5mb3VuZC5pbyRjZWM2ZjI2MWE3NGJmMjRjZTMzYmI4ODExYjg0Mjk0ZiRjNmMyY2E2ZDA0MjI0OWFmMGNjN2Q3YTllOTYyNTc0Mw==").unwrap(),
            "https://cec6f261a74bf24ce33bb8811b84294f.us-east-1.aws.found.io"
        );
        // With a port, and without the label.
        let id = "ZXUtd2VzdC0xLmF3cy5lbGFzdGljLWNsb3VkLmNvbTo5MjQzJGFiYyRkZWY=";
        assert_eq!(
            String::from_utf8(base64_decode(id).unwrap()).unwrap(),
            "eu-west-1.aws.elastic-cloud.com:9243$abc$def"
        );
        assert_eq!(
            cloud_id_url(id).unwrap(),
            "https://abc.eu-west-1.aws.elastic-cloud.com:9243"
        );
        assert!(cloud_id_url("label:not base64!").is_err());
        assert!(cloud_id_url("bm9kb2xsYXI=").is_err(), "no $ inside");
    }

    #[test]
    fn unreadable_tls_files_are_named() {
        let err = client(&Tls {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Tls::default()
        })
        .unwrap_err();
        assert!(err.contains("sink.ca_file /nonexistent/ca.pem"), "{err}");
    }
}
