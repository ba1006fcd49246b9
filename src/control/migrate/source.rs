//! Migration files: loading (embedded or from a directory), checksums and splitting into statements.

use std::path::Path;

use pg_query::protobuf::ObjectType;
use pg_query::NodeEnum;
use sha2::{Digest, Sha256};

use crate::control::ControlError;

/// The repository's migrations, compiled in so the binary migrates from anywhere.
const EMBEDDED: &[(&str, &str)] = &[
    (
        "000_schema.sql",
        include_str!("../../../migrations/000_schema.sql"),
    ),
    (
        "000_schema.down.sql",
        include_str!("../../../migrations/000_schema.down.sql"),
    ),
    (
        "001_performance_indexes.sql",
        include_str!("../../../migrations/001_performance_indexes.sql"),
    ),
    (
        "001_performance_indexes.down.sql",
        include_str!("../../../migrations/001_performance_indexes.down.sql"),
    ),
];

/// One version: `NNN_name.sql` and optionally `NNN_name.down.sql`.
#[derive(Debug, Clone)]
pub struct Migration {
    pub version: String,
    pub name: String,
    pub up: String,
    pub down: Option<String>,
    /// SHA-256 of the up file, hex; recorded so an edited, already-applied file is noticed.
    pub checksum: String,
}

/// The lock a statement takes on a table, named as in pg_locks.mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LockMode {
    AccessShare,
    RowExclusive,
    ShareUpdateExclusive,
    Share,
    AccessExclusive,
}

impl LockMode {
    /// The pg_locks.mode values a session must not hold (or be queued for) while we take `self`:
    /// PostgreSQL's lock conflict table, for the modes migrations take.
    pub fn conflicts_with(self) -> &'static [&'static str] {
        match self {
            LockMode::AccessShare => &["AccessExclusiveLock"],
            LockMode::RowExclusive => &[
                "ShareLock",
                "ShareRowExclusiveLock",
                "ExclusiveLock",
                "AccessExclusiveLock",
            ],
            LockMode::ShareUpdateExclusive => &[
                "ShareUpdateExclusiveLock",
                "ShareLock",
                "ShareRowExclusiveLock",
                "ExclusiveLock",
                "AccessExclusiveLock",
            ],
            LockMode::Share => &[
                "RowExclusiveLock",
                "ShareUpdateExclusiveLock",
                "ShareRowExclusiveLock",
                "ExclusiveLock",
                "AccessExclusiveLock",
            ],
            LockMode::AccessExclusive => &[
                "AccessShareLock",
                "RowShareLock",
                "RowExclusiveLock",
                "ShareUpdateExclusiveLock",
                "ShareLock",
                "ShareRowExclusiveLock",
                "ExclusiveLock",
                "AccessExclusiveLock",
            ],
        }
    }
}

/// A relation a statement locks: a table, or an index whose table the pre-flight looks up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Table(String),
    Index(String),
}

/// One statement of a migration file, classified by PostgreSQL's own parser.
#[derive(Debug, Clone)]
pub struct Statement {
    /// 1-based position in the file.
    pub ordinal: usize,
    /// 1-based line of the statement's first line, for error messages.
    pub line: usize,
    pub sql: String,
    /// Extensions named by `-- pgsplit:requires` directly above the statement.
    pub requires: Vec<String>,
    /// Must run alone outside a transaction (CONCURRENTLY, VACUUM).
    pub alone: bool,
    /// The index a CREATE INDEX CONCURRENTLY builds: checked for INVALID leftovers.
    pub concurrent_index: Option<String>,
    pub targets: Vec<(Target, LockMode)>,
}

/// Loads migrations from `dir`, or the embedded copies when `dir` is None.
pub fn load(dir: Option<&Path>) -> Result<Vec<Migration>, ControlError> {
    let files: Vec<(String, String)> = match dir {
        None => EMBEDDED
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect(),
        Some(dir) => read_dir(dir)?,
    };
    assemble(files)
}

fn read_dir(dir: &Path) -> Result<Vec<(String, String)>, ControlError> {
    let io = |source| ControlError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !name.ends_with(".sql") {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|source| ControlError::Io {
            path: path.clone(),
            source,
        })?;
        files.push((name.to_string(), text));
    }
    if files.is_empty() {
        return Err(ControlError::Files(format!(
            "no NNN_name.sql files in {}; point --dir at the migrations folder or omit it to use the built-in ones",
            dir.display()
        )));
    }
    Ok(files)
}

