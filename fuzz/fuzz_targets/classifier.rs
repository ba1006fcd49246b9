//! Fuzz target: the statement classifier (routing analysis, shape and fingerprint) on arbitrary SQL text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgsplit::router::{analyze_uncached, shape, FunctionCatalog};
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    static CATALOG: OnceLock<FunctionCatalog> = OnceLock::new();
    let catalog = CATALOG.get_or_init(FunctionCatalog::builtin);
    // Clients send bytes, not necessarily UTF-8; the session decodes them lossily too.
    let sql = String::from_utf8_lossy(data);
    let _ = shape(&sql);
    let _ = analyze_uncached(&sql, catalog);
});
