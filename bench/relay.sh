#!/usr/bin/env bash
# make bench, part 6: outbound delivery. ternd and Postfix each relay the same load from their
# queue to the same sink, a Postfix from the bench kit (peers.sh) on its own port whose
# virtual(8) stores every message in one Maildir with an fsync (the kit's stock setup) and that
# accepts DOMAINS domains d0.test, d1.test, ...
#
#   tern:    ternd with [relay] domains = those domains and route = dK.test [127.0.0.1]:SINK,
#            concurrency CONC per destination; the queue is filled with [relay] defer = yes
#            (smtp-source, MESSAGES spread over the domains), then defer = no and a reload
#            release it.
#   postfix: a second kit Postfix (myhostname relay.bench.test, relay_domains and an inline
#            transport_maps to the same sink, default_destination_concurrency_limit CONC),
#            filled with defer_transports = smtp, then released with defer_transports = and
#            postqueue -f.
#
# The time measured runs from the release until the sink holds every message (counted in its
# Maildir) and the sender's queue is empty; msg/s both ways and the ratio tern/postfix. Each
# run gets fresh queues and a fresh sink Maildir. Everything listens on 127.0.0.1; every
# process started is stopped by its PID (ternd) or its own pid file (peers.sh stop).
#
# Arguments: [messages=2000] [domains=10] [concurrency=10] [size_kb=4] [rounds=3].
# Environment: TERND (default build/ternd), BENCH_KIT, TERN_BENCH_DIR (/tmp/tern-bench-relay).
# Needs root (the kit's Postfix runs as root and its own users). Output: a table and a RESULT
# line.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
N=${1:-2000}
DOMAINS=${2:-10}
CONC=${3:-10}
SIZE=${4:-4}
ROUNDS=${5:-3}
TERND=${TERND:-build/ternd}
KIT=${BENCH_KIT:-$(cd .. && pwd)/shared/bench}
PY=/usr/bin/python3
[ -x "$KIT/peers.sh" ] || { echo "bench: no bench kit at $KIT (set BENCH_KIT)" >&2; exit 1; }
[ -x "$TERND" ] || { echo "bench: no ternd at $TERND (make, or set TERND)" >&2; exit 1; }
command -v smtp-source >/dev/null || { echo "bench: needs smtp-source (run bench/run.sh once, it installs postfix)" >&2; exit 1; }
bench_tern_user

BASE=${TERN_BENCH_DIR:-/tmp/tern-bench-relay}
rm -rf "$BASE"; mkdir -p "$BASE"
SINK_STATE=$BASE/sink RELAY_STATE=$BASE/relay TDIR=$BASE/tern
SINK_PORT=$(bench_free_port) RELAY_PORT=$(bench_free_port) TPORT=$(bench_free_port)
doms=() ; for ((k = 0; k < DOMAINS; k++)); do doms+=("d$k.test"); done
TPID=
cleanup() {
  [ -n "$TPID" ] && { kill -TERM "$TPID" 2>/dev/null; wait "$TPID" 2>/dev/null || true; }
  BENCH_STATE=$RELAY_STATE POSTFIX_PORT=$RELAY_PORT "$KIT/peers.sh" stop postfix >/dev/null 2>&1 || true
  BENCH_STATE=$SINK_STATE POSTFIX_PORT=$SINK_PORT "$KIT/peers.sh" stop postfix >/dev/null 2>&1 || true
  return 0
}
trap cleanup EXIT

pf() { /usr/sbin/postfix -c "$1/postfix/etc" "${@:2}"; }
postconf_e() { local st=$1; shift; /usr/sbin/postconf -c "$st/postfix/etc" -e "$@"; }
# reload a kit Postfix and wait until its log says so
pf_reload() {
  local st=$1 before
  before=$(grep -c 'reload -- version' "$st/postfix/maillog" 2>/dev/null || true)
  pf "$st" reload >/dev/null 2>&1
  for _ in $(seq 200); do
    [ "$(grep -c 'reload -- version' "$st/postfix/maillog" 2>/dev/null || true)" -gt "$before" ] && return 0
    sleep 0.05
  done
  echo "bench: postfix in $st did not reload" >&2; exit 1
}

# the sink, once for all rounds: accepts example.test and every dK.test
BENCH_STATE=$SINK_STATE POSTFIX_PORT=$SINK_PORT BENCH_DOMAIN="example.test ${doms[*]}" \
  "$KIT/peers.sh" start postfix >/dev/null
