#!/usr/bin/env bash
# make bench, part 5: libtern as a load generator. Messages/s that `tern send`-style library
# calls reach against ternd from THREADS threads (bench/client_load.c, built here against
# libtern.a: each thread its own handle; tern_connect, tern_ehlo, tern_send_message, tern_quit),
# beside Postfix's smtp-source with as many sessions sending as many messages against the same
# ternd, as a ratio libtern / smtp-source. Two modes, each for both clients:
#   reuse      one connection per thread/session for all its messages (smtp-source -d)
#   reconnect  a new connection (connect, EHLO, MAIL/RCPT/DATA, QUIT) for every message
# One ternd on a free loopback port, every recipient @example.test into one Maildir (a catch-all
# alias, as bench/run.sh); ROUNDS rounds, the order of the four runs rotating each round; every
# run's messages are counted on disk (new files in the Maildir must equal the messages sent) and
# then removed. Reported per run: messages/s (wall time of the client process: start to exit,
# every 250 received), the client's CPU ms per message (user+sys) and ternd's CPU ms per message.
# The last lines: medians and the ratios.
#
# Arguments: [messages_per_thread=500] [threads=10] [size_kb=4] [rounds=3]
# Environment: TERND (default build/ternd), LIBTERN (default: libtern.a beside $TERND),
#   TERN_WORKERS (4), TERN_BENCH_DIR (/tmp/tern-bench-client), RUN_TIMEOUT (300 s per run).
# Needs root (ternd runs as the tern user) and smtp-source (postfix; bench/run.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
MSGS=${1:-500}
THREADS=${2:-10}
SIZE_KB=${3:-4}
ROUNDS=${4:-3}
TERND=${TERND:-build/ternd}
LIBTERN=${LIBTERN:-$(dirname "$TERND")/libtern.a}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
PY=/usr/bin/python3
[ -x "$TERND" ] || { echo "bench: no ternd at $TERND (make, or set TERND)" >&2; exit 1; }
[ -f "$LIBTERN" ] || { echo "bench: no libtern.a at $LIBTERN (make libtern, or set LIBTERN)" >&2; exit 1; }
command -v smtp-source >/dev/null || { echo "bench: needs smtp-source (run bench/run.sh once, it installs postfix)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "bench: must run as root (ternd drops to the tern user)" >&2; exit 1; }
bench_tern_user

DIR=${TERN_BENCH_DIR:-/tmp/tern-bench-client}
rm -rf "$DIR"; mkdir -p "$DIR"
TPID=
cleanup() { [ -n "$TPID" ] && { kill -TERM "$TPID" 2>/dev/null; wait "$TPID" 2>/dev/null || true; }; return 0; }
trap cleanup EXIT

echo "== building bench/client_load.c against $LIBTERN"
# shellcheck disable=SC2046
cc -std=c17 -O2 -Wall -Wextra -Werror -Iinclude -o "$DIR/client_load" bench/client_load.c \
  "$LIBTERN" $(pkg-config --libs openssl libgsasl) -lpthread

PORT=$(bench_free_port)
mkdir -p "$DIR/data"
bench_conf "$DIR/data" "$PORT"
cat >>"$DIR/data/tern.conf" <<CONF
[limits]
connections = 2000
connections_per_ip = 2000
junk_commands = 1000000
min_free_space = 0
CONF
bench_user "$DIR/data" bench@example.test "Bench mailbox"
printf 'postmaster: bench@example.test\n@example.test: bench@example.test\n' >"$DIR/data/aliases"
chown -R tern "$DIR/data"
bench_start_ternd "$TERND" "$DIR/data/tern.conf" "$PORT" "$DIR/ternd.log"
MAILDIR=$DIR/data/mail/example.test/bench
TOTAL=$((MSGS * THREADS))
SIZE=$((SIZE_KB * 1024))

count() { { find "$MAILDIR/new" "$MAILDIR/cur" -type f 2>/dev/null || true; } | wc -l; }
# user+sys clock ticks of ternd (all its threads; it forks no children)
ternd_ticks() { awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$TPID/stat"; }

# timed CMD...: runs CMD (bounded by RUN_TIMEOUT), prints "WALL_S CPU_S EXIT" for it alone
timed() {
  $PY - "$RUN_TIMEOUT" "$@" <<'PY'
import os, resource, subprocess, sys, time
limit, cmd = float(sys.argv[1]), sys.argv[2:]
t0 = time.monotonic()
p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(os.environ["ERR"], "w"))
try:
    rc = p.wait(limit)
except subprocess.TimeoutExpired:
    p.kill(); p.wait(); rc = 124
wall = time.monotonic() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{wall:.3f} {ru.ru_utime + ru.ru_stime:.3f} {rc}")
PY
}

# run CLIENT MODE: one measured run; appends "CLIENT MODE rate client_ms server_ms" to results
run() {
  local client=$1 mode=$2 before after n wall cpu rc t0 t1 cmd
  before=$(count)
  if [ "$client" = libtern ]; then
    cmd=("$DIR/client_load" 127.0.0.1 "$PORT" "$THREADS" "$MSGS" "$SIZE" "$mode"
         bench@client.test rcpt@example.test "$RUN_TIMEOUT")
  else
    cmd=(smtp-source -s "$THREADS" -m "$TOTAL" -l "$SIZE" -f bench@client.test
         -t rcpt@example.test -M client.bench.test)
    [ "$mode" = reuse ] && cmd+=(-d)
    cmd+=("127.0.0.1:$PORT")
  fi
  t0=$(ternd_ticks)
  read -r wall cpu rc < <(ERR="$DIR/client.err" timed "${cmd[@]}")
  t1=$(ternd_ticks)
  after=$(count)
  n=$((after - before))
  if [ "$rc" -ne 0 ] || [ "$n" -ne "$TOTAL" ]; then
    echo "bench: $client $mode: exit $rc, $n of $TOTAL messages on disk" >&2
    tail -5 "$DIR/client.err" >&2
    exit 1
  fi
  local hz; hz=$(getconf CLK_TCK)
  $PY -c "
n, wall, cpu, st = $n, $wall, $cpu, ($t1 - $t0) / $hz
print(f'RESULT client=$client mode=$mode messages={n} seconds={wall:.2f} msg_s={n / wall:.0f} '
      f'client_cpu_ms_per_msg={1000 * cpu / n:.3f} ternd_cpu_ms_per_msg={1000 * st / n:.3f}')" \
    | tee -a "$DIR/results"
  find "$MAILDIR/new" "$MAILDIR/cur" -type f -delete 2>/dev/null || true
}

echo "== libtern ($THREADS threads) beside smtp-source ($THREADS sessions): $THREADS x $MSGS messages of ${SIZE_KB} KiB per run, $ROUNDS rounds"
echo "   ternd $TERND (pid $TPID, port $PORT, workers ${TERN_WORKERS:-4}); $(nproc) cores, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
run libtern reuse >/dev/null  # warm-up: the Maildir exists, caches are warm
: >"$DIR/results"
order=("libtern reuse" "smtp-source reuse" "libtern reconnect" "smtp-source reconnect")
for r in $(seq "$ROUNDS"); do
  for k in 0 1 2 3; do
    # shellcheck disable=SC2086
    run ${order[$(((k + r - 1) % 4))]}
  done
done
echo "   load after: $(cut -d' ' -f1-3 /proc/loadavg)"

$PY - "$DIR/results" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    kv = dict(re.findall(r"(\w+)=(\S+)", line))
    rows.setdefault((kv["client"], kv["mode"]), []).append(kv)
med = lambda k, key: statistics.median(float(x[key]) for x in rows[k])
print()
print(f"{'client':<12} {'mode':<10} {'runs':>4} {'msg/s':>8} {'min':>7} {'max':>7} "
      f"{'client CPU ms/msg':>18} {'ternd CPU ms/msg':>17}")
for mode in ("reuse", "reconnect"):
    for client in ("libtern", "smtp-source"):
        k = (client, mode)
        rates = [float(x["msg_s"]) for x in rows[k]]
        print(f"{client:<12} {mode:<10} {len(rates):>4} {med(k, 'msg_s'):>8.0f} {min(rates):>7.0f} "
              f"{max(rates):>7.0f} {med(k, 'client_cpu_ms_per_msg'):>18.3f} "
              f"{med(k, 'ternd_cpu_ms_per_msg'):>17.3f}")
print()
for mode in ("reuse", "reconnect"):
    ratio = med(("libtern", mode), "msg_s") / med(("smtp-source", mode), "msg_s")
    per_round = [float(a["msg_s"]) / float(b["msg_s"])
                 for a, b in zip(rows[("libtern", mode)], rows[("smtp-source", mode)])]
    print(f"RESULT mode={mode} libtern_over_smtp_source={ratio:.2f} "
          f"per_round={','.join(f'{x:.2f}' for x in per_round)}")
PY
