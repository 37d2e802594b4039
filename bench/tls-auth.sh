#!/usr/bin/env bash
# bench/tls-auth.sh: STARTTLS handshakes/s and AUTH PLAIN/s, tern side by side with Postfix
# (+ Dovecot SASL) on loopback, using the shared bench kit (../shared/bench, or $BENCH_KIT).
#
#   handshakes/s  CLIENTS processes, each repeating: connect, 220, EHLO, STARTTLS, full TLS
#                 handshake, EHLO, QUIT (completed sessions per second, over DURATION s)
#   AUTH/s        CLIENTS processes, each repeating: connect, 220, EHLO, AUTH PLAIN (in clear on
#                 loopback, so only the password check is measured), 235, QUIT
#
# Both servers use the SAME self-signed P-256 certificate and the SAME users file (one user,
# yescrypt {CRYPT}, made by `tern user add`): tern reads it itself, Postfix through a private
# Dovecot auth service (passwd-file scheme=CRYPT) on $BENCH_STATE/postfix/spool/private/auth.
# Also prints the yescrypt cost: crypt() here, and one AUTH's latency on each idle server.
# Read with the "cores busy" line: on 2 cores the Python load client costs about as much per
# handshake as the server, and a server that is not CPU-bound (Postfix's smtpd has Nagle on: its
# EHLO reply after the TLS 1.3 session ticket waits ~40 ms for the client's delayed ACK) is
# measured for latency, not capacity; CLIENTS=40 shows capacity. Dovecot checks passwords in its
# one auth process, so Postfix's AUTH/s is bounded by one core.
#
# Environment: DURATION=10 (s per measurement) CLIENTS=10 REPEAT=1 (interleaved runs; median)
#   WARMUP=1 (s of load before each measurement) TERN_WORKERS=4 SERVERS="tern postfix" (measured;
#   both are always started and probed)
#   BENCH_STATE=/tmp/tern-bench-tls POSTFIX_PORT=31026 (own state and port, so this can run
#   beside a compare.sh on the default /tmp/tern-bench and 31025)
# Needs root, build/ternd and build/tern (make), postfix and dovecot-core (installed if missing,
# their default system instances are never started). Stops everything it started on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
. bench/lib.sh
KIT=${BENCH_KIT:-$(cd .. && pwd)/shared/bench}
[ -x "$KIT/peers.sh" ] || { echo "tls-auth: no bench kit at $KIT (set BENCH_KIT)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "tls-auth: must run as root" >&2; exit 1; }
[ -x build/ternd ] && [ -x build/tern ] || { echo "tls-auth: build first (make)" >&2; exit 1; }

DURATION=${DURATION:-10} CLIENTS=${CLIENTS:-10} REPEAT=${REPEAT:-1} WARMUP=${WARMUP:-1}
SERVERS=${SERVERS:-tern postfix}
export BENCH_STATE=${BENCH_STATE:-/tmp/tern-bench-tls}
export POSTFIX_PORT=${POSTFIX_PORT:-31026}
PY=/usr/bin/python3
LOAD="$PY $ROOT/bench/smtp-load.py"
log() { echo "tls-auth: $*" >&2; }

# ------------------------------------------------------------------ packages
policy_rc_d() {  # never let a package start its system instance
  [ -e /usr/sbin/policy-rc.d ] && return 0
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
}
if ! command -v /usr/sbin/dovecot >/dev/null; then
  log "installing dovecot-core (its system instance is not started and is disabled)"
  policy_rc_d
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dovecot-core >/dev/null
  systemctl disable dovecot.service >/dev/null 2>&1 || true
  if [ -s /run/dovecot/master.pid ] && kill -0 "$(cat /run/dovecot/master.pid)" 2>/dev/null; then
    log "stopping the package's default dovecot instance"; kill -TERM "$(cat /run/dovecot/master.pid)"
  fi
fi
bench_tern_user

# ------------------------------------------------------------------ cleanup
TPID="" DPID="" PF_STARTED=0 OUT=""
cleanup() {
  set +e
  [ -n "$TPID" ] && { kill -TERM "$TPID" 2>/dev/null; wait "$TPID" 2>/dev/null; }
  [ -n "$DPID" ] && { kill -TERM "$DPID" 2>/dev/null; wait "$DPID" 2>/dev/null; }
  [ "$PF_STARTED" = 1 ] && "$KIT/peers.sh" stop postfix >/dev/null 2>&1
  [ -n "$OUT" ] && rm -rf "$OUT"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
OUT=$(mktemp -d /tmp/tls-auth.XXXXXX)

# ------------------------------------------------------------------ shared cert + users file
TDIR=$BENCH_STATE/tern DVD=$BENCH_STATE/dovecot TLS=$BENCH_STATE/tls
rm -rf "$TDIR" "$DVD" "$TLS"; mkdir -p "$TDIR" "$DVD/run" "$DVD/lib" "$TLS"
chmod 755 "$BENCH_STATE" "$TLS"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj /CN=bench.test -keyout "$TLS/key.pem" -out "$TLS/cert.pem" 2>/dev/null
chgrp tern "$TLS/key.pem"; chmod 640 "$TLS/key.pem"; chmod 644 "$TLS/cert.pem"

TPORT=$(bench_free_port)
bench_conf "$TDIR" "$TPORT"
cat >>"$TDIR/tern.conf" <<CONF
[limits]
connections = 2000
connections_per_ip = 2000
junk_commands = 100000
[tls]
cert = $TLS/cert.pem
key = $TLS/key.pem
[auth]
plaintext = loopback
max_failures = 1000000
window = 1
CONF
BUSER=bench@example.test
BPASS=bench-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
# a config only loads with a postmaster that reaches a user: create the user locked ({CRYPT}*,
# as bench/run.sh does), then give it its yescrypt password with tern's own tool
bench_user "$TDIR" "$BUSER" "Bench user"
printf 'postmaster: %s\n' "$BUSER" >"$TDIR/aliases"
printf '%s\n' "$BPASS" | build/tern user passwd "$BUSER" --crypt --password-stdin -c "$TDIR/tern.conf" >/dev/null
USERS=$TDIR/users
grep -q '^bench@example.test:{CRYPT}\$y\$' "$USERS" || { log "users file has no yescrypt hash:"; cat "$USERS" >&2; exit 1; }
chown -R tern "$TDIR"; chgrp dovecot "$USERS"; chmod 640 "$USERS"   # ternd and dovecot's auth read it

# ------------------------------------------------------------------ tern
bench_start_ternd build/ternd "$TDIR/tern.conf" "$TPORT" "$TDIR/ternd.log"

# ------------------------------------------------------------------ postfix + dovecot
PF_ETC=$BENCH_STATE/postfix/etc PF_SPOOL=$BENCH_STATE/postfix/spool
"$KIT/peers.sh" start postfix 2>"$OUT/peers.log" || { cat "$OUT/peers.log" >&2; exit 1; }
PF_STARTED=1

cat >"$DVD/dovecot.conf" <<CONF
# generated by bench/tls-auth.sh: a private auth service for the bench Postfix, nothing else
base_dir = $DVD/run
state_dir = $DVD/lib
log_path = $DVD/dovecot.log
protocols =
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {
  driver = passwd-file
  args = scheme=CRYPT $USERS
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=/tmp
}
service auth {
  unix_listener $PF_SPOOL/private/auth {
    mode = 0660
    user = postfix
    group = postfix
  }
}
CONF
/usr/sbin/dovecot -F -c "$DVD/dovecot.conf" >>"$DVD/dovecot.log" 2>&1 &
DPID=$!
for _ in $(seq 50); do [ -S "$PF_SPOOL/private/auth" ] && break; sleep 0.1; done
[ -S "$PF_SPOOL/private/auth" ] || { log "dovecot made no auth socket:"; tail "$DVD/dovecot.log" >&2; exit 1; }

postconf -c "$PF_ETC" -e \
  "smtpd_tls_cert_file = $TLS/cert.pem" "smtpd_tls_key_file = $TLS/key.pem" \
  "smtpd_tls_security_level = may" "smtpd_sasl_auth_enable = yes" "smtpd_sasl_type = dovecot" \
  "smtpd_sasl_path = private/auth" "smtpd_tls_auth_only = no"
/usr/sbin/postfix -c "$PF_ETC" reload 2>/dev/null
PF_PID=$("$KIT/peers.sh" pid postfix)

# Wait until each server offers STARTTLS and AUTH PLAIN (Postfix's old smtpd processes finish first).
ready() {
  $PY - "$1" <<'EOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5); f = s.makefile("rb")
def rep():
    out = b""
    while True:
        l = f.readline(); out += l
        if len(l) < 4 or l[3:4] != b"-": return out
rep(); s.sendall(b"EHLO probe.bench.test\r\n"); e = rep().upper(); s.sendall(b"QUIT\r\n"); rep()
sys.exit(0 if b"STARTTLS" in e and b"PLAIN" in e else 1)
EOF
}
for name in tern postfix; do
  port=$TPORT; [ $name = postfix ] && port=$POSTFIX_PORT
  for _ in $(seq 50); do ready "$port" 2>/dev/null && break; sleep 0.2; done
  ready "$port" || { log "$name does not offer STARTTLS and AUTH PLAIN on $port"; exit 1; }
done

# ------------------------------------------------------------------ idle: yescrypt cost
HASH=$(awk -F: -v u="$BUSER" '$1 == u { sub(/^\{CRYPT\}/, "", $2); print $2 }' "$USERS")
CRYPT_MS=$($PY -W ignore - "$HASH" "$BPASS" <<'EOF'
import crypt, statistics, sys, time
h, pw = sys.argv[1], sys.argv[2]
ts = []
for _ in range(7):
    t = time.perf_counter(); ok = crypt.crypt(pw, h) == h; ts.append((time.perf_counter() - t) * 1000)
    assert ok, "password does not match its hash"
print(f"{statistics.median(ts):.1f}")
EOF
)
$LOAD probe "$TPORT" --user "$BUSER" --password "$BPASS" >"$OUT/probe.tern"
$LOAD probe "$POSTFIX_PORT" --user "$BUSER" --password "$BPASS" >"$OUT/probe.postfix"

# ------------------------------------------------------------------ load, interleaved
log "tern 127.0.0.1:$TPORT pid $TPID; postfix 127.0.0.1:$POSTFIX_PORT master $PF_PID + dovecot $DPID"
log "clients=$CLIENTS duration=${DURATION}s warmup=${WARMUP}s repeat=$REPEAT"
: >"$OUT/results"
for run in $(seq 1 "$REPEAT"); do
  for kind in tls auth; do
    for name in $SERVERS; do
      if [ $name = tern ]; then port=$TPORT; pids=(--server-pid "$TPID")
      else port=$POSTFIX_PORT; pids=(--server-pid "$PF_PID" --server-pid "$DPID"); fi
      auth=(); [ $kind = auth ] && auth=(--user "$BUSER" --password "$BPASS")
      if [ "$WARMUP" != 0 ]; then
        $LOAD "$kind" "$port" --clients "$CLIENTS" --duration "$WARMUP" "${auth[@]}" >/dev/null || true
      fi
      if ! $LOAD "$kind" "$port" --clients "$CLIENTS" --duration "$DURATION" "${auth[@]}" "${pids[@]}" \
          >"$OUT/run.out" 2>&1; then
        echo "$name $kind failed=1" >>"$OUT/results"
      fi
      sed "s/^/  $name $kind run $run: /" "$OUT/run.out" >&2
      grep '^RESULT' "$OUT/run.out" | sed "s/^RESULT/$name $kind/" >>"$OUT/results" || true
    done
  done
done

# ------------------------------------------------------------------ table
echo
printf 'tls-auth: clients=%s duration=%ss repeat=%s  (%s, %s cores, %s, %s)\n' "$CLIENTS" "$DURATION" \
  "$REPEAT" "$(uname -r)" "$(nproc)" "$(openssl version | cut -d' ' -f1-2)" "$(date -u +%FT%TZ)"
awk '
  function kv(s,   i, a) { for (i = 3; i <= NF; i++) { split($i, a, "="); if (a[1] == s) return a[2] } return "NA" }
  function median(list,   n, a, i, j, t) {
    n = split(list, a, " "); if (n == 0) return "NA"
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  { s = $1; k = $2
    if (kv("failed") == 1) { fail[s] = fail[s] " " k; next }
    if (kv("errors") > 0) errs[s] = errs[s] sprintf(" %s:%d", k, kv("errors"))
    if (kv("quit_without_221") > 0) no221[s] = no221[s] sprintf(" %s:%d/%d", k, kv("quit_without_221"), kv("sessions"))
    rate[s, k] = rate[s, k] " " kv("rate")
    if (kv("sessions") > 0 && kv("server_cpu_s") != "nan") cpu[s, k] = cpu[s, k] " " 1000 * kv("server_cpu_s") / kv("sessions")
    if (kv("seconds") > 0) { sb[s, k] = sb[s, k] " " 100 * kv("server_cpu_s") / kv("seconds") / ncpu
                             cb[s, k] = cb[s, k] " " 100 * kv("client_cpu_s") / kv("seconds") / ncpu } }
  function f(x, fmt) { return (x == "NA" || x == "") ? "n/a" : sprintf(fmt, x) }
  function r(x, b) { return (x == "NA" || b == "NA" || b == 0) ? "n/a" : sprintf("%.2f", x / b) }
  END {
    split("tern postfix", S, " "); split("tls auth", K, " ")
    for (i = 1; i <= 2; i++) for (j = 1; j <= 2; j++) { m[S[i], K[j]] = median(rate[S[i], K[j]]); c[S[i], K[j]] = median(cpu[S[i], K[j]]) }
    printf "%-9s %13s %9s %12s %14s %8s %9s\n", "server", "handshakes/s", "AUTH/s", "CPU ms/hs", "CPU ms/AUTH", "hs/pfx", "AUTH/pfx"
    for (i = 1; i <= 2; i++) { s = S[i]
      printf "%-9s %13s %9s %12s %14s %8s %9s\n", s, f(m[s, "tls"], "%.0f"), f(m[s, "auth"], "%.1f"),
        f(c[s, "tls"], "%.2f"), f(c[s, "auth"], "%.1f"), r(m[s, "tls"], m["postfix", "tls"]), r(m[s, "auth"], m["postfix", "auth"])
      if (fail[s] != "") printf "  %s FAILED:%s (see log above)\n", s, fail[s]
      if (errs[s] != "") printf "  %s session errors:%s (see log above)\n", s, errs[s]
      if (no221[s] != "") printf "  %s BUG: QUIT answered by a bare close, no 221 (counted as completed):%s\n", s, no221[s] }
    printf "cores busy (%% of %d; server + load client):", ncpu
    for (j = 1; j <= 2; j++) for (i = 1; i <= 2; i++) if (m[S[i], K[j]] != "NA")
      printf "  %s %s %.0f+%.0f", S[i], K[j] == "tls" ? "hs" : "AUTH", median(sb[S[i], K[j]]), median(cb[S[i], K[j]])
    printf "\n"
  }' ncpu="$(nproc)" "$OUT/results"
echo "(CPU = user+sys of the server per completed session: ternd; postfix master tree + dovecot tree)"
pv() { sed -n "s/.*[[:space:]]$2=\([^[:space:]]*\).*/\1/p" "$OUT/probe.$1"; }
echo
printf 'yescrypt cost: crypt() here %s ms (%s)\n' "$CRYPT_MS" "$(echo "$HASH" | cut -d'$' -f1-3)\$..."
printf 'idle, 1 client (median of 7): %-8s AUTH PLAIN %6s ms   STARTTLS+handshake %5s ms   %s %s\n' \
  tern "$(pv tern auth_ms)" "$(pv tern starttls_ms)" "$(pv tern tls)" "$(pv tern cipher)"
printf 'idle, 1 client (median of 7): %-8s AUTH PLAIN %6s ms   STARTTLS+handshake %5s ms   %s %s\n' \
  postfix "$(pv postfix auth_ms)" "$(pv postfix starttls_ms)" "$(pv postfix tls)" "$(pv postfix cipher)"
[ "$(pv tern cert_sha256)" = "$(pv postfix cert_sha256)" ] ||
  echo "WARNING: the two servers presented different certificates"
echo "total time ${SECONDS} s"
