#!/usr/bin/env bash
# make bench, part 4: what the audit log costs. Three sections, each with its own ternd on a free
# port and a fresh data dir per run, stopped by its PID:
#
#  1. throughput: ROUNDS rounds, each runs the same load once with [audit] enabled = yes and once
#     with enabled = no (the order alternates from round to round): SESSIONS smtp-source
#     processes of one session each, MESSAGES messages of SIZE_KB to a distinct Maildir each (as
#     bench/shared.sh's distinct mode). Every message is counted on disk. Per round msg/s both
#     ways, ternd's CPU per message both ways, and the median ratio on/off (the target: audit
#     costs < 10%, i.e. on/off >= 0.90). Where perf works, `perf stat` on the fdatasync
#     tracepoint (cheap, unlike strace) counts audit.log's fsyncs per message at full speed.
#  2. fsyncs per message: a separate, shorter run of the same load each way (SESSIONS x
#     AUDIT_FSYNC_MSGS) under `strace -f -y -e trace=fsync,fdatasync -p PID`, every call counted
#     and sorted by the file it synced (strace -y). strace slows ternd down, so no rate comes
#     from these runs. ternd calls fdatasync only on audit.log (the group commit,
#     src/audit/log.c), so fdatasync/msg is audit.log's fsyncs per message; fsync is the
#     Maildir's (message file + new/) plus, with audit, the head/key rewrites.
#  3. `tern audit verify` speed: a real ternd writes a log of about AUDIT_VERIFY_RECORDS records
#     (short sessions of small messages, ~7 records each), then verify runs with the current key
#     (-c CONF) and with the first key (--key DATA_DIR/audit/first-key): records/s, best of 3.
#     AUDIT_VERIFY_RECORDS=0 skips it.
#
# Arguments: [rounds=5] [messages_per_session=500] [size_kb=4] [sessions=8].
# Environment: TERND / TERN choose the binaries (default build/ternd, build/tern);
# AUDIT_FSYNC_MSGS (default 100), AUDIT_VERIFY_RECORDS (default 200000), TERN_WORKERS (4),
# TERN_BENCH_DIR (default /tmp/tern-bench-audit).
# Output: one table per section and one RESULT line; the strace logs stay in
# TERN_BENCH_DIR/strace-{yes,no}.txt, the data dirs are removed.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
ROUNDS=${1:-5}
MSGS=${2:-500}
SIZE=${3:-4}
SESSIONS=${4:-8}
TERND=${TERND:-build/ternd}
TERN=${TERN:-build/tern}
FSYNC_MSGS=${AUDIT_FSYNC_MSGS:-100}
VERIFY_RECORDS=${AUDIT_VERIFY_RECORDS:-200000}
PY=/usr/bin/python3
[ -x "$TERND" ] || { echo "bench: no ternd at $TERND (make, or set TERND)" >&2; exit 1; }
command -v smtp-source >/dev/null || { echo "bench: needs smtp-source (run bench/run.sh once, it installs postfix)" >&2; exit 1; }
command -v strace >/dev/null || {
  echo "bench: installing strace (as scripts/deps.sh installs packages)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends strace >/dev/null
}
bench_tern_user

BASE=${TERN_BENCH_DIR:-/tmp/tern-bench-audit}
rm -rf "$BASE"; mkdir -p "$BASE"; sync
TPID= SPID= DIR= PORT=
cleanup() {
  [ -n "$SPID" ] && { kill -INT "$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null || true; }
  [ -n "$TPID" ] && { kill -TERM "$TPID" 2>/dev/null; wait "$TPID" 2>/dev/null || true; }
  return 0
}
trap cleanup EXIT

# start_ternd NAME yes|no: a fresh data dir $BASE/NAME, ternd started on a free port (TPID, PORT)
start_ternd() {
  DIR=$BASE/$1
  rm -rf "$DIR"; mkdir -p "$DIR"
  PORT=$(bench_free_port)
  bench_conf "$DIR" "$PORT"
  cat >>"$DIR/tern.conf" <<CONF
[limits]
connections = 2000
connections_per_ip = 2000
min_free_space = 0
[audit]
enabled = $2
CONF
  : >"$DIR/users"
  for ((k = 0; k < SESSIONS; k++)); do bench_user "$DIR" "u$k@example.test" "Bench user $k"; done
  echo 'postmaster: u0@example.test' >"$DIR/aliases"
  chown -R tern "$DIR"
  bench_start_ternd "$TERND" "$DIR/tern.conf" "$PORT" "$DIR/ternd.log"
}

# ternd's CPU (user+sys of all its threads) so far, in ms
cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) * 1000 / hz}' "/proc/$TPID/stat"; }

