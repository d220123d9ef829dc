//! TLS to `https://` upstreams, with rustls: verified against the system's roots (the CA
//! bundle `SSL_CERT_FILE` names, else the distribution's, else Mozilla's roots built in) or
//! against a service's own CA bundle (`tls_ca_pem`); SNI from the upstream's host; HTTP/2 or
//! HTTP/1.1 as ALPN settles (HTTP/1.1 alone where a call must be upgraded, or a probe
//! speaks HTTP/1.1).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::upstreams::pool::{split_authority, ConnectError, Pool, Pooled};

/// Where distributions keep the system's CA bundle.
const BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The protocols a connection offers by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alpn {
    /// HTTP/2, else HTTP/1.1: what calls use.
    H2OrHttp11,
    /// HTTP/1.1 alone: for upgrades, which HTTP/2 cannot carry, and probes.
    Http11,
}

/// The client configurations of one set of roots, one per offer of protocols.
#[derive(Clone)]
struct Configs {
    h2_or_http11: Arc<ClientConfig>,
    http11: Arc<ClientConfig>,
}

impl Configs {
    fn new(roots: RootCertStore) -> Self {
        let h2_or_http11 = client_config(roots, &[b"h2", b"http/1.1"]);
        let mut http11 = (*h2_or_http11).clone();
        http11.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self {
            h2_or_http11,
            http11: Arc::new(http11),
        }
    }

    fn offering(&self, alpn: Alpn) -> Arc<ClientConfig> {
        match alpn {
            Alpn::H2OrHttp11 => self.h2_or_http11.clone(),
            Alpn::Http11 => self.http11.clone(),
        }
    }
}

/// The client configurations of upstream TLS: those of the system's roots, and those of
/// each CA bundle a service names (made on the first connection that needs them).
#[derive(Default)]
pub(crate) struct UpstreamTls {
    system: OnceLock<Configs>,
    private: Mutex<HashMap<Arc<str>, Configs>>,
}

impl UpstreamTls {
    fn config(&self, ca_pem: Option<&Arc<str>>, alpn: Alpn) -> Result<Arc<ClientConfig>, String> {
        let Some(pem) = ca_pem else {
            return Ok(self
                .system
                .get_or_init(|| Configs::new(system_roots()))
                .offering(alpn));
        };
        let mut private = self.private.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(configs) = private.get(pem) {
            return Ok(configs.offering(alpn));
        }
        let roots = roots_from_pem(pem.as_bytes())
            .map_err(|why| format!("the service's tls_ca_pem is unusable: {why}"))?;
        let configs = Configs::new(roots);
        // Bundles of services since changed are not worth keeping.
        if private.len() >= 64 {
            private.clear();
        }
        private.insert(pem.clone(), configs.clone());
        Ok(configs.offering(alpn))
    }

    /// TLS over `tcp` with `host`, verified against `ca_pem` (else the system's roots),
    /// offering the protocols of `alpn`.
    pub(crate) async fn connect(
        &self,
        tcp: TcpStream,
        host: &str,
        ca_pem: Option<&Arc<str>>,
        alpn: Alpn,
    ) -> Result<TlsStream<TcpStream>, String> {
        let config = self.config(ca_pem, alpn)?;
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| format!("{host} is not a TLS server name: {e}"))?;
        tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {host}: {e}"))
    }
}

impl UpstreamTls {
    /// A new TLS connection to an `https://` upstream (port 443 unless it names one), made
    /// through `pool`'s upstream policy, verified against `ca_pem` (else the system's
    /// roots), offering `alpn`.
    pub(crate) async fn connect_upstream<C: Pooled>(
        &self,
        pool: &Pool<C>,
        authority: &str,
        ca_pem: Option<&Arc<str>>,
        alpn: Alpn,
    ) -> Result<TlsStream<TcpStream>, ConnectError> {
        let tcp = pool.connect_tcp(authority, 443).await?;
        let host = split_authority(authority, 443).map_or_else(|| authority.to_owned(), |(h, _)| h);
        Ok(self.connect(tcp, &host, ca_pem, alpn).await?)
    }
}

/// Whether the upstream chose HTTP/2 by ALPN.
pub(crate) fn chose_h2(tls: &TlsStream<TcpStream>) -> bool {
    tls.get_ref().1.alpn_protocol() == Some(b"h2")
}

fn client_config(roots: RootCertStore, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        // The provider supports the default versions.
        .unwrap_or_else(|_| ClientConfig::builder_with_protocol_versions(rustls::ALL_VERSIONS));
    let mut config = builder.with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
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
