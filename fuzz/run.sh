#!/usr/bin/env bash
# Runs every fuzz target in turn for SECONDS each (default 600), one worker, on its seed corpus.
# Needs the nightly toolchain; with cargo-fuzz (`cargo install cargo-fuzz`) it runs through it,
# without it the targets are built with the flags cargo-fuzz passes (coverage instrumentation,
# --cfg fuzzing, debug assertions, overflow checks) and run as libFuzzer binaries directly.
# New inputs go to corpus/<target>/ (not committed); crashes to artifacts/<target>/: copy each
# into regressions/<target>/ so tests/fuzz_regressions.rs replays it in `cargo test`.
# RUNS=N stops each target after N executions instead of after SECONDS.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-600}
targets=${TARGETS:-"frame_decoder startup_auth classifier lexer_diff"}
target_dir=${FUZZ_TARGET_DIR:-target}
triple=x86_64-unknown-linux-gnu
limit=(-max_total_time="$seconds")
[[ -n ${RUNS:-} ]] && limit=(-runs="$RUNS")
have_cargo_fuzz=0
cargo +nightly fuzz --version >/dev/null 2>&1 && have_cargo_fuzz=1
for t in $targets; do
    mkdir -p "corpus/$t" "artifacts/$t"
    echo "== $t (${limit[*]})"
    # A target's dictionary (quoting and comment openers for lexer_diff) if it has one.
    dict=()
    [[ -f $t.dict ]] && dict=(-dict="$t.dict")
    seeds=("seeds/$t")
    # lexer_diff also starts from the classifier's captured traffic.
    [[ $t == lexer_diff ]] && seeds+=(seeds/classifier)
    args=("${limit[@]}" -jobs=1 -workers=1 -max_len=65536 -print_final_stats=1 "${dict[@]}")
    if ((have_cargo_fuzz)); then
        cargo +nightly fuzz run --sanitizer none --target-dir "$target_dir" "$t" "corpus/$t" "${seeds[@]}" -- \
            "${args[@]}" || echo "== $t stopped with a finding (see artifacts/$t)"
    else
        RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow_checks" \
            cargo +nightly build --release --target "$triple" --target-dir "$target_dir" --bin "$t"
        "$target_dir/$triple/release/$t" "corpus/$t" "${seeds[@]}" -artifact_prefix="artifacts/$t/" \
            "${args[@]}" || echo "== $t stopped with a finding (see artifacts/$t)"
    fi
done
