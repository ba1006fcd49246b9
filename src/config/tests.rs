use super::*;

const MINIMAL: &str = r#"
[[users]]
name = "app"
password = "app"

[[databases]]
name = "app"
"#;

#[test]
fn defaults() {
    let c = Config::from_toml(MINIMAL, &EnvOverrides::default()).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:6432");
    assert_eq!(c.stats.listen.to_string(), "127.0.0.1:9930");
    assert_eq!(c.pool.primary_size, 50);
    assert_eq!(c.pool.replica_size, 100);
    assert_eq!(c.primary.to_string(), "127.0.0.1:15432");
    assert_eq!(c.replicas.len(), 1);
}

#[test]
fn env_overrides_addresses() {
    let env = EnvOverrides {
        listen: Some("0.0.0.0:7000".into()),
        primary: Some("db1:5432".into()),
        replicas: Some("db2:5432, db3:5433".into()),
        stats_listen: Some("127.0.0.1:0".into()),
    };
    let c = Config::from_toml(MINIMAL, &env).unwrap();
    assert_eq!(c.listen.to_string(), "0.0.0.0:7000");
    assert_eq!(c.primary.to_string(), "db1:5432");
    assert_eq!(c.replicas.len(), 2);
    assert_eq!(c.replicas[1].to_string(), "db3:5433");
    let c = Config::from_toml(
        MINIMAL,
        &EnvOverrides {
            replicas: Some(String::new()),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(c.replicas.is_empty());
}

fn err(text: &str) -> String {
    Config::from_toml(text, &EnvOverrides::default())
        .unwrap_err()
        .to_string()
}

#[test]
fn errors_name_the_key() {
    assert!(err(&format!("{MINIMAL}\n[pool]\nprimary_size = 0\n")).contains("pool.primary_size"));
    assert!(err(&format!("listen = \"nowhere\"\n{MINIMAL}")).contains("`listen`"));
    assert!(err(&format!("bogus_key = 1\n{MINIMAL}")).contains("bogus_key"));
    assert!(err("[[databases]]\nname = \"app\"\n").contains("users"));
    assert!(err(&format!("{MINIMAL}\n[[users]]\nname = \"b\"\nauth = \"md5\"\nscram_verifier = \"SCRAM-SHA-256$x\"\n")).contains("users[1].auth"));
    assert!(err(&format!(
        "{MINIMAL}\n[[users]]\nname = \"app\"\npassword = \"x\"\n"
    ))
    .contains("users[1].name"));
    assert!(
        err("[[users]]\nname = \"a\"\npassword = \"a\"\n[[databases]]\nname = \"pgsplit\"\n")
            .contains("databases[0].name")
    );
    let e = Config::from_toml(
        MINIMAL,
        &EnvOverrides {
            primary: Some("nohost".into()),
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("PGSPLIT_PRIMARY"), "{e}");
}

#[test]
fn stats_settings_are_checked() {
    assert!(err(&format!(
        "{MINIMAL}\n[stats.targets]\npool_efficiency = 1.5\n"
    ))
    .contains("stats.targets.pool_efficiency"));
    assert!(err(&format!("{MINIMAL}\n[stats]\nmax_fingerprints = 0\n"))
        .contains("stats.max_fingerprints"));
    let c = Config::from_toml(&format!("{MINIMAL}\n[stats]\nslow_query_ms = 7\ntoken = \"s3cret\"\n[stats.targets]\np90_ms = 20\n"), &EnvOverrides::default()).unwrap();
    assert_eq!(c.stats.settings.slow_query_ms, 7);
    assert_eq!(c.stats.settings.thresholds.p90_ms, 20.0);
    assert_eq!(c.stats.token.as_deref(), Some("s3cret"));
    assert!(!c.render().contains("s3cret"));
}

#[test]
fn missing_file_is_an_error() {
    let e = Config::load_with(
        Path::new("/nonexistent/proxy.toml"),
        &EnvOverrides::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("/nonexistent/proxy.toml"));
}

#[test]
fn shipped_proxy_toml_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("proxy.toml");
    let c = Config::load_with(&path, &EnvOverrides::default()).unwrap();
    assert_eq!(c.pool.primary_size, 50);
    assert!(c.user("app").is_some());
    assert!(c.database("app").is_some());
}

#[test]
fn limits_defaults_and_off_switches() {
    let c = Config::from_toml(MINIMAL, &EnvOverrides::default()).unwrap();
    assert_eq!(c.limits.client_idle_timeout, None);
    assert_eq!(
        c.limits.idle_in_transaction_timeout,
        Some(std::time::Duration::from_secs(300))
    );
    assert_eq!(
        c.limits.shutdown_timeout,
        std::time::Duration::from_secs(30)
    );
    assert_eq!(c.limits.keepalive.map(|k| k.count), Some(6));
    assert_eq!(c.server_tls.mode, SslMode::Disable);
    let text = format!(
        "client_idle_timeout_ms = 1500\nidle_in_transaction_timeout_ms = 0\ntcp_keepalive_idle_ms = 0\n{MINIMAL}"
    );
    let c = Config::from_toml(&text, &EnvOverrides::default()).unwrap();
    assert_eq!(
        c.limits.client_idle_timeout,
        Some(std::time::Duration::from_millis(1500))
    );
    assert_eq!(c.limits.idle_in_transaction_timeout, None);
    assert_eq!(c.limits.keepalive, None);
    // The rendering round-trips through the parser.
    assert!(c.render().contains("client_idle_timeout_ms = 1500"));
}

#[test]
fn limit_errors_name_the_key() {
    for (line, key) in [
        ("shutdown_timeout_ms = 0", "shutdown_timeout_ms"),
        ("tcp_keepalive_idle_ms = 10", "tcp_keepalive_idle_ms"),
        ("tcp_keepalive_count = 0", "tcp_keepalive_count"),
        ("server_sslmode = \"allow\"", "server_sslmode"),
        ("server_sslmode = \"verify-full\"", "server_ssl_ca_file"),
    ] {
        let text = format!("{line}\n{MINIMAL}");
        let e = Config::from_toml(&text, &EnvOverrides::default()).unwrap_err();
        assert!(e.to_string().contains(&format!("`{key}`")), "{line}: {e}");
    }
    let text =
        format!("server_sslmode = \"verify-full\"\nserver_ssl_ca_file = \"/ca.pem\"\n{MINIMAL}");
    let c = Config::from_toml(&text, &EnvOverrides::default()).unwrap();
    assert_eq!(c.server_tls.mode, SslMode::VerifyFull);
}
