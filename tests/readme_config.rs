//! The README's configuration reference is generated from proxy.toml, documents every key proxy.toml sets, and every key the configuration accepts is in proxy.toml.

use pgsplit::docs::{self, reference};
use std::path::Path;

fn read(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn readme_reference_matches_proxy_toml() {
    let readme = read("README.md");
    let want = docs::reference_markdown(&read("proxy.toml"));
    let Some(spliced) = docs::splice(&readme, &want) else {
        panic!(
            "README.md lacks the configuration reference markers:\n{}\n{}",
            docs::BEGIN,
            docs::END
        );
    };
    assert!(
        spliced == readme,
        "README.md's configuration reference is out of date with proxy.toml.\n\
         Regenerate it with one command:  {}   (= cargo run -q -- config-reference --write README.md)\n\
         then commit README.md. Generated reference:\n{want}",
        docs::REGENERATE
    );
}

#[test]
fn every_key_set_in_proxy_toml_is_documented() {
    let text = read("proxy.toml");
    let documented: Vec<String> = reference::parse(&text).iter().map(path).collect();
    let value: toml::Value = toml::from_str(&text).expect("proxy.toml parses");
    for key in pgsplit::config::keys::paths(&value) {
        assert!(
            documented.contains(&key),
            "proxy.toml sets `{key}` but the generated reference does not list it; \
             put its description in a comment right above it. Documented: {documented:?}"
        );
    }
    for k in reference::parse(&text) {
        assert!(
            !k.description.is_empty(),
            "`{}.{}` has no description in proxy.toml",
            k.section,
            k.key
        );
    }
}

fn path(k: &reference::KeyDoc) -> String {
    if k.section.is_empty() {
        k.key.clone()
    } else {
        format!("{}.{}", k.section, k.key)
    }
}

/// Every key the configuration declares (src/config/, one `section!` per table) is in
/// proxy.toml, so a key added without documenting it fails here.
#[test]
fn every_accepted_key_is_in_proxy_toml() {
    let documented: Vec<String> = reference::parse(&read("proxy.toml"))
        .iter()
        .map(path)
        .collect();
    for (_, key) in pgsplit::config::keys::all() {
        assert!(
            documented.iter().any(|d| d == key.path),
            "src/config/ declares `{}` but proxy.toml does not document it; \
             add it (commented out if it has no default) with a comment giving its default, \
             then run `{}`",
            key.path,
            docs::REGENERATE
        );
    }
}

/// proxy.toml's "reload: yes" / "reload: no" notes (and so the README's Reload column) say
/// what each key's declaration in src/config/ says, which is what a reload does with it.
#[test]
fn reload_notes_match_the_declared_reload_classes() {
    use pgsplit::config::Reload;
    let mut wrong = Vec::new();
    for k in reference::parse(&read("proxy.toml")) {
        let path = path(&k);
        let Some((_, key)) = pgsplit::config::keys::find(&path) else {
            wrong.push(format!(
                "`{path}` is documented but src/config/ declares no such key"
            ));
            continue;
        };
        let restart = key.class.reload == Reload::Restart;
        assert_eq!(restart, pgsplit::reload::needs_restart(&path));
        if k.reload == restart {
            wrong.push(format!(
                "`{path}`: proxy.toml says reload: {}, src/config/ declares it {:?}",
                if k.reload { "yes" } else { "no" },
                key.class.reload
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "fix proxy.toml's notes (then `{}`) or the key's class in src/config/:\n{}",
        docs::REGENERATE,
        wrong.join("\n")
    );
}
