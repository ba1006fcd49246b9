//! The README's "Code layout" held against the source: imports point down and form no cycle, and no source file is over 600 lines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module's layer; a module may import its own layer or any below.
const LAYERS: &[(&str, u8)] = &[
    ("protocol", 1),
    ("config", 1),
    ("router", 1),
    ("error", 1),
    ("civil", 1),
    ("auth", 2),
    ("backend", 2),
    ("cache", 2),
    ("stats", 2),
    ("nplusone", 2),
    ("pool", 3),
    ("shared", 4),
    ("clients", 4),
    ("frontend", 5),
    ("http", 5),
    ("admin", 5),
    ("reload", 5),
    ("proxy", 6),
    ("control", 7),
    ("demo", 7),
    ("report", 7),
    ("docs", 7),
];

fn layer(m: &str) -> Option<u8> {
    LAYERS.iter().find(|(n, _)| *n == m).map(|(_, l)| *l)
}

/// The `.rs` files under `dir`; with `tests` false, test files (`tests.rs`, `*_tests.rs`,
/// `tests/` folders) are left out, since tests may import anything.
fn files(dir: &Path, tests: bool, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if tests || p.file_name().is_some_and(|n| n != "tests") {
                files(&p, tests, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if tests || (name != "tests.rs" && !name.ends_with("_tests.rs")) {
                out.push(p);
            }
        }
    }
}

/// The code of a file without its comments and its `#[cfg(test)] mod tests` block, which may
/// use anything.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The names after each `crate::`, including every first name of a `crate::{a, b::c}` group.
fn crate_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && (c.is_alphanumeric() || c == '_') => {
                        out.push(ident(&group[j..]));
                        start = false;
                    }
                    c if !c.is_whitespace() => start = false,
                    _ => {}
                }
            }
        } else {
            out.push(ident(rest));
        }
    }
    out
}

/// Top-level module imports: importer -> (imported -> a file that does it).
fn graph(src: &Path) -> BTreeMap<String, BTreeMap<String, PathBuf>> {
    // `crate::Shared` and the like name a module through lib.rs's re-exports.
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap_or_default();
    let mut reexports = BTreeMap::new();
    for line in lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub use "))
    {
        let (module, names) = line.split_once("::").unwrap_or((line, ""));
        for n in names.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
            if !n.is_empty() {
                reexports.insert(n.to_string(), module.to_string());
            }
        }
    }
    let mut all = Vec::new();
    files(src, false, &mut all);
    let mut g: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
    for f in all {
        let Ok(rel) = f.strip_prefix(src) else {
            continue;
        };
        let first = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or("");
        let from = first.trim_end_matches(".rs").to_string();
        if layer(&from).is_none() {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        for name in crate_paths(&code(&text)) {
            let to = reexports.get(&name).cloned().unwrap_or(name);
            if to != from && layer(&to).is_some() {
                g.entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_insert_with(|| f.clone());
            }
        }
    }
    g
}

#[test]
fn every_module_has_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut missing = Vec::new();
    for e in std::fs::read_dir(&src).into_iter().flatten().flatten() {
        let file = e.file_name().to_string_lossy().to_string();
        let module = e.path().is_dir() || file.ends_with(".rs");
        let name = file.trim_end_matches(".rs").to_string();
        if module && !["lib", "main", "layering"].contains(&name.as_str()) && layer(&name).is_none()
        {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "give these a layer in LAYERS and the README: {missing:?}"
    );
}

#[test]
fn imports_point_down_and_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let g = graph(&src);
    assert!(g.contains_key("frontend"), "the scan found the sources");
    let mut upward = Vec::new();
    for (from, tos) in &g {
        for (to, file) in tos {
            if layer(to) > layer(from) {
                upward.push(format!("{from} -> {to} ({})", file.display()));
            }
        }
    }
    assert!(upward.is_empty(), "imports pointing up: {upward:#?}");
    // Within a layer imports may go sideways, but never round.
    fn visit<'a>(
        m: &'a str,
        g: &'a BTreeMap<String, BTreeMap<String, PathBuf>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| *p == m) {
            return Some(path[i..].iter().map(|s| s.to_string()).collect());
        }
        if !done.insert(m) {
            return None;
        }
        path.push(m);
        for to in g.get(m).into_iter().flat_map(|t| t.keys()) {
            if let Some(c) = visit(to, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for m in g.keys() {
        let cycle = visit(m, &g, &mut Vec::new(), &mut done);
        assert!(cycle.is_none(), "an import cycle: {cycle:?}");
    }
}

#[test]
fn crate_paths_read_groups_and_nested_paths() {
    let c = "use crate::a::b;\nuse crate::{c, d::{e, f}, g};\nlet x = crate::h::i();";
    assert_eq!(crate_paths(c), ["a", "c", "d", "g", "h"]);
}

#[test]
fn no_source_file_is_over_600_lines() {
    let mut all = Vec::new();
    for dir in ["src", "tests", "benches"] {
        files(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join(dir),
            true,
            &mut all,
        );
    }
    assert!(all.len() > 100, "the scan found the sources");
    let long: Vec<String> = all
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).ok()?.lines().count();
            (n > 600).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "split these: {long:?}");
}
