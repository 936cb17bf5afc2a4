//! The rustls server configuration: TLS 1.2 and 1.3 only, HTTP/2 and HTTP/1.1 by ALPN.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS could not be set up. Names files, never their contents.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file could not be read or parsed.
    #[error("cannot read the TLS certificate chain from {0}")]
    Certificate(String),
    /// The key file could not be read or parsed.
    #[error("cannot read the TLS private key from {0}")]
    Key(String),
    /// rustls refused the pair.
    #[error("the TLS certificate and key are not usable together: {0}")]
    Config(#[from] rustls::Error),
}

/// A server configuration from PEM files.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|_| TlsError::Certificate(cert.display().to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::Certificate(cert.display().to_string()));
    }
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|_| TlsError::Key(key.display().to_string()))?;
    // TLS 1.0 and 1.1 are not offered at all (PCI DSS 4.2.1).
    let mut config = ServerConfig::builder_with_protocol_versions(&[
        &rustls::version::TLS13,
        &rustls::version::TLS12,
    ])
    .with_no_client_auth()
    .with_single_cert(chain, key_der)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
