# shellcheck shell=bash
# bench/lib.sh: the ternd setup the bench scripts share (audit.sh, client.sh, run.sh, shared.sh,
# tls-auth.sh source it): a free loopback port, the tern system user, tern.conf's [server] and
# [listen] sections, locked bench users, and ternd started and waited for. Sourced from the
# repository root (the scripts cd there first); uses /usr/bin/python3 for the free port.

# bench_free_port: prints a TCP port free on 127.0.0.1 now
bench_free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# bench_tern_user: the system user ternd drops to (user = tern in every bench tern.conf)
bench_tern_user() {
  id tern >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin tern
}

# bench_conf DIR PORT: DIR/tern.conf with the bench's [server] (data_dir DIR, user tern, domain
# example.test, TERN_WORKERS workers, default 4) and [listen] smtp = 127.0.0.1:PORT; the caller
# appends its own [limits] and other sections (cat >>).
bench_conf() {
  cat >"$1/tern.conf" <<CONF
[server]
hostname = bench.tern.test
data_dir = .
user = tern
domains = example.test
workers = ${TERN_WORKERS:-4}
[listen]
smtp = 127.0.0.1:$2
CONF
}

# bench_user DIR ADDR NAME: appends a locked user ({CRYPT}*: no password logs in) to DIR/users
bench_user() {
  printf '%s:{CRYPT}*::::%s:::\n' "$2" "$3" >>"$1/users"
}

# bench_start_ternd TERND CONF PORT LOG: starts TERND -c CONF (stderr to LOG) in the background,
# sets TPID, and returns once it accepts connections on 127.0.0.1:PORT; exits the script with
# LOG's tail when it dies or does not listen within 10 s. The caller chowns the data dir to tern
# first and stops TPID itself (its EXIT trap).
bench_start_ternd() {
  local ternd=$1 conf=$2 port=$3 log=$4
  "$ternd" -c "$conf" 2>"$log" &
  TPID=$!
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    kill -0 "$TPID" 2>/dev/null || break
    sleep 0.1
  done
  echo "bench: ternd did not listen on 127.0.0.1:$port; $log says:" >&2
  tail -5 "$log" >&2
  exit 1
}