stop_ternd() {
  kill -TERM "$TPID"
  wait "$TPID" || { echo "bench: ternd exited with $?; see $DIR/ternd.log" >&2; exit 1; }
  TPID=
}

count() { { find "$DIR/mail/example.test" -path '*/new/*' -type f 2>/dev/null || true; } | wc -l; }

# load N SIZE_BYTES: SESSIONS single-session smtp-source processes of N messages each, one
# Maildir each; every message is checked on disk. Sets RATE (msg/s) and SENT.
load() {
  local n=$1 bytes=$2 before after start end pids=() k
  sync # earlier runs' dirty pages are not this run's fsyncs' business
  before=$(count)
  start=$(date +%s.%N)
  for ((k = 0; k < SESSIONS; k++)); do
    smtp-source -s 1 -m "$n" -l "$bytes" -f bench@client.test -t "u$k@example.test" \
      127.0.0.1:"$PORT" >/dev/null &
    pids+=($!)
  done
  for k in "${pids[@]}"; do wait "$k" || { echo "bench: smtp-source failed" >&2; exit 1; }; done
  end=$(date +%s.%N)
  after=$(count)
  SENT=$((after - before))
  local want=$((SESSIONS * n))
  [ "$SENT" -eq "$want" ] || { echo "bench: $SENT messages on disk in $DIR, expected $want" >&2; exit 1; }
  RATE=$($PY -c "print(f'{$SENT/($end-$start):.0f}')")
}

# ---- 1. throughput ------------------------------------------------------------------------
echo "== audit on vs off: $SESSIONS sessions x $MSGS messages x ${SIZE} KiB, $ROUNDS rounds ($TERND, workers ${TERN_WORKERS:-4})"
# audit.log's fsyncs at full speed, without strace: perf counting the fdatasync tracepoint
PERF_OK=no
perf stat -e syscalls:sys_enter_fdatasync -x, -o /dev/null true >/dev/null 2>&1 && PERF_OK=yes
printf '%-6s %10s %10s %8s %14s %14s %15s\n' round on_msg_s off_msg_s on/off on_cpu_us/msg off_cpu_us/msg on_fdatasync/msg
ons=() offs=() ratios=() oncpus=() offcpus=() fdss=()
for ((r = 1; r <= ROUNDS; r++)); do
  order="yes no"; [ $((r % 2)) -eq 0 ] && order="no yes"
  for mode in $order; do
    start_ternd "tput-$r-$mode" "$mode" # no rm -rf between runs: freeing blocks slows fsyncs
    if [ "$PERF_OK" = yes ]; then # same in both modes, so that both pay the same
      perf stat -e syscalls:sys_enter_fdatasync -x, -o "$DIR/perf.txt" -p "$TPID" 2>/dev/null &
      SPID=$!
      sleep 0.3
    fi
    c0=$(cpu_ms)
    load "$MSGS" $((SIZE * 1024))
    cpu=$($PY -c "print(f'{($(cpu_ms)-$c0)*1000/$SENT:.0f}')")
    fds=-
    if [ -n "$SPID" ]; then
      kill -INT "$SPID"; wait "$SPID" || true; SPID=
      fds=$($PY - "$DIR/perf.txt" "$SENT" <<'PY'
import sys
for line in open(sys.argv[1]):
    f = line.strip().split(",")
    if len(f) > 2 and "sys_enter_fdatasync" in f[2] and f[0].isdigit():
        print(f"{int(f[0]) / int(sys.argv[2]):.3f}")
        break
else:
    print("-")
PY
)
    fi
    stop_ternd
    if [ "$mode" = yes ]; then on=$RATE oncpu=$cpu onfds=$fds; else off=$RATE offcpu=$cpu; fi
  done
  ratio=$($PY -c "print(f'{$on/$off:.3f}')")
  ons+=("$on"); offs+=("$off"); ratios+=("$ratio"); oncpus+=("$oncpu"); offcpus+=("$offcpu")
  [ "$onfds" != - ] && fdss+=("$onfds")
  printf '%-6s %10s %10s %8s %14s %14s %15s\n' "$r" "$on" "$off" "$ratio" "$oncpu" "$offcpu" "$onfds"
