//! TLS toward servers: a PostgreSQL started by the test with certificates made by rcgen, reached in every sslmode.

mod common;

use common::*;
use pgsplit::config::{Config, EnvOverrides};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// Port of the TLS-enabled server; this worktree's own range, away from the shared cluster.
/// The TLS server's port: below the kernel's ephemeral range (32768-60999), where a client
/// socket of another test can never be holding it, and apart from the other test clusters.
const TLS_PORT: u16 = 15452;

fn pg_bin(name: &str) -> String {
    let dir = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "/usr/lib/postgresql/15/bin".into());
    format!("{dir}/{name}")
}

/// A CA's PEM certificate, and a server certificate and key it signed for localhost/127.0.0.1.
fn make_ca_and_server_cert() -> (String, String, String) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// A throwaway PostgreSQL with ssl = on, stopped on drop.
struct TlsServer {
    dir: PathBuf,
}

impl TlsServer {
    fn start(cert: &str, key: &str) -> TlsServer {
        let dir = std::env::temp_dir().join(unique("lim_tls_pg"));
        let data = dir.join("data");
        std::fs::create_dir_all(&dir).unwrap();
        // PostgreSQL refuses to run as root; as root, run it as the postgres OS user, as
        // scripts/cluster.sh does.
        // SAFETY: geteuid has no preconditions.
        let as_root = unsafe { libc::geteuid() } == 0;
        let chown = || {
            if as_root {
                let ok = Command::new("chown")
                    .args(["-R", "postgres"])
                    .arg(&dir)
                    .status()
                    .unwrap();
                assert!(ok.success());
            }
        };
        let run = |args: &[&str]| {
            let mut cmd = if as_root {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--", &pg_bin(args[0])]);
                c
            } else {
                Command::new(pg_bin(args[0]))
            };
            let out = cmd.args(&args[1..]).current_dir("/").output().unwrap();
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let data_s = data.to_str().unwrap();
        chown();
        run(&[
            "initdb",
            "-D",
            data_s,
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        std::fs::write(data.join("server.crt"), cert).unwrap();
        std::fs::write(data.join("server.key"), key).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let conf = format!(
            "\nport = {TLS_PORT}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nssl = on\nfsync = off\n",
            dir.display()
        );
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(&mut f, conf.as_bytes()).unwrap();
        chown();
        let log = dir.join("log");
        run(&[
            "pg_ctl",
            "start",
            "-w",
            "-D",
            data_s,
            "-l",
            log.to_str().unwrap(),
        ]);
        TlsServer { dir }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        // SAFETY: geteuid has no preconditions.
        let mut cmd = if unsafe { libc::geteuid() } == 0 {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", &pg_bin("pg_ctl")]);
            c
        } else {
            Command::new(pg_bin("pg_ctl"))
        };
        let _ = cmd
            .args(["stop", "-m", "immediate", "-D", data.to_str().unwrap()])
            .current_dir("/")
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn proxy(primary: &str, tls: &str) -> pgsplit::ProxyHandle {
    let text = format!(
        "listen = \"127.0.0.1:0\"\n{tls}\n[pool]\nconnect_timeout_ms = 3000\n\n[[users]]\nname = \"tls_user\"\npassword = \"pw\"\n\n[[users]]\nname = \"app\"\npassword = \"app\"\n\n[[databases]]\nname = \"app\"\n\n[stats]\nlisten = \"127.0.0.1:0\"\n"
    );
    let env = EnvOverrides {
        primary: Some(primary.to_string()),
        replicas: Some(String::new()),
        ..Default::default()
    };
    let config = Config::from_toml(&text, &env).expect("config");
    let listener = pgsplit::bind(config.listen, 128).unwrap();
    pgsplit::start(Arc::new(config), listener).await.unwrap()
}

/// Whether the proxy's server connection is encrypted, or the error the client got.
async fn server_ssl(handle: &pgsplit::ProxyHandle, user: &str, pw: &str) -> Result<bool, String> {
    let url = format!(
        "postgres://{user}:{pw}@127.0.0.1:{}/app",
        handle.addr.port()
    );
    let text = |e: tokio_postgres::Error| {
        e.as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or(e.to_string())
    };
    // The proxy logs in to the server while the client logs in, so errors may come here.
    let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .map_err(text)?;
    tokio::spawn(conn);
    c.query_one(
        "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
        &[],
    )
    .await
    .map(|r| r.get(0))
    .map_err(text)
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

#[tokio::test]
async fn every_sslmode_against_tls_and_plain_servers() {
    let (ca, cert, key) = make_ca_and_server_cert();
    let (other_ca, _, _) = make_ca_and_server_cert();
    let server = TlsServer::start(&cert, &key);
    let pg = connect(&format!(
        "postgres://postgres@127.0.0.1:{TLS_PORT}/postgres"
    ))
    .await;
    pg.batch_execute("create role tls_user login password 'pw'")
        .await
        .unwrap();
    pg.batch_execute("create database app owner tls_user")
        .await
        .unwrap();
    let ca_file = write(&server.dir, "ca.pem", &ca);
    let wrong_ca = write(&server.dir, "other-ca.pem", &other_ca);
    let tls_server = format!("127.0.0.1:{TLS_PORT}");

    for (mode, ca, expect) in [
        ("verify-full", Some(&ca_file), Ok(true)),
        ("require", None, Ok(true)),
        ("prefer", None, Ok(true)),
        ("disable", None, Ok(false)),
        ("verify-full", Some(&wrong_ca), Err("certificate")),
    ] {
        let mut tls = format!("server_sslmode = \"{mode}\"");
        if let Some(ca) = ca {
            tls.push_str(&format!("\nserver_ssl_ca_file = \"{ca}\""));
        }
        let h = proxy(&tls_server, &tls).await;
        let got = server_ssl(&h, "tls_user", "pw").await;
        match expect {
            Ok(ssl) => assert_eq!(got, Ok(ssl), "{mode}"),
            Err(text) => {
                let e = got.expect_err(mode);
                assert!(e.contains(text), "{mode}: {e}");
            }
        }
        h.shutdown().await;
    }

    // The shared cluster runs without TLS: prefer falls back, require refuses.
    let plain = primary_addr();
    let h = proxy(&plain, "server_sslmode = \"prefer\"").await;
    assert_eq!(server_ssl(&h, "app", "app").await, Ok(false));
    h.shutdown().await;
    let h = proxy(&plain, "server_sslmode = \"require\"").await;
    let e = server_ssl(&h, "app", "app")
        .await
        .expect_err("require against a server without TLS");
    assert!(e.contains("does not accept TLS"), "{e}");
    h.shutdown().await;
}
