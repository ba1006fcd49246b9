//! Reads proxy.toml's comments into a list of documented keys (section, key, default, reloadable, description).
//!
//! proxy.toml is the one place keys are documented: each key (set, or commented out when it
//! has no default) follows the comment that describes it; a `[[table]]` whose keys repeat may
//! instead list its fields in its own comment as `#   field   description`. "Default X." in a
//! description is the default (else the value shown, which the file promises is the default);
//! "reload: no" or "reload: yes" says whether a reload applies it; "reload: no" in a table's own
//! comment covers every key of the table that does not say "reload: yes".

/// One documented key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyDoc {
    /// "" for top-level keys, else the table name ("pool", "stats.targets", "users").
    pub section: String,
    /// The section is an array of tables (`[[users]]`), written once per entry.
    pub array: bool,
    pub key: String,
    pub default: String,
    pub reload: bool,
    pub description: String,
}

/// Every key of `text`, in file order, each once.
pub fn parse(text: &str) -> Vec<KeyDoc> {
    let mut out: Vec<KeyDoc> = Vec::new();
    let mut section = String::new();
    let mut array = false;
    // The table's own comment, for its keys that have none (`[primary]`'s host and port).
    let mut section_prose = String::new();
    // The table's comment says "reload: no" for all of it.
    let mut section_no_reload = false;
    // Prose of the current block, kept across commented-out keys that share it.
    let mut prose: Vec<String> = Vec::new();
    // Prose after commented-out keys starts the next key's description.
    let mut after_commented_key = false;
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() {
            prose.clear();
            after_commented_key = false;
            continue;
        }
        // A commented-out table header (`# [[cache.rules]]`, an optional table shown as an
        // example) opens its section like a real one.
        let header = table_header(line).or_else(|| {
            line.strip_prefix('#')
                .map(str::trim)
                .filter(|l| l.starts_with('['))
                .and_then(table_header)
        });
        if let Some(name) = header {
            section = name.to_string();
            array = line.trim_start_matches(['#', ' ']).starts_with("[[");
            let fields = field_list(&prose);
            section_no_reload = prose.iter().any(|l| l.contains("reload: no"));
            section_prose = if fields.is_empty() {
                prose.join(" ")
            } else {
                String::new()
            };
            for (key, description) in fields {
                push(
                    &mut out,
                    (&section, array, section_no_reload),
                    &key,
                    None,
                    &description,
                );
            }
            prose.clear();
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            match key_value(comment.trim()) {
                // A commented-out key: documented by the prose above it, unset by default.
                Some((key, _)) => {
                    push(
                        &mut out,
                        (&section, array, section_no_reload),
                        key,
                        None,
                        &prose.join(" "),
                    );
                    after_commented_key = true;
                }
                None => {
                    if after_commented_key {
                        prose.clear();
                        after_commented_key = false;
                    }
                    prose.push(comment.strip_prefix(' ').unwrap_or(comment).to_string())
                }
            }
            continue;
        }
        if let Some((key, value)) = key_value(line) {
            if prose.is_empty() && !section_prose.is_empty() {
                // The table's comment describes the table; the default is the value shown.
                push(
                    &mut out,
                    (&section, array, section_no_reload),
                    key,
                    Some(value),
                    "",
                );
                if let Some(k) = out
                    .iter_mut()
                    .find(|k| k.section == section && k.key == key)
                {
                    if k.description.is_empty() {
                        k.description = format!("Of this table: {}", describe(&section_prose));
                    }
                }
            } else {
                push(
                    &mut out,
                    (&section, array, section_no_reload),
                    key,
                    Some(value),
                    &prose.join(" "),
                );
            }
            prose.clear();
        }
    }
    out
}

/// Adds a key, or completes one already listed (a repeated `[[table]]`, or a field list entry).
fn push(
    out: &mut Vec<KeyDoc>,
    (section, array, section_no_reload): (&str, bool, bool),
    key: &str,
    value: Option<&str>,
    prose: &str,
) {
    let prose = prose.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some(existing) = out
        .iter_mut()
        .find(|k| k.section == section && k.key == key)
    {
        if existing.description.is_empty() {
            existing.description = describe(&prose);
        }
        // The value in an example entry is not a default: the field list said what that is.
        return;
    }
    let default = stated_default(&prose)
        .or_else(|| value.map(str::to_string))
        .unwrap_or_else(|| "unset".to_string());
    out.push(KeyDoc {
        section: section.to_string(),
        array,
        key: key.to_string(),
        default,
        reload: !(prose.contains("reload: no")
            || (section_no_reload && !prose.contains("reload: yes"))),
        description: describe(&prose),
    });
}

fn table_header(line: &str) -> Option<&str> {
    let inner = line
        .strip_prefix("[[")
        .and_then(|l| l.strip_suffix("]]"))
        .or_else(|| line.strip_prefix('[').and_then(|l| l.strip_suffix(']')))?;
    let inner = inner.trim();
    inner
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        .then_some(inner)
}

/// `key = value` with a lowercase key, as proxy.toml writes them.
fn key_value(line: &str) -> Option<(&str, &str)> {
    let (key, value) = line.split_once('=')?;
    let key = key.trim();
    let ok = !key.is_empty()
        && key.starts_with(|c: char| c.is_ascii_lowercase())
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    ok.then(|| (key, value.trim()))
}