/// Pairs up and down files by version and orders versions numerically.
fn assemble(files: Vec<(String, String)>) -> Result<Vec<Migration>, ControlError> {
    let mut migrations: Vec<Migration> = Vec::new();
    let mut downs: Vec<(String, String, String)> = Vec::new();
    for (file, text) in files {
        let (stem, is_down) = match file.strip_suffix(".down.sql") {
            Some(stem) => (stem, true),
            None => (file.strip_suffix(".sql").unwrap_or(&file), false),
        };
        let Some((version, name)) = stem.split_once('_') else {
            return Err(ControlError::Files(format!(
                "{file}: expected NNN_name.sql (e.g. 002_add_orders.sql)"
            )));
        };
        if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ControlError::Files(format!(
                "{file}: the version before '_' must be digits"
            )));
        }
        if is_down {
            downs.push((version.to_string(), name.to_string(), text));
        } else {
            if migrations.iter().any(|m| m.version == version) {
                return Err(ControlError::Files(format!(
                    "two up files have version {version}; rename one"
                )));
            }
            let checksum = hex(&Sha256::digest(text.as_bytes()));
            migrations.push(Migration {
                version: version.into(),
                name: name.into(),
                up: text,
                down: None,
                checksum,
            });
        }
    }
    for (version, name, text) in downs {
        match migrations
            .iter_mut()
            .find(|m| m.version == version && m.name == name)
        {
            Some(m) => m.down = Some(text),
            None => {
                return Err(ControlError::Files(format!(
                    "{version}_{name}.down.sql has no matching {version}_{name}.sql"
                )))
            }
        }
    }
    migrations.sort_by_key(|m| version_key(&m.version));
    Ok(migrations)
}

/// Numeric order, so "10" sorts after "9" whatever the zero padding.
pub fn version_key(version: &str) -> u64 {
    version.parse().unwrap_or(u64::MAX)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Splits a file into statements with PostgreSQL's parser (so `$$` bodies, comments and quoted
/// semicolons are handled as the server would) and classifies each one.
pub fn split(file: &str, text: &str) -> Result<Vec<Statement>, ControlError> {
    let pieces = pg_query::split_with_parser(text)
        .map_err(|e| ControlError::Files(format!("{file} does not parse: {e}")))?;
    let mut statements = Vec::with_capacity(pieces.len());
    let mut prev_end = 0;
    let mut not_rerunnable = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        // The pieces are slices of `text`, so their offsets are pointer differences.
        let start = piece.as_ptr() as usize - text.as_ptr() as usize;
        let end = start + piece.len();
        let region = &text[prev_end..end];
        prev_end = end;
        let requires = directives(file, region)?;
        let body = strip_leading_comments(piece);
        let body_start = start + (piece.len() - body.len());
        let line = text[..body_start].matches('\n').count() + 1;
        let (alone, concurrent_index, targets) = classify(file, line, body)?;
        if let Some(false) = rerunnable(body) {
            not_rerunnable.push(format!("statement {} (line {line})", i + 1));
        }
        statements.push(Statement {
            ordinal: i + 1,
            line,
            sql: body.to_string(),
            requires,
            alone,
            concurrent_index,
            targets,
        });
    }
    // A version with statements outside a transaction resumes by running again from the top, so
    // every statement in it must be safe to repeat.
    if statements.iter().any(|s| s.alone) && !not_rerunnable.is_empty() {
        return Err(ControlError::Files(format!(
            "{file} runs statements outside a transaction, so a failed run is resumed by re-running it, \
             but {} cannot run twice: add IF NOT EXISTS / IF EXISTS / OR REPLACE",
            not_rerunnable.join(", ")
        )));
    }
    Ok(statements)
}

