#!/usr/bin/env bash
# make check: every test tern has, in order, counted into one closing line "N passed, N failed".
#   format-check; gcc build; clang build; cmocka unit tests; pytest integration + dialogs against
#   a real ternd; the same unit and integration tests again under ASan+UBSan; libFuzzer smoke runs.
# Environment: JOBS (default 2), FUZZ_SECONDS per harness (default 15), SKIP_ASAN=1 and
# SKIP_FUZZ=1 for quick local runs (CI never sets them).
set -uo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-2}
FUZZ_SECONDS=${FUZZ_SECONDS:-15}
PY=/usr/bin/python3
passed=0
failed=0
skipped=0
failures=()
log=build/check-logs
mkdir -p "$log"

ok()   { passed=$((passed + $1)); }
bad()  { failed=$((failed + $1)); failures+=("$2"); }
step() { printf '\n== %s\n' "$*"; }

# A single pass/fail step: the command's exit status decides.
run_step() {
  local name=$1; shift
  if "$@" >"$log/$name.log" 2>&1; then ok 1; echo "ok   $name"
  else bad 1 "$name"; echo "FAIL $name (log: $log/$name.log)"; tail -n 30 "$log/$name.log"; fi
}

# cmocka binaries: count the tests each one reports.
run_unit() {
  local dir=$1 tag=$2 t out p f
  for t in "$dir"/tests/test_*; do
    [ -x "$t" ] || continue
    out=$("$t" 2>&1); local rc=$?
    p=$(grep -oE '\[  PASSED  \] [0-9]+' <<<"$out" | grep -oE '[0-9]+$' | tail -1)
    f=$(grep -oE '\[  FAILED  \] [0-9]+' <<<"$out" | grep -oE '[0-9]+$' | tail -1)
    local k; k=$(grep -oE '\[  SKIPPED \] [0-9]+' <<<"$out" | grep -oE '[0-9]+$' | tail -1)
    skipped=$((skipped + ${k:-0}))
    p=${p:-0}; f=${f:-0}
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi   # crashed or sanitizer abort
    ok "$p"
    if [ "$f" -gt 0 ]; then bad "$f" "$tag $(basename "$t")"; echo "$out" | tail -n 40; fi
    echo "unit $tag $(basename "$t"): $p passed, $f failed"
  done
}

# pytest: count from its summary line.
run_pytest() {
  local tag=$1; shift
  local out=$log/pytest-$tag.log
  TERND="$TERND" "$PY" -m pytest -q -p no:cacheprovider tests/integration "$@" >"$out" 2>&1
  local rc=$?
  local summary; summary=$(tail -n 5 "$out" | grep -E '(passed|failed|error)' | tail -1)
  local p f e
  p=$(grep -oE '[0-9]+ passed' <<<"$summary" | grep -oE '^[0-9]+'); p=${p:-0}
  local k; k=$(grep -oE '[0-9]+ skipped' <<<"$summary" | grep -oE '^[0-9]+'); k=${k:-0}
  skipped=$((skipped + k))
  f=$(grep -oE '[0-9]+ failed' <<<"$summary" | grep -oE '^[0-9]+'); f=${f:-0}
  e=$(grep -oE '[0-9]+ errors?' <<<"$summary" | grep -oE '^[0-9]+'); e=${e:-0}
  if [ "$rc" -ne 0 ] && [ $((f + e)) -eq 0 ]; then f=1; fi
  ok "$p"
  [ $((f + e)) -gt 0 ] && { bad $((f + e)) "pytest $tag"; grep -E '^(FAILED|ERROR)' "$out" | head -40; }
  echo "integration $tag: $p passed, $((f + e)) failed ($summary)"
}

id tern >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin tern 2>/dev/null || true

step "format"
run_step format-check make --no-print-directory format-check

step "man pages"
run_step man-lint sh -c 'out=$(mandoc -Tlint -W warning doc/*.[0-9] 2>&1); [ -z "$out" ] || { echo "$out"; exit 1; }'

step "build (gcc, clang)"
run_step build-gcc make --no-print-directory -j"$JOBS" CC=gcc BUILD=build all unit
run_step build-clang make --no-print-directory -j"$JOBS" CC=clang BUILD=build/clang all unit

step "unit tests"
run_unit build gcc

step "integration tests"
TERND=$PWD/build/ternd run_pytest gcc

if [ "${SKIP_ASAN:-0}" != 1 ]; then
  step "ASan + UBSan"
  SANF="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
  run_step build-asan make --no-print-directory -j"$JOBS" CC=gcc BUILD=build/asan OPT=-O1 SAN="$SANF" all unit
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1
  run_unit build/asan asan
  TERND=$PWD/build/asan/ternd TERN_SANITIZED=1 run_pytest asan
  unset ASAN_OPTIONS UBSAN_OPTIONS
fi

if [ "${SKIP_FUZZ:-0}" != 1 ]; then
  step "fuzz smoke (${FUZZ_SECONDS}s each)"
  run_step build-fuzz make --no-print-directory fuzz
  for h in build/fuzz/fuzz_*; do
    [ -x "$h" ] || continue
    n=$(basename "$h")
    corpus=build/fuzz/corpus-$n; mkdir -p "$corpus"
    seeds=tests/fuzz/seeds/${n#fuzz_}
    run_step "$n" "$h" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix=build/fuzz/ "$corpus" $( [ -d "$seeds" ] && echo "$seeds" )
  done
fi

echo
if [ ${#failures[@]} -gt 0 ]; then printf 'failed: %s\n' "${failures[@]}"; fi
if [ "$skipped" -gt 0 ]; then echo "$passed passed, $failed failed, $skipped skipped"
else echo "$passed passed, $failed failed"; fi
[ "$failed" -eq 0 ]
