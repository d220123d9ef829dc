//! TLS for tests of the gateway's HTTPS listener: a self-signed certificate for
//! `localhost`, written where `serve` reads it, and a client that trusts it.

use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A self-signed certificate for `localhost`: (PEM certificate, PEM key, DER certificate).
pub fn self_signed() -> (String, String, Vec<u8>) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    (
        certified.cert.pem(),
        certified.signing_key.serialize_pem(),
        certified.cert.der().to_vec(),
    )
}

/// A new self-signed pair written to `dir`: the `serve` flags that use it, and its DER
/// certificate.
pub fn listener_flags(dir: &Path) -> (Vec<String>, Vec<u8>) {
    let (cert, key, der) = self_signed();
    let (cert_path, key_path) = (dir.join("gateway.crt"), dir.join("gateway.key"));
    std::fs::write(&cert_path, cert).expect("cert");
    std::fs::write(&key_path, key).expect("key");
    let flags = vec![
        "--gateway-tls-cert".to_owned(),
        cert_path.display().to_string(),
        "--gateway-tls-key".to_owned(),
        key_path.display().to_string(),
    ];
    (flags, der)
}

/// A TLS client trusting `der` alone and offering `alpn`; it keeps sessions to resume.
pub fn connector(der: &[u8], alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(der.to_vec()))
        .expect("root");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Connects to `addr` (host:port) over TLS, as `localhost`.
pub async fn connect(connector: &tokio_rustls::TlsConnector, addr: &str) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    connector.connect(name, tcp).await.expect("TLS handshake")
}
