//! Replays the fuzzers' seed corpora and every input that once crashed a fuzz target, on stable, in `cargo test`.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for dir in [
        root.join("seeds").join(target),
        root.join("regressions").join(target),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let data = std::fs::read(e.path()).unwrap();
            run(&data);
            n += 1;
        }
    }
    n
}

#[test]
fn frame_decoder_inputs() {
    assert!(replay("frame_decoder", harness::frame_decoder) > 0);
}

#[test]
fn startup_auth_inputs() {
    assert!(replay("startup_auth", harness::startup_auth) > 0);
}

#[test]
fn classifier_inputs() {
    assert!(replay("classifier", harness::classifier) > 0);
}

#[test]
fn lexer_diff_inputs() {
    assert!(replay("lexer_diff", harness::lexer_diff) > 0);
    // Real traffic too: the classifier's seeds are captured psql and pgbench statements.
    assert!(replay("classifier", harness::lexer_diff) > 0);
}
