//! Fuzz target: the startup packet and the authentication messages that follow it.
#![no_main]

#[path = "../harness.rs"]
#[allow(dead_code)] // each target uses one of the harness functions
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::startup_auth(data));
