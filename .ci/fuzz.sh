#!/usr/bin/env bash
# Bounded fuzzing of the parsers that see untrusted bytes (fuzz/, docs/reliability.md "Fuzzing").
# Usage: .ci/fuzz.sh [seconds per target] [target...]   (default 60 s, every target)
# CI runs a short smoke; `just fuzz` a longer run. A crash fails the run and leaves the input in
# fuzz/artifacts/<target>/ (reproduce: cargo fuzz run <target> <file>).
#
# cargo fuzz needs unstable -Z flags; on the stable toolchain RUSTC_BOOTSTRAP=1 enables them.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-${FUZZ_SECONDS:-60}}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(frame_meta result_json decode_image)
export RUSTC_BOOTSTRAP=1

echo "== fuzz (${seconds}s per target: ${targets[*]})"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# decode_image decodes through a real detector session, which needs the model.
if [[ " ${targets[*]} " == *" decode_image "* ]]; then cargo xtask model; fi

# Seeds are generated, not committed; the corpus directory keeps what earlier runs found.
cargo run --quiet --release --manifest-path fuzz/Cargo.toml -p edgepool-fuzz-seedgen -- fuzz/corpus

# One build with every target (the `decode` feature adds the detector), shared by all runs.
for t in "${targets[@]}"; do
    max_len=4096
    if [ "$t" = decode_image ]; then max_len=262144; fi
    log="$(mktemp)"
    # Inputs that once failed (fuzz/regressions/<target>) are replayed as part of the corpus.
    corpora=("fuzz/corpus/$t")
    if [ -d "fuzz/regressions/$t" ]; then corpora+=("fuzz/regressions/$t"); fi
    if ! cargo fuzz run --fuzz-dir fuzz --features decode "$t" "${corpora[@]}" -- \
        -max_total_time="$seconds" -max_len="$max_len" -timeout=20 -rss_limit_mb=3072 \
        -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz: $t FAILED; the crashing input is in fuzz/artifacts/$t/" >&2
        exit 1
    fi
    runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')"
    cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)"
    echo "fuzz: $t ok, $runs executions in ${seconds}s, ${cov:-cov: ?}, corpus $(ls "fuzz/corpus/$t" | wc -l) inputs"
    rm -f "$log"
done