/// Whether running the statement a second time succeeds: Some(false) for CREATE/DROP without
/// IF [NOT] EXISTS or OR REPLACE, None when the parser cannot tell (DML, ALTER, ...).
fn rerunnable(sql: &str) -> Option<bool> {
    let parsed = pg_query::parse(sql, 0).ok()?;
    let node = parsed
        .protobuf
        .stmts
        .first()?
        .stmt
        .as_ref()?
        .node
        .as_ref()?;
    match node {
        NodeEnum::CreateStmt(s) => Some(s.if_not_exists),
        NodeEnum::IndexStmt(s) => Some(s.if_not_exists),
        NodeEnum::CreateExtensionStmt(s) => Some(s.if_not_exists),
        NodeEnum::CreateFunctionStmt(s) => Some(s.replace),
        NodeEnum::ViewStmt(s) => Some(s.replace),
        NodeEnum::DropStmt(s) => Some(s.missing_ok),
        NodeEnum::VacuumStmt(_) | NodeEnum::ReindexStmt(_) => Some(true),
        _ => None,
    }
}

/// `-- pgsplit:requires a, b` lines in the comment block directly above a statement.
fn directives(file: &str, region: &str) -> Result<Vec<String>, ControlError> {
    let mut requires = Vec::new();
    for line in region.lines().map(str::trim) {
        if line.is_empty() || line == ";" {
            continue;
        }
        let Some(comment) = line.strip_prefix("--") else {
            break;
        };
        let comment = comment.trim();
        let Some(directive) = comment.strip_prefix("pgsplit:") else {
            continue;
        };
        match directive.split_once(char::is_whitespace) {
            Some(("requires", list)) => {
                requires.extend(list.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()))
            }
            _ => {
                return Err(ControlError::Files(format!(
                    "{file}: unknown directive `-- pgsplit:{directive}`; the only one is `-- pgsplit:requires <extension>`"
                )))
            }
        }
    }
    Ok(requires)
}

fn strip_leading_comments(piece: &str) -> &str {
    let mut rest = piece.trim_start();
    while let Some(after) = rest.strip_prefix("--") {
        rest = after.split_once('\n').map_or("", |(_, r)| r).trim_start();
    }
    rest.trim_end()
}

type Classified = (bool, Option<String>, Vec<(Target, LockMode)>);

fn classify(file: &str, line: usize, sql: &str) -> Result<Classified, ControlError> {
    let parsed = pg_query::parse(sql, 0)
        .map_err(|e| ControlError::Files(format!("{file} line {line} does not parse: {e}")))?;
    let node = parsed
        .protobuf
        .stmts
        .first()
        .and_then(|s| s.stmt.as_ref())
        .and_then(|n| n.node.as_ref());
    let result = match node {
        Some(NodeEnum::IndexStmt(s)) => {
            let table = s
                .relation
                .as_ref()
                .map(|r| r.relname.clone())
                .unwrap_or_default();
            let mode = if s.concurrent {
                LockMode::ShareUpdateExclusive
            } else {
                LockMode::Share
            };
            let name = (s.concurrent && !s.idxname.is_empty()).then(|| s.idxname.clone());
            (s.concurrent, name, vec![(Target::Table(table), mode)])
        }
        Some(NodeEnum::DropStmt(s)) if s.remove_type == ObjectType::ObjectIndex as i32 => {
            let mode = if s.concurrent {
                LockMode::ShareUpdateExclusive
            } else {
                LockMode::AccessExclusive
            };
            let targets = s
                .objects
                .iter()
                .filter_map(last_name)
                .map(|n| (Target::Index(n), mode))
                .collect();
            (s.concurrent, None, targets)
        }
        Some(NodeEnum::ReindexStmt(s)) => {
            let concurrently = s.params.iter().any(|p| match &p.node {
                Some(NodeEnum::DefElem(d)) => d.defname == "concurrently",
                _ => false,
            });
            (concurrently, None, Vec::new())
        }
        Some(NodeEnum::VacuumStmt(_)) => (true, None, Vec::new()),
        _ => {
            let mut targets: Vec<(Target, LockMode)> = Vec::new();
            let mut add = |tables: Vec<String>, mode| {
                for t in tables {
                    targets.push((Target::Table(t), mode));
                }
            };
            add(parsed.ddl_tables(), LockMode::AccessExclusive);
            add(parsed.dml_tables(), LockMode::RowExclusive);
            add(parsed.select_tables(), LockMode::AccessShare);
            (false, None, targets)
        }
    };
    Ok(result)
}

/// The last element of a qualified name list (`schema.index` → `index`).
fn last_name(node: &pg_query::protobuf::Node) -> Option<String> {
    match &node.node {
        Some(NodeEnum::List(list)) => list.items.last().and_then(|i| match &i.node {
            Some(NodeEnum::String(s)) => Some(s.sval.clone()),
            _ => None,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
