#!/usr/bin/env bash
# Runs every fuzz target in turn for SECONDS each (default 600), one worker, on its seed corpus.
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). New inputs go to
# corpus/<target>/ (not committed); crashes to artifacts/<target>/: copy each into
# regressions/<target>/ so tests/fuzz_regressions.rs replays it in `cargo test`.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-600}
targets=${TARGETS:-"frame_decoder startup_auth classifier lexer_diff"}
for t in $targets; do
    mkdir -p "corpus/$t"
    echo "== $t for ${seconds}s"
    # A target's dictionary (quoting and comment openers for lexer_diff) if it has one.
    dict=()
    [[ -f $t.dict ]] && dict=(-dict="$t.dict")
    cargo +nightly fuzz run --sanitizer none --target-dir "${FUZZ_TARGET_DIR:-target}" "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -jobs=1 -workers=1 -max_len=65536 -print_final_stats=1 "${dict[@]}" \
        || echo "== $t stopped with a finding (see artifacts/$t)"
done
