#!/usr/bin/env bash
# make bench: tern side by side with Postfix and OpenSMTPD on loopback, using the shared bench kit
# (../shared/bench, or $BENCH_KIT). Starts its own ternd on a free port with a bench data dir in
# which every recipient at example.test lands in one Maildir (a catch-all alias), runs
# compare.sh, stops that ternd by its PID, and also measures ternd's RSS with 1000 idle
# connections. Arguments are compare.sh's: [sessions=10] [messages=2000] [size_kb=4].
# Needs root (the peers run as system users). Output: one table, ratios against Postfix.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
TERND=${TERND:-build/ternd} # the ternd measured
KIT=${BENCH_KIT:-$(cd .. && pwd)/shared/bench}
[ -x "$KIT/compare.sh" ] || { echo "bench: no bench kit at $KIT (set BENCH_KIT)" >&2; exit 1; }
command -v smtp-source >/dev/null || {
  echo "bench: installing postfix's smtp-source (postfix package; its default instance is not started)"
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >/dev/null
}
bench_tern_user

DIR=${TERN_BENCH_DIR:-/tmp/tern-bench-tern}
rm -rf "$DIR"; mkdir -p "$DIR"
PORT=$(bench_free_port)
bench_conf "$DIR" "$PORT"
cat >>"$DIR/tern.conf" <<CONF
[limits]
connections = 2000
connections_per_ip = 2000
junk_commands = 100000
CONF
bench_user "$DIR" bench@example.test "Bench mailbox"
printf 'postmaster: bench@example.test\n@example.test: bench@example.test\n' >"$DIR/aliases"
chown -R tern "$DIR"
TPID=
trap '[ -n "$TPID" ] && { kill -TERM $TPID 2>/dev/null; wait $TPID 2>/dev/null; }; true' EXIT
bench_start_ternd "$TERND" "$DIR/tern.conf" "$PORT" "$DIR/ternd.log"

echo "== ternd RSS with 1000 idle connections"
/usr/bin/python3 - "$PORT" "$TPID" <<'PY'
import socket, sys, time
port, pid = int(sys.argv[1]), sys.argv[2]
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1]) / 1024
base = rss(); socks = []
for i in range(1000):
    s = socket.create_connection(("127.0.0.1", port)); socks.append(s)
for s in socks: s.recv(100)          # every greeting received: all 1000 sessions exist
time.sleep(0.5)
print(f"RESULT idle_rss_before_mib={base:.1f} idle_rss_1000_mib={rss():.1f}")
for s in socks: s.close()
PY
sleep 1
TERN_PORT=$PORT TERN_PID=$TPID TERN_MAILDIR="$DIR/mail/example.test/bench" "$KIT/compare.sh" "$@"