done
MED_FDS=-
[ ${#fdss[@]} -gt 0 ] && MED_FDS=$($PY -c "import statistics, sys; print(f'{statistics.median(map(float, sys.argv[1:])):.3f}')" "${fdss[@]}")
read -r MED_ON MED_OFF MED_RATIO MED_ONCPU MED_OFFCPU < <($PY -c "import statistics as s, sys
a = sys.argv[1:]; n = len(a) // 5
on, off, rt, onc, offc = (list(map(float, a[i*n:(i+1)*n])) for i in range(5))
print(f'{s.median(on):.0f} {s.median(off):.0f} {s.median(rt):.3f} {s.median(onc):.0f} {s.median(offc):.0f}')" \
  "${ons[@]}" "${offs[@]}" "${ratios[@]}" "${oncpus[@]}" "${offcpus[@]}")
printf '%-6s %10s %10s %8s %14s %14s %15s\n' median "$MED_ON" "$MED_OFF" "$MED_RATIO" "$MED_ONCPU" "$MED_OFFCPU" "$MED_FDS"
echo "(cpu: ternd's user+sys per message; on_fdatasync/msg: audit.log's fsyncs per message counted by"
echo " perf stat on the syscalls:sys_enter_fdatasync tracepoint, '-' without perf; ternd fdatasyncs nothing else)"
rm -rf "$BASE"/tput-*

# ---- 2. fsyncs per message ----------------------------------------------------------------
# strace_run yes|no: the load under strace (-y: each call with its file's path); sets FS FDS (the
# fsync and fdatasync calls), AUD (those on files in audit/), SENT, and BREAKDOWN (calls per
# message by what was synced)
strace_run() {
  start_ternd "fsync-$1" "$1"
  local out=$DIR/strace.txt t
  strace -f -y -e trace=fsync,fdatasync -o "$out" -p "$TPID" 2>"$DIR/strace.err" &
  SPID=$!
  for _ in $(seq 100); do # every thread of ternd traced
    t=1
    for s in /proc/"$TPID"/task/*/status; do
      [ "$(awk '/^TracerPid/ {print $2}' "$s" 2>/dev/null)" != 0 ] || t=0
    done
    [ "$t" = 1 ] && break
    sleep 0.1
  done
  [ "$t" = 1 ] || { echo "bench: strace did not attach to ternd" >&2; exit 1; }
  load "$FSYNC_MSGS" $((SIZE * 1024))
  kill -INT "$SPID"; wait "$SPID" || true; SPID=
  stop_ternd
  cp "$out" "$BASE/strace-$1.txt"
  read -r FS FDS AUD BREAKDOWN < <($PY - "$out" "$SENT" <<'PY'
import collections, re, sys
n = int(sys.argv[2])
calls = collections.Counter()
what = collections.Counter()
for line in open(sys.argv[1]):
    m = re.search(r"\b(fsync|fdatasync)\(\d+<([^>]*)>", line)  # done, or <unfinished ...>
    if not m:
        continue
    call, path = m.groups()
    calls[call] += 1
    if path.endswith("/audit/audit.log"):
        w = "audit.log"
    elif "/audit/" in path or path.endswith("/audit"):
        w = "audit-other"   # head, key rewrites
    elif re.search(r"/(new|tmp)/[^/]+$", path):
        w = "msg-file"
    elif path.endswith("/new"):
        w = "new/-dir"
    else:
        w = "other-dir"     # fresh Maildir parents, ...
    what[f"{w}({call})"] += 1
aud = sum(v for k, v in what.items() if k.startswith("audit"))
print(calls["fsync"], calls["fdatasync"], aud, " ".join(f"{k}={v/n:.3f}" for k, v in sorted(what.items())))
PY
)
}
strace_run no; OFF_FS=$FS OFF_FDS=$FDS OFF_N=$SENT OFF_WHAT=$BREAKDOWN
strace_run yes; ON_FS=$FS ON_FDS=$FDS ON_N=$SENT ON_WHAT=$BREAKDOWN ON_AUD=$AUD
echo
echo "== fsync calls per message: strace -f -y -p ternd, $SESSIONS sessions x $FSYNC_MSGS messages (no rates: strace slows ternd)"
printf '%-6s %9s %9s %10s %10s %14s %10s\n' audit messages fsync fdatasync fsync/msg fdatasync/msg total/msg
$PY - "$OFF_FS" "$OFF_FDS" "$OFF_N" "$ON_FS" "$ON_FDS" "$ON_N" "$ON_AUD" <<'PY'
import sys
v = list(map(int, sys.argv[1:]))
for name, (fs, fds, n) in (("off", v[0:3]), ("on", v[3:6])):
    print(f"{name:<6} {n:9d} {fs:9d} {fds:10d} {fs/n:10.3f} {fds/n:14.3f} {(fs+fds)/n:10.3f}")
print(f"audit's own syncs per message: {v[6]/v[5]:.3f} (audit.log fdatasync {v[4]/v[5]:.3f}: one per "
      f"{v[5]/max(v[4],1):.2f} messages; the rest head/key); the Maildir's: "
      f"off {(v[0]+v[1])/v[2]:.3f}, on {(v[3]+v[4]-v[6])/v[5]:.3f}")
PY
echo "per message by what was synced: off: $OFF_WHAT"
echo "                                 on:  $ON_WHAT"
FS_OFF=$($PY -c "print(f'{$OFF_FS/$OFF_N:.3f}')")
FS_ON=$($PY -c "print(f'{($ON_FS+$ON_FDS)/$ON_N:.3f}')")
FDS_ON=$($PY -c "print(f'{$ON_FDS/$ON_N:.3f}')")
rm -rf "$BASE"/fsync-*

# ---- 3. tern audit verify -----------------------------------------------------------------
VERIFY_RESULT=""
if [ "$VERIFY_RECORDS" -gt 0 ]; then
  [ -x "$TERN" ] || { echo "bench: no tern at $TERN (make, or set TERN)" >&2; exit 1; }
  start_ternd verify yes
  per=$(((VERIFY_RECORDS + 7 * SESSIONS - 1) / (7 * SESSIONS))) # ~7 records a message
  gen0=$(date +%s.%N)
  load "$per" 512
  stop_ternd
  gen=$($PY -c "print(f'{$(date +%s.%N)-$gen0:.0f}')")
  RECORDS=$(cat "$DIR"/audit/audit.log* | wc -l)
  MIB=$(du -cm "$DIR"/audit/audit.log* | tail -1 | cut -f1)
  echo
  echo "== tern audit verify: $RECORDS records, $MIB MiB (written by ternd in ${gen}s: $SENT messages), best of 3"
  printf '%-28s %9s %11s\n' key seconds records/s
  # vtime ARGS...: BEST, the best wall time of 3 verify runs, each of which must say intact
  vtime() {
    local t0 t1 out
    BEST=
    for _ in 1 2 3; do
      t0=$(date +%s.%N)
      out=$("$TERN" audit verify "$@" -c "$DIR/tern.conf" 2>"$BASE/verify.err") ||
        { echo "bench: tern audit verify $* failed: $out $(cat "$BASE/verify.err")" >&2; exit 1; }
      t1=$(date +%s.%N)
      grep -q "^intact: $RECORDS records" <<<"$out" ||
        { echo "bench: tern audit verify $* did not say intact: $out" >&2; exit 1; }
      BEST=$($PY -c "b='$BEST'; t=$t1-$t0; print(f'{min(t, float(b)) if b else t:.3f}')")
    done
    VERIFY_OUT=$out
  }
  vtime; VS=$BEST
  vtime --key "$DIR/audit/first-key"; KS=$BEST
  VR=$($PY -c "print(f'{$RECORDS/$VS:.0f}')")
  KR=$($PY -c "print(f'{$RECORDS/$KS:.0f}')")
  printf '%-28s %9s %11s\n' "current key (-c CONF)" "$VS" "$VR" "first key (--key first-key)" "$KS" "$KR"
  VERIFY_RESULT=" verify_records=$RECORDS verify_records_s=$VR verify_first_key_records_s=$KR"
  rm -rf "$DIR"
fi

echo
echo "RESULT audit_on_over_off=$MED_RATIO on_msg_s=$MED_ON off_msg_s=$MED_OFF ternd_cpu_us_per_msg_on=$MED_ONCPU ternd_cpu_us_per_msg_off=$MED_OFFCPU fsync_per_msg_off=$FS_OFF fsync_per_msg_on=$FS_ON audit_fdatasync_per_msg=$FDS_ON audit_fdatasync_per_msg_full_speed=$MED_FDS$VERIFY_RESULT"
