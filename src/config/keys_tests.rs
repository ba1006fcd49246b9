//! The key tables against the rest of the configuration: render lists every key, reads back the same, and proxy.toml shows each key's default.

use super::keys::{self, Reload};
use super::*;

const MINIMAL: &str =
    "[[users]]\nname = \"app\"\npassword = \"app\"\n\n[[databases]]\nname = \"app\"\n";

/// Sets every optional key, so the rendering must show each one.
const EVERYTHING: &str = r#"
server_sslmode = "verify-full"
server_ssl_ca_file = "/etc/ca.pem"
tls_cert_file = "/etc/server.crt"
tls_key_file = "/etc/server.key"
[primary]
port = 5432
role = "auto"
[[replicas]]
port = 5433
role = "auto"
[[users]]
name = "app"
password = "app"
scram_verifier = "SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5"
server_password = "app"
[[databases]]
name = "app"
server_database = "app_db"
[stats]
token = "s3cret"
[cache]
wal_user = "app"
[[cache.rules]]
table = "sessions"
never = true
[[cache.rules]]
fingerprint = "00ff"
ttl_ms = 5
"#;

fn config(text: &str) -> Config {
    Config::from_toml(text, &EnvOverrides::default()).unwrap()
}

#[test]
fn render_lists_every_key_and_reads_back_the_same() {
    let c = config(EVERYTHING);
    let text = c.render();
    let value: toml::Value = toml::from_str(&text).expect("the rendering is TOML");
    let rendered = keys::paths(&value);
    for (_, key) in keys::all() {
        assert!(
            rendered.iter().any(|r| r == key.path),
            "render leaves out `{}`:\n{text}",
            key.path
        );
    }
    assert!(!text.contains("s3cret") && !text.contains("SCRAM-SHA-256$"));
    // With the secrets put back, the rendering is the same configuration.
    let unmasked = text
        .replace("password = \"********\"", "password = \"app\"")
        .replace("token = \"********\"", "token = \"s3cret\"")
        .replace(
            "scram_verifier = \"********\"",
            "scram_verifier = \"SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5\"",
        );
    let again = config(&unmasked);
    assert_eq!(keys::changes(&c, &again), vec![]);
    assert_eq!(again.render(), text);
}

#[test]
fn proxy_toml_shows_every_default() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("proxy.toml");
    let shipped = Config::load_with(&path, &EnvOverrides::default()).unwrap();
    let defaults = config(MINIMAL);
    for (section, key) in keys::all() {
        if section.array {
            continue; // Example entries, not defaults.
        }
        assert_eq!(
            (key.value)(&shipped, 0),
            (key.value)(&defaults, 0),
            "proxy.toml sets `{}` to other than its default",
            key.path
        );
    }
}

#[test]
fn keys_reported_together_reload_alike() {
    for (section, key) in keys::all() {
        for (other_section, other) in keys::all() {
            if key.reported(section) == other.reported(other_section) {
                assert_eq!(key.class.reload, other.class.reload, "{}", key.path);
            }
        }
    }
    let reload = |p: &str| keys::find(p).map(|(_, k)| k.class.reload);
    assert_eq!(reload("pool.min_idle"), Some(Reload::Live));
    assert_eq!(
        reload("pool.max_prepared_per_server"),
        Some(Reload::Restart)
    );
    assert_eq!(reload("users.password"), Some(Reload::Restart));
    assert_eq!(reload("nonexistent"), None);
}

#[test]
fn changes_compare_secrets_unmasked() {
    let a = config(MINIMAL);
    let b = config(&MINIMAL.replace("password = \"app\"", "password = \"new\""));
    assert_eq!(keys::changes(&a, &b), vec![("users", Reload::Restart)]);
}

#[test]
fn a_required_key_left_out_is_a_parse_error() {
    for text in [
        "[primary]\nhost = \"db\"\n",
        "[[replicas]]\nhost = \"db\"\n",
        "[[users]]\npassword = \"x\"\n",
    ] {
        let e = Config::from_toml(&format!("{text}{MINIMAL}"), &EnvOverrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field"), "{text}: {e}");
    }
}

/// Each word set is spelled once: every word parses back to itself, and an unknown word's
/// error lists them all, in declaration order.
#[test]
fn every_word_parses_and_an_unknown_one_lists_them_all() {
    use super::keys::{one_of, Word, Words};
    fn round_trip<T: Words + PartialEq + std::fmt::Debug>() {
        for w in T::ALL {
            let parsed: Word<T> = toml::Value::String(w.word().into()).try_into().unwrap();
            assert_eq!(parsed, Word::Known(*w));
        }
    }
    round_trip::<SslMode>();
    round_trip::<Consistency>();
    round_trip::<crate::config::AuthMethod>();
    round_trip::<crate::cache::Invalidation>();
    assert_eq!(
        one_of::<Consistency>(),
        r#""table_lsn", "session", "global", "none""#
    );
    let error_of = |extra: &str| {
        Config::from_toml(&format!("{extra}\n{MINIMAL}"), &EnvOverrides::default())
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let e = error_of("[replication]\nconsistency = \"eventual\"");
    assert!(
        e.contains("replication.consistency") && e.contains(&one_of::<Consistency>()),
        "{e}"
    );
    let e = error_of("server_sslmode = \"allow\"");
    assert!(
        e.contains(r#""disable", "prefer", "require", "verify-full""#),
        "{e}"
    );
}
