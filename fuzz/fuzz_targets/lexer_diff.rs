//! Fuzz target: the cheap lexer's shapes against PostgreSQL's own scanner (pg_query::scan).
#![no_main]

#[path = "../harness.rs"]
#[allow(dead_code)] // each target uses one of the harness functions
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::lexer_diff(data));
