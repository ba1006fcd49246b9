//! rustls configurations (ring provider) for TLS toward clients and, later, toward servers.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{self, CryptoProvider};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig};

/// PostgreSQL 17's ALPN protocol name. A client that offers ALPN must offer this one; clients
/// that offer none (all before libpq 17) are unaffected.
pub const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// Why a TLS configuration could not be built; every file-related variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: invalid PEM: {source}", path.display())]
    Pem {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: no PEM certificate found", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: no PEM private key (PKCS#8, PKCS#1 or SEC1) found", path.display())]
    NoPrivateKey { path: PathBuf },
    #[error("certificate {} and key {} rejected: {source}", cert.display(), key.display())]
    CertKey {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("{}: CA certificate rejected: {source}", path.display())]
    CaCertificate {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("certificate verification requires a CA file")]
    MissingCaFile,
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(crypto::ring::default_provider())
}

/// The configuration for TLS toward clients (after they send SSLRequest): the PEM certificate
/// chain in `cert_path` (leaf first) and its private key in `key_path`.
pub fn server_config(
    cert_path: &Path,
    key_path: &Path,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let certs = load_certs(cert_path)?;
    let key = load_key(key_path)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|source| TlsConfigError::CertKey {
            cert: cert_path.to_owned(),
            key: key_path.to_owned(),
            source,
        })?;
    config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    Ok(Arc::new(config))
}

/// The configuration for TLS toward PostgreSQL servers.
///
/// With `verify`, the server's chain must lead to a certificate in `ca_file` and name the host
/// connected to (libpq's `sslmode=verify-full`). Without it, any certificate is accepted and
/// `ca_file` is ignored (libpq's `sslmode=require`): the link is encrypted but an attacker on
/// the path can impersonate the server.
pub fn client_config(
    ca_file: Option<&Path>,
    verify: bool,
) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let builder =
        ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let config = if verify {
        let path = ca_file.ok_or(TlsConfigError::MissingCaFile)?;
        let mut roots = RootCertStore::empty();
        for cert in load_certs(path)? {
            roots
                .add(cert)
                .map_err(|source| TlsConfigError::CaCertificate {
                    path: path.to_owned(),
                    source,
                })?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert {
                provider: provider(),
            }))
            .with_no_client_auth()
    };
    Ok(Arc::new(config))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsConfigError> {
    std::fs::read(path).map_err(|source| TlsConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let pem = read(path)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsConfigError::Pem {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|source| TlsConfigError::Pem {
            path: path.to_owned(),
            source,
        })?
        .ok_or_else(|| TlsConfigError::NoPrivateKey {
            path: path.to_owned(),
        })
}

/// Accepts any server certificate, for `sslmode=require`-style links: it gives encryption
/// against passive eavesdroppers and NO protection against an active man in the middle.
///
/// It still checks the handshake signatures against the presented certificate, so the peer
/// must hold that certificate's key; that proves nothing about who the peer is.
#[derive(Debug)]
struct AcceptAnyServerCert {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests;
