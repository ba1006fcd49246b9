use std::path::PathBuf;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::*;

/// A scratch directory removed on drop, unique per test so tests run in parallel.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("pgsplit-tls-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh self-signed certificate for `localhost` and its PKCS#8 key, written as PEM files.
fn self_signed(scratch: &Scratch) -> (PathBuf, PathBuf) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    (
        scratch.write("cert.pem", &certified.cert.pem()),
        scratch.write("key.pem", &certified.signing_key.serialize_pem()),
    )
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

#[test]
fn loads_pkcs8_key_from_rcgen() {
    let scratch = Scratch::new("pkcs8");
    let (cert, key) = self_signed(&scratch);
    let config = server_config(&cert, &key).unwrap();
    assert_eq!(config.alpn_protocols, vec![ALPN_POSTGRESQL.to_vec()]);
}

#[test]
fn loads_pkcs1_and_sec1_keys() {
    server_config(&fixture("rsa.crt"), &fixture("rsa-pkcs1.key")).unwrap();
    server_config(&fixture("ec.crt"), &fixture("ec-sec1.key")).unwrap();
}

#[test]
fn missing_files_are_named() {
    let scratch = Scratch::new("missing");
    let (cert, key) = self_signed(&scratch);
    let nowhere = scratch.0.join("no-such-file.pem");
    for (cert, key) in [(&nowhere, &key), (&cert, &nowhere)] {
        let err = server_config(cert, key).unwrap_err();
        assert!(matches!(err, TlsConfigError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains("no-such-file.pem"), "{err}");
    }
    let err = client_config(Some(&nowhere), true).unwrap_err();
    assert!(err.to_string().contains("no-such-file.pem"), "{err}");
}

#[test]
fn swapped_or_empty_files_are_named() {
    let scratch = Scratch::new("swapped");
    let (cert, key) = self_signed(&scratch);
    let err = server_config(&key, &key).unwrap_err();
    assert!(
        matches!(&err, TlsConfigError::NoCertificate { path } if *path == key),
        "{err:?}"
    );
    assert!(err.to_string().contains("key.pem"), "{err}");

    let err = server_config(&cert, &cert).unwrap_err();
    assert!(
        matches!(&err, TlsConfigError::NoPrivateKey { path } if *path == cert),
        "{err:?}"
    );

    let empty = scratch.write("empty.pem", "");
    assert!(matches!(
        server_config(&empty, &key),
        Err(TlsConfigError::NoCertificate { .. })
    ));
}

#[test]
fn key_of_another_certificate_is_rejected() {
    let err = server_config(&fixture("rsa.crt"), &fixture("ec-sec1.key")).unwrap_err();
    assert!(matches!(err, TlsConfigError::CertKey { .. }), "{err:?}");
    let shown = err.to_string();
    assert!(
        shown.contains("rsa.crt") && shown.contains("ec-sec1.key"),
        "{shown}"
    );
}

#[test]
fn verification_needs_a_ca_file() {
    assert!(matches!(
        client_config(None, true),
        Err(TlsConfigError::MissingCaFile)
    ));
    client_config(None, false).unwrap();
}

/// Runs a TLS handshake in memory and one round trip; Err if the client refuses the server.
async fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    name: &'static str,
) -> Result<(), io::Error> {
    let (client_io, server_io) = tokio::io::duplex(16 * 1024);
    let server = tokio::spawn(async move {
        let mut tls = TlsAcceptor::from(server).accept(server_io).await?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        tls.write_all(&buf).await?;
        tls.flush().await?;
        Ok::<_, io::Error>(())
    });
    let name = ServerName::try_from(name).unwrap();
    let mut tls = TlsConnector::from(client).connect(name, client_io).await?;
    tls.write_all(b"ping").await?;
    let mut buf = [0u8; 4];
    tls.read_exact(&mut buf).await?;
    assert_eq!(&buf, b"ping");
    // The server side's own result matters only when the client got through.
    server.await.unwrap()
}

#[tokio::test]
async fn verifying_client_trusts_its_ca_and_checks_the_name() {
    let scratch = Scratch::new("verify");
    let (cert, key) = self_signed(&scratch);
    let server = server_config(&cert, &key).unwrap();
    let client = client_config(Some(&cert), true).unwrap();
    handshake(server.clone(), client.clone(), "localhost")
        .await
        .unwrap();
    assert!(handshake(server, client, "db.example.com").await.is_err());
}

#[tokio::test]
async fn verifying_client_refuses_an_unknown_ca() {
    let scratch = Scratch::new("unknown-ca");
    let (cert, key) = self_signed(&scratch);
    let server = server_config(&cert, &key).unwrap();
    let client = client_config(Some(&fixture("ec.crt")), true).unwrap();
    assert!(handshake(server, client, "localhost").await.is_err());
}

#[tokio::test]
async fn non_verifying_client_accepts_any_certificate() {
    let scratch = Scratch::new("require");
    let (cert, key) = self_signed(&scratch);
    let client = client_config(Some(&fixture("ec.crt")), false).unwrap();
    handshake(
        server_config(&cert, &key).unwrap(),
        client.clone(),
        "db.example.com",
    )
    .await
    .unwrap();
    let rsa = server_config(&fixture("rsa.crt"), &fixture("rsa-pkcs1.key")).unwrap();
    handshake(rsa, client, "localhost").await.unwrap();
}