/// `#   name   description` entries (continued by deeper-indented lines) in a table's comment.
fn field_list(prose: &[String]) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in prose {
        let indent = line.len() - line.trim_start().len();
        if indent < 2 {
            continue;
        }
        let body = line.trim();
        let (word, rest) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
        let is_field = indent <= 4
            && !rest.is_empty()
            && word
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if is_field {
            fields.push((word.to_string(), rest.trim().to_string()));
        } else if let Some(last) = fields.last_mut() {
            last.1.push(' ');
            last.1.push_str(body);
        }
    }
    fields
}

/// "Default X." or "(default X)" in the prose, without the period.
fn stated_default(prose: &str) -> Option<String> {
    for marker in ["Default: ", "Default ", "(default: ", "(default "] {
        if let Some(at) = prose.find(marker) {
            let rest = &prose[at + marker.len()..];
            let end = if marker.starts_with('(') {
                rest.find(')')
            } else {
                sentence_end(rest)
            };
            let value = rest[..end.unwrap_or(rest.len())].trim();
            if !value.is_empty() {
                return Some(value.to_string());
            }
        }
    }
    // `"scram-sha-256" (default) or "md5"`: the quoted value just before "(default)".
    if let Some(at) = prose.find("\" (default)") {
        if let Some(open) = prose[..at].rfind('"') {
            return Some(prose[open..=at].to_string());
        }
    }
    prose.contains("(required)").then(|| "required".to_string())
}

/// The first ". " or final "." — a period inside "0.9" or "127.0.0.1" does not end a sentence.
fn sentence_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    (0..b.len()).find(|&i| b[i] == b'.' && (i + 1 == b.len() || b[i + 1] == b' '))
}

/// The prose without the default sentence and the reload marker, which have their own columns.
fn describe(prose: &str) -> String {
    let mut d = prose.to_string();
    for marker in ["reload: no", "reload: yes"] {
        d = d.replace(marker, "");
    }
    for marker in ["Default: ", "Default "] {
        if let Some(at) = d.find(marker) {
            let rest = &d[at..];
            let end = sentence_end(rest).map_or(rest.len(), |e| e + 1);
            d.replace_range(at..at + end, "");
        }
    }
    d.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The reference as Markdown: one table per section, in file order.
pub fn markdown(keys: &[KeyDoc]) -> String {
    let mut out = String::new();
    let mut sections: Vec<&str> = Vec::new();
    for k in keys {
        if !sections.contains(&k.section.as_str()) {
            sections.push(&k.section);
        }
    }
    for s in sections {
        let title = if s.is_empty() {
            "Top level".to_string()
        } else if keys.iter().any(|k| k.section == s && k.array) {
            format!("`[[{s}]]` (one table per entry)")
        } else {
            format!("`[{s}]`")
        };
        out.push_str(&format!(
            "#### {title}\n\n| Key | Default | Reload | Description |\n|---|---|---|---|\n"
        ));
        for k in keys.iter().filter(|k| k.section == s) {
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                k.key,
                cell(&k.default),
                if k.reload { "yes" } else { "no" },
                cell(&k.description)
            ));
        }
        out.push('\n');
    }
    out
}

fn cell(s: &str) -> String {
    let s = s.replace('|', "\\|");
    if s.starts_with('"') || s.chars().next().is_some_and(|c| c.is_ascii_digit()) {
        format!("`{s}`")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"# header prose
# about the file

# Address to listen on. Default "127.0.0.1:6432". reload: no
listen = "127.0.0.1:6432"

# Ratio wanted. Default 0.9.
ratio = 0.9

# TLS files. Unset (default): plain.
# tls_cert_file = "/x.crt"
# tls_key_file = "/x.key"
# Fingerprints kept. Default 5.
fingerprints = 5

# Users:
#   name       the user name (required)
#   admin      may use the console
#              (default false)
#   auth       how: "scram" (default) or "md5"
#   server_password with a verifier: the password
[[users]]
name = "app"
admin = true

[[users]]
name = "other"

[pool]
# Pool size. Default 50.
size = 50
"#;

    #[test]
    fn keys_defaults_and_reload() {
        let keys = parse(SAMPLE);
        let names: Vec<String> = keys
            .iter()
            .map(|k| format!("{}.{}", k.section, k.key))
            .collect();
        assert_eq!(
            names,
            [
                ".listen",
                ".ratio",
                ".tls_cert_file",
                ".tls_key_file",
                ".fingerprints",
                "users.name",
                "users.admin",
                "users.auth",
                "users.server_password",
                "pool.size"
            ]
        );
        assert_eq!(keys[0].default, "\"127.0.0.1:6432\"");
        assert!(!keys[0].reload);
        assert_eq!(keys[0].description, "Address to listen on.");
        assert_eq!(keys[1].default, "0.9");
        assert!(keys[1].reload);
        assert_eq!(keys[2].default, "unset");
        assert_eq!(keys[3].description, "TLS files. Unset (default): plain.");
        assert_eq!(keys[4].description, "Fingerprints kept.");
        assert_eq!(keys[5].default, "required");
        assert_eq!(keys[6].default, "false");
        assert_eq!(keys[6].description, "may use the console (default false)");
        assert_eq!(keys[7].default, "\"scram\"");
        assert_eq!(keys[8].description, "with a verifier: the password");
        assert_eq!(keys[9].default, "50");
        let md = markdown(&keys);
        assert!(
            md.contains("#### `[[users]]` (one table per entry)"),
            "{md}"
        );
        assert!(md.contains("| `listen` | `\"127.0.0.1:6432\"` | no | Address to listen on. |"));
    }
}
