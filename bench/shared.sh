#!/usr/bin/env bash
# make bench, part 3: deliveries into ONE shared Maildir from 8 concurrent sessions, beside
# deliveries into 8 DISTINCT Maildirs from 8 sessions (one each), same ternd, same run. Shows
# what sharing a Maildir costs (contention on one new/ directory and its fsync). Each mode runs
# 8 smtp-source processes of one session each, MESSAGES messages of SIZE_KB; every message is
# counted on disk afterwards. Arguments: [messages_per_session=500] [size_kb=4] [repeat=3].
# Output: one RESULT line per run and the median ratio shared/distinct.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
TERND=${TERND:-build/ternd} # the ternd measured
MSGS=${1:-500}
SIZE=${2:-4}
REPEAT=${3:-3}
command -v smtp-source >/dev/null || { echo "bench: needs smtp-source (run bench/run.sh once, it installs postfix)" >&2; exit 1; }
bench_tern_user

DIR=${TERN_BENCH_DIR:-/tmp/tern-bench-shared}
rm -rf "$DIR"; mkdir -p "$DIR"
PORT=$(bench_free_port)
bench_conf "$DIR" "$PORT"
cat >>"$DIR/tern.conf" <<CONF
[limits]
connections_per_ip = 2000
min_free_space = 0
CONF
: >"$DIR/users"
for k in 0 1 2 3 4 5 6 7; do bench_user "$DIR" "u$k@example.test" "Bench user $k"; done
echo 'postmaster: u0@example.test' >"$DIR/aliases"
echo 'team@example.test: u0, u1, u2, u3, u4, u5, u6, u7' >"$DIR/mailboxes"
chown -R tern "$DIR"
TPID=
trap '[ -n "$TPID" ] && { kill -TERM $TPID 2>/dev/null; wait $TPID 2>/dev/null; }; true' EXIT
bench_start_ternd "$TERND" "$DIR/tern.conf" "$PORT" "$DIR/ternd.log"

count() { find "$DIR/mail/example.test" -path '*/new/*' -type f | wc -l; }

# run MODE: 8 single-session smtp-source processes; prints the rate in messages/s
run() {
  local mode=$1 before after start end
  before=$(count)
  start=$(date +%s.%N)
  for k in 0 1 2 3 4 5 6 7; do
    to=team@example.test; [ "$mode" = distinct ] && to=u$k@example.test
    smtp-source -s 1 -m "$MSGS" -l $((SIZE * 1024)) -f bench@client.test -t "$to" \
      127.0.0.1:"$PORT" >/dev/null &
  done
  wait # run is called in $( ): a subshell whose only children are these 8
  end=$(date +%s.%N)
  after=$(count)
  local n=$((after - before)) want=$((8 * MSGS))
  [ "$n" -eq "$want" ] || { echo "bench: $mode: $n messages on disk, expected $want" >&2; exit 1; }
  /usr/bin/python3 -c "print(f'{$n/($end-$start):.0f}')"
}

echo "== shared Maildir vs distinct Maildirs: 8 sessions x $MSGS messages x ${SIZE} KiB"
ratios=()
for r in $(seq "$REPEAT"); do
  s=$(run shared)
  d=$(run distinct)
  ratio=$(/usr/bin/python3 -c "print(f'{$s/$d:.2f}')")
  ratios+=("$ratio")
  echo "RESULT run=$r shared_msg_s=$s distinct_msg_s=$d shared_over_distinct=$ratio"
done
/usr/bin/python3 -c "import statistics, sys
print('RESULT median shared_over_distinct=%.2f' % statistics.median(map(float, sys.argv[1:])))" "${ratios[@]}"
