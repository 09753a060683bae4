#!/usr/bin/env bash
# Fuzzing (docs/decisions/0007-fuzzing.md): builds the cargo-fuzz targets in fuzz/ on the nightly toolchain and runs
# each one over its committed corpus (fuzz/corpus/<target>).
#
#   scripts/fuzz.sh                  every target for 600 s, one at a time
#   scripts/fuzz.sh --ci             every target for 30 s, two at a time (what scripts/test.sh runs)
#   scripts/fuzz.sh --seconds 60 rtcp_feedback depacketize
#   scripts/fuzz.sh --update-corpus  after the runs, merge what they found into fuzz/corpus (cargo fuzz cmin)
#
# New inputs go to a corpus outside the repository ($FUZZ_TARGET_DIR/corpus/<target>), so a run never dirties the
# checkout; crashes are written to fuzz/artifacts/<target>/ and make the script fail, printing the input's path.
# Prints, per target: runs, executions per second, corpus size, and whether it crashed.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER=600
PARALLEL=1
UPDATE=0
TARGETS=()
while (($#)); do
  case "$1" in
    --ci) SECONDS_PER=30; PARALLEL=2 ;;
    --seconds) SECONDS_PER="$2"; shift ;;
    --parallel) PARALLEL="$2"; shift ;;
    --update-corpus) UPDATE=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    -*) echo "fuzz: unknown option $1" >&2; exit 2 ;;
    *) TARGETS+=("$1") ;;
  esac
  shift
done

# The nightly toolchain cannot be installed offline; say so instead of failing half-way through a build.
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz: the nightly Rust toolchain is missing (cargo-fuzz needs it): rustup toolchain install nightly" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi

# Its own target dir: a nightly, instrumented build would otherwise evict the stable one everybody shares.
FUZZ_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/camera-gateway-fuzz-target}"
# No sanitizer: the code under test is safe Rust, where ASan finds nothing a panic doesn't, and it halves the
# executions per second. Debug assertions and overflow checks stay on (cargo-fuzz's default).
FUZZ_FLAGS=(-s none --codegen-units 16 --target-dir "$FUZZ_TARGET_DIR")

cd fuzz
((${#TARGETS[@]})) || mapfile -t TARGETS < <(cargo +nightly fuzz list)

LOGS="$FUZZ_TARGET_DIR/logs"
mkdir -p "$LOGS"

start=$(date +%s)
echo "fuzz: building ${#TARGETS[@]} targets with $(rustup run nightly rustc --version)"
if ! nice -n 19 cargo +nightly fuzz build "${FUZZ_FLAGS[@]}" >"$LOGS/build.log" 2>&1; then
  grep -Ev '^\s+(Compiling|Checking|Fresh)' "$LOGS/build.log" | tail -40 >&2
  echo "fuzz: build failed" >&2
  exit 1
fi
built=$(date +%s)

run_one() {
  local t="$1" work="$FUZZ_TARGET_DIR/corpus/$1"
  mkdir -p "$work" "corpus/$t"
  # The first corpus dir receives new inputs; the committed one is only read.
  nice -n 19 cargo +nightly fuzz run "${FUZZ_FLAGS[@]}" "$t" "$work" "corpus/$t" -- \
    -max_total_time="$SECONDS_PER" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$LOGS/$t.log" 2>&1
}

failed=()
running=()
for t in "${TARGETS[@]}"; do
  run_one "$t" &
  running+=("$!:$t")
  if ((${#running[@]} >= PARALLEL)); then
    entry="${running[0]}"; running=("${running[@]:1}")
    wait "${entry%%:*}" || failed+=("${entry#*:}")
  fi
done
for entry in "${running[@]}"; do
  wait "${entry%%:*}" || failed+=("${entry#*:}")
done
done_at=$(date +%s)

printf '%-22s %12s %10s %12s %s\n' target runs exec/s corpus result
for t in "${TARGETS[@]}"; do
  log="$LOGS/$t.log"
  runs=$(grep -oP 'stat::number_of_executed_units:\s*\K\d+' "$log" | tail -1 || true)
  secs=$(grep -oP 'Done \d+ runs in \K\d+' "$log" | tail -1 || true)
  rate=$(grep -oP 'exec/s: \K\d+' "$log" | tail -1 || true)
  [ -n "$runs" ] && [ -n "$secs" ] && [ "$secs" -gt 0 ] && rate=$((runs / secs))
  files=$(find "$FUZZ_TARGET_DIR/corpus/$t" "corpus/$t" -type f | wc -l)
  result=ok
  [[ " ${failed[*]} " == *" $t "* ]] && result=FAILED
  printf '%-22s %12s %10s %12s %s\n' "$t" "${runs:-?}" "${rate:-?}" "$files files" "$result"
done
echo "fuzz: build $((built - start)) s, runs $((done_at - built)) s"

if ((${#failed[@]})); then
  for t in "${failed[@]}"; do
    echo "---- $t (full log: $LOGS/$t.log)" >&2
    grep -E 'panicked|^thread|Test unit written|SUMMARY|ERROR|deadly signal' "$LOGS/$t.log" | head -20 >&2 || tail -30 "$LOGS/$t.log" >&2
  done
  echo "fuzz: ${failed[*]} failed; reproduce with: cd fuzz && cargo +nightly fuzz run ${FUZZ_FLAGS[*]} <target> <artifact>" >&2
  exit 1
fi

if ((UPDATE)); then
  for t in "${TARGETS[@]}"; do
    merged=$(mktemp -d)
    cp "corpus/$t"/* "$FUZZ_TARGET_DIR/corpus/$t"/* "$merged"/ 2>/dev/null || true
    nice -n 19 cargo +nightly fuzz cmin "${FUZZ_FLAGS[@]}" "$t" "$merged" >"$LOGS/$t.cmin.log" 2>&1
    rm -rf "corpus/$t" && mv "$merged" "corpus/$t"
    echo "fuzz: corpus/$t: $(find "corpus/$t" -type f | wc -l) files, $(du -sh "corpus/$t" | cut -f1)"
  done
fi
