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
fn n_plus_one_defaults_and_checks() {
    let c = Config::from_toml(MINIMAL, &EnvOverrides::default()).unwrap();
    let n = &c.n_plus_one;
    assert!(n.enabled && n.repeated_identical);
    assert!(!n.notify_client && !n.batchable_writes);
    assert_eq!((n.threshold, n.window_ms), (10, 1000));
    assert_eq!((n.max_findings, n.max_traces), (1000, 1000));
    let c = Config::from_toml(
        &format!("{MINIMAL}\n[n_plus_one]\nthreshold = 25\nwindow_ms = 250\nnotify_client = true\nbatchable_writes = true\n"),
        &EnvOverrides::default(),
    )
    .unwrap();
    assert_eq!((c.n_plus_one.threshold, c.n_plus_one.window_ms), (25, 250));
    assert!(c.n_plus_one.notify_client && c.n_plus_one.batchable_writes);
    assert!(c
        .render()
        .contains("[n_plus_one]\nenabled = true\nthreshold = 25"));
    for (text, key) in [
        ("threshold = 1", "n_plus_one.threshold"),
        ("threshold = 1001", "n_plus_one.threshold"),
        ("window_ms = 0", "n_plus_one.window_ms"),
        ("window_ms = 60001", "n_plus_one.window_ms"),
        ("max_findings = 0", "n_plus_one.max_findings"),
        ("max_traces = 0", "n_plus_one.max_traces"),
        ("bogus = true", "bogus"),
    ] {
        let e = err(&format!("{MINIMAL}\n[n_plus_one]\n{text}\n"));
        assert!(e.contains(key), "{text}: {e}");
    }
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
fn health_and_replication_keys() {
    let c = Config::from_toml(MINIMAL, &EnvOverrides::default()).unwrap();
    assert_eq!(c.replication.lag_poll.as_millis(), 50);
    assert_eq!(c.replication.consistency, Consistency::TableLsn);
    assert_eq!(c.replication.max_lag_bytes, 16 << 20);
    assert_eq!(c.health.ban.as_millis(), 1000);
    assert!(c.health.retry_reads);
    assert!(!c.primary_role_auto);
    let c = Config::from_toml(
        &format!("[primary]\nport = 5432\nrole = \"auto\"\n[[replicas]]\nport = 5433\nrole = \"replica\"\n[[replicas]]\nport = 5434\nrole = \"auto\"\n[replication]\nconsistency = \"session\"\nmax_lag_ms = 0\n{MINIMAL}"),
        &EnvOverrides::default(),
    )
    .unwrap();
    assert!(c.primary_role_auto);
    assert_eq!(c.replica_role_auto, vec![false, true]);
    assert_eq!(c.replication.consistency, Consistency::Session);
    assert_eq!(c.replication.max_lag_ms, 0);
    // The rendered config reads back the same.
    let again = Config::from_toml(
        &c.render()
            .replace("password = \"********\"", "password = \"x\""),
        &EnvOverrides::default(),
    )
    .unwrap();
    assert_eq!(again.replica_role_auto, vec![false, true]);
    assert_eq!(again.replication.consistency, Consistency::Session);
    assert!(err(&format!(
        "[replication]\nconsistency = \"eventual\"\n{MINIMAL}"
    ))
    .contains("replication.consistency"));
    assert!(err(&format!(
        "[primary]\nport = 1\nrole = \"replica\"\n{MINIMAL}"
    ))
    .contains("primary.role"));
    assert!(err(&format!(
        "[health]\nban_ms = 5000\nmax_ban_ms = 10\n{MINIMAL}"
    ))
    .contains("health.max_ban_ms"));
    assert!(err(&format!("[replication]\nlag_poll_ms = 0\n{MINIMAL}"))
        .contains("replication.lag_poll_ms"));
}

#[test]
fn cache_section_defaults_rules_and_errors() {
    let c = Config::from_toml(MINIMAL, &EnvOverrides::default()).unwrap();
    assert!(!c.cache.enabled);
    assert_eq!(c.cache.max_bytes, 256 << 20);
    assert_eq!(c.cache.max_entry_bytes, 1 << 20);
    assert_eq!(c.cache.ttl, Duration::from_secs(60));
    assert_eq!(c.cache.invalidation, super::Invalidation::Proxy);
    let text = format!(
        "{MINIMAL}\n[cache]\nenabled = true\ninvalidation = \"wal\"\n\
         [[cache.rules]]\ntable = \"Public.Sessions\"\nnever = true\n\
         [[cache.rules]]\nfingerprint = \"00ff\"\nttl_ms = 5\n"
    );
    let c = Config::from_toml(&text, &EnvOverrides::default()).unwrap();
    assert_eq!(c.cache.invalidation, super::Invalidation::Wal);
    assert_eq!(
        c.cache.rules[0].target,
        super::RuleTarget::Table("sessions".into())
    );
    assert_eq!(c.cache.rules[0].ttl, None);
    assert_eq!(c.cache.rules[1].target, super::RuleTarget::Fingerprint(255));
    // The rendered configuration reads back the same.
    let again = Config::from_toml(&c.render(), &EnvOverrides::default()).unwrap();
    assert_eq!(again.cache.rules, c.cache.rules);
    for (bad, key) in [
        ("invalidation = \"trigger\"", "cache.invalidation"),
        ("ttl_ms = 0", "cache.ttl_ms"),
        ("max_entry_bytes = 0", "cache.max_entry_bytes"),
        ("[[cache.rules]]\ntable = \"t\"", "cache.rules[0]"),
        (
            "[[cache.rules]]\nfingerprint = \"xyz\"\nnever = true",
            "cache.rules[0]",
        ),
    ] {
        let text = format!("{MINIMAL}\n[cache]\n{bad}\n");
        let err = Config::from_toml(&text, &EnvOverrides::default()).unwrap_err();
        assert!(err.to_string().contains(key), "{bad}: {err}");
    }
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

#[test]
fn address_overrides_keep_each_servers_role() {
    let file = format!(
        "[primary]\nport = 5432\nrole = \"auto\"\n[[replicas]]\nport = 5433\nrole = \"auto\"\n{MINIMAL}"
    );
    let env = EnvOverrides {
        primary: Some("db1:6000".into()),
        replicas: Some("db2:6001,db3:6002".into()),
        ..Default::default()
    };
    let c = Config::from_toml(&file, &env).unwrap();
    assert_eq!(c.primary.to_string(), "db1:6000");
    assert!(
        c.primary_role_auto,
        "PGSPLIT_PRIMARY must keep [primary] role"
    );
    // The second address has no entry of its own: it takes the last entry's keys.
    assert_eq!(c.replica_role_auto, vec![true, true]);
    let mixed =
        format!("[[replicas]]\nport = 5433\nrole = \"auto\"\n[[replicas]]\nport = 5434\n{MINIMAL}");
    let c = Config::from_toml(&mixed, &env).unwrap();
    assert_eq!(c.replica_role_auto, vec![true, false]);
    // No entry in the file: fixed roles, as before.
    let c = Config::from_toml(
        &format!("replicas = []\n{MINIMAL}"),
        &EnvOverrides {
            replicas: Some("db2:6001".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(c.replica_role_auto, vec![false]);
}

#[test]
fn min_idle_is_checked_against_the_pool_sizes() {
    let c = Config::from_toml(
        &format!("{MINIMAL}\n[pool]\nmin_idle = 3\n"),
        &EnvOverrides::default(),
    )
    .unwrap();
    assert_eq!(c.pool.min_idle, 3);
    assert!(err(&format!(
        "{MINIMAL}\n[pool]\nprimary_size = 2\nreplica_size = 2\nmin_idle = 3\n"
    ))
    .contains("pool.min_idle"));
}

#[test]
fn workers_beyond_1024_are_refused() {
    let e = Config::from_toml(
        &format!("workers = 1025\n{MINIMAL}"),
        &EnvOverrides::default(),
    );
    assert!(e.is_err_and(|e| e.to_string().contains("workers")));
    let c = Config::from_toml(&format!("workers = 3\n{MINIMAL}"), &EnvOverrides::default());
    assert_eq!(c.map(|c| c.worker_count()).ok(), Some(3));
}