SINK_MAIL=$SINK_STATE/postfix/mail/Maildir
sink_count() { { find "$SINK_MAIL/new" "$SINK_MAIL/cur" -type f 2>/dev/null || true; } | wc -l; }
sink_clear() { rm -f "$SINK_MAIL"/new/* "$SINK_MAIL"/cur/* 2>/dev/null || true; }

# fill PORT: MESSAGES messages, spread over the domains, 4 KiB each, one smtp-source a domain
fill() {
  local port=$1 per=$((N / DOMAINS)) pids=() k
  for ((k = 0; k < DOMAINS; k++)); do
    smtp-source -s 2 -m "$per" -l $((SIZE * 1024)) -f bench@client.test -t "rcpt@d$k.test" \
      -d 127.0.0.1:"$port" >/dev/null &
    pids+=($!)
  done
  for k in "${pids[@]}"; do wait "$k" || { echo "bench: smtp-source failed" >&2; exit 1; }; done
}

# wait_until CMD WANT SECONDS: until CMD prints WANT (or more)
wait_until() {
  local i
  for ((i = 0; i < $3 * 20; i++)); do [ "$($1)" -ge "$2" ] && return 0; sleep 0.05; done
  echo "bench: timed out waiting for $1 to reach $2 (got $($1))" >&2; exit 1
}

WANT=$(((N / DOMAINS) * DOMAINS))
now() { date +%s.%N; }

# ---- tern -------------------------------------------------------------------------------------
tern_spool() { { find "$TDIR/spool/queue" -name '*.env' 2>/dev/null || true; } | wc -l; }
tern_round() {
  rm -rf "$TDIR"; mkdir -p "$TDIR"
  bench_conf "$TDIR" "$TPORT"
  {
    echo "[limits]"; echo "connections = 2000"; echo "connections_per_ip = 2000"
    echo "min_free_space = 0"
    echo "[relay]"; echo "defer = yes"; echo "domains = ${doms[*]}"
    echo "concurrency = $CONC"; echo "connections = $((CONC * DOMAINS))"
    for d in "${doms[@]}"; do echo "route = $d [127.0.0.1]:$SINK_PORT"; done
  } >>"$TDIR/tern.conf"
  : >"$TDIR/users"; bench_user "$TDIR" "bench@example.test" "Bench"
  echo 'postmaster: bench@example.test' >"$TDIR/aliases"
  chown -R tern "$TDIR"
  bench_start_ternd "$TERND" "$TDIR/tern.conf" "$TPORT" "$TDIR/ternd.log"
  fill "$TPORT"
  wait_until tern_spool "$WANT" 60
  sink_clear; sync
  sed -i 's/^defer = yes$/defer = no/' "$TDIR/tern.conf"
  local t0 t1
  t0=$(now)
  kill -HUP "$TPID"
  wait_until sink_count "$WANT" 600
  for _ in $(seq 600); do [ "$(tern_spool)" -eq 0 ] && break; sleep 0.05; done
  t1=$(now)
  kill -TERM "$TPID"; wait "$TPID" || true; TPID=
  TRATE=$($PY -c "print(f'{$WANT/($t1-$t0):.0f}')")
}

# ---- postfix ----------------------------------------------------------------------------------
relay_queue() {
  { find "$RELAY_STATE/postfix/spool/"{incoming,active,deferred,maildrop} -type f 2>/dev/null || true; } | wc -l
}
relay_deferred() { { find "$RELAY_STATE/postfix/spool/deferred" -type f 2>/dev/null || true; } | wc -l; }
postfix_round() {
  BENCH_STATE=$RELAY_STATE POSTFIX_PORT=$RELAY_PORT "$KIT/peers.sh" stop postfix >/dev/null 2>&1 || true
  rm -rf "$RELAY_STATE"
  BENCH_STATE=$RELAY_STATE POSTFIX_PORT=$RELAY_PORT "$KIT/peers.sh" start postfix >/dev/null
  local map="" d
  for d in "${doms[@]}"; do map+="$d=smtp:[127.0.0.1]:$SINK_PORT, "; done
  # relay.bench.test: not the sink's name, or Postfix's smtp client sees "mail loops back to
  # myself" in the sink's greeting
  postconf_e "$RELAY_STATE" "myhostname = relay.bench.test" "relay_domains = ${doms[*]}" \
    "transport_maps = inline:{ ${map%, } }" "defer_transports = smtp" \
    "default_destination_concurrency_limit = $CONC" "smtp_destination_concurrency_limit = $CONC" \
    "default_process_limit = $((CONC * DOMAINS + 20))"
  pf_reload "$RELAY_STATE"
  fill "$RELAY_PORT"
  wait_until relay_deferred "$WANT" 120
  sink_clear; sync
  postconf_e "$RELAY_STATE" "defer_transports ="
  local t0 t1
  t0=$(now)
  pf_reload "$RELAY_STATE"
  /usr/sbin/postqueue -c "$RELAY_STATE/postfix/etc" -f
  wait_until sink_count "$WANT" 600
  for _ in $(seq 600); do [ "$(relay_queue)" -eq 0 ] && break; sleep 0.05; done
  t1=$(now)
  PRATE=$($PY -c "print(f'{$WANT/($t1-$t0):.0f}')")
}

echo "== outbound: $WANT messages x ${SIZE} KiB from the queue to $DOMAINS domains (concurrency $CONC each) on one Postfix sink, $ROUNDS rounds"
printf '%-6s %12s %14s %8s\n' round tern_msg_s postfix_msg_s ratio
ratios=() trates=() prates=()
for ((r = 1; r <= ROUNDS; r++)); do
  if ((r % 2)); then tern_round; postfix_round; else postfix_round; tern_round; fi
  ratio=$($PY -c "print(f'{$TRATE/$PRATE:.2f}')")
  printf '%-6s %12s %14s %8s\n' "$r" "$TRATE" "$PRATE" "$ratio"
  ratios+=("$ratio") trates+=("$TRATE") prates+=("$PRATE")
done
med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '%-6s %12s %14s %8s\n' median "$(med "${trates[@]}")" "$(med "${prates[@]}")" "$(med "${ratios[@]}")"
echo "RESULT relay_tern_over_postfix=$(med "${ratios[@]}") tern_msg_s=$(med "${trates[@]}") postfix_msg_s=$(med "${prates[@]}")"
