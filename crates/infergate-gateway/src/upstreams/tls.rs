//! TLS to `https://` upstreams, with rustls: verified against the system's roots (the CA
//! bundle `SSL_CERT_FILE` names, else the distribution's, else Mozilla's roots built in) or
//! against a service's own CA bundle (`tls_ca_pem`); SNI from the upstream's host; HTTP/1.1
//! by ALPN.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Where distributions keep the system's CA bundle.
const BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The client configurations of upstream TLS: one for the system's roots, one per CA
/// bundle a service names (made on the first connection that needs it).
#[derive(Default)]
pub(crate) struct UpstreamTls {
    system: OnceLock<Arc<ClientConfig>>,
    private: Mutex<HashMap<Arc<str>, Arc<ClientConfig>>>,
}

impl UpstreamTls {
    fn config(&self, ca_pem: Option<&Arc<str>>) -> Result<Arc<ClientConfig>, String> {
        let Some(pem) = ca_pem else {
            return Ok(self
                .system
                .get_or_init(|| client_config(system_roots()))
                .clone());
        };
        let mut private = self.private.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(config) = private.get(pem) {
            return Ok(config.clone());
        }
        let roots = roots_from_pem(pem.as_bytes())
            .map_err(|why| format!("the service's tls_ca_pem is unusable: {why}"))?;
        let config = client_config(roots);
        // Bundles of services since changed are not worth keeping.
        if private.len() >= 64 {
            private.clear();
        }
        private.insert(pem.clone(), config.clone());
        Ok(config)
    }

    /// TLS over `tcp` with `host`, verified against `ca_pem` (else the system's roots).
    pub(crate) async fn connect(
        &self,
        tcp: TcpStream,
        host: &str,
        ca_pem: Option<&Arc<str>>,
    ) -> Result<TlsStream<TcpStream>, String> {
        let config = self.config(ca_pem)?;
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| format!("{host} is not a TLS server name: {e}"))?;
        tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {host}: {e}"))
    }
}

fn client_config(roots: RootCertStore) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        // The provider supports the default versions.
        .unwrap_or_else(|_| ClientConfig::builder_with_protocol_versions(rustls::ALL_VERSIONS));
    let mut config = builder.with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// The certificates of a PEM bundle as roots; an error when none is usable.
fn roots_from_pem(pem: &[u8]) -> Result<RootCertStore, String> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM: {e}"))?;
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(format!(
            "no usable certificate ({ignored} could not be read)"
        ));
    }
    Ok(roots)
}

/// The system's CA bundle, else Mozilla's roots.
fn system_roots() -> RootCertStore {
    let bundle = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain(BUNDLES.iter().map(PathBuf::from))
        .find_map(|path| std::fs::read(&path).ok().map(|pem| (path, pem)));
    if let Some((path, pem)) = bundle {
        match roots_from_pem(&pem) {
            Ok(roots) => return roots,
            Err(why) => tracing::warn!(path = %path.display(), error = %why,
                "the system's CA bundle is unusable; using the built-in roots"),
        }
    }
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::roots_from_pem;

    #[test]
    fn bundles_without_a_usable_certificate_are_refused() {
        assert!(roots_from_pem(b"").is_err());
        assert!(roots_from_pem(b"not pem at all").is_err());
        let garbage = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(roots_from_pem(garbage).is_err());
    }
}
