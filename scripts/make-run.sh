#!/usr/bin/env bash
# make run: the first-time setup a newcomer needs, then ternd in the foreground.
# Creates ./var (configuration, users with a first user whose password is printed once, aliases,
# a self-signed TLS certificate) when absent, makes sure the unprivileged `tern` account exists
# when run as root, checks the configuration, prints how to send a first mail, and runs ternd.
# TERN_VAR overrides the folder; SMTP_PORT, SUBMISSION_PORT, SMTPS_PORT the ports.
set -euo pipefail
cd "$(dirname "$0")/.."
VAR=${TERN_VAR:-$PWD/var}
SMTP_PORT=${SMTP_PORT:-2525}
SUBMISSION_PORT=${SUBMISSION_PORT:-2587}
SMTPS_PORT=${SMTPS_PORT:-2465}

if [ "$(id -u)" -eq 0 ] && ! id tern >/dev/null 2>&1; then
  echo "make run: creating the system user 'tern' that ternd runs mail sessions as"
  useradd --system --no-create-home --shell /usr/sbin/nologin tern
fi


if [ ! -f "$VAR/tls/cert.pem" ]; then
  mkdir -p "$VAR/tls" && chmod 750 "$VAR"
  cn=$(hostname -f 2>/dev/null || hostname)
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
    -subj "/CN=$cn" -addext "subjectAltName=DNS:$cn,DNS:localhost,IP:127.0.0.1" \
    -keyout "$VAR/tls/key.pem" -out "$VAR/tls/cert.pem" 2>/dev/null
  chmod 600 "$VAR/tls/key.pem"
  echo "make run: created a self-signed certificate $VAR/tls/cert.pem for $cn"
  openssl x509 -in "$VAR/tls/cert.pem" -noout -fingerprint -sha256
fi

if [ ! -f "$VAR/tern.conf" ]; then
  build/tern init "$VAR" --smtp "$SMTP_PORT" --submission "$SUBMISSION_PORT" --smtps "$SMTPS_PORT"
fi

if [ "$(id -u)" -eq 0 ]; then
  chown -R tern "$VAR"
fi

build/tern config check "$VAR/tern.conf"
domain=$(sed -n 's/^domains *= *\([^ ,]*\).*/\1/p' "$VAR/tern.conf" | head -1)
user=$(grep -v '^#' "$VAR/users" | head -1 | cut -d: -f1)
port=$(sed -n 's/^smtp *= *[^:]*:\([0-9]*\).*/\1/p' "$VAR/tern.conf" | head -1)
cat <<MSG

ternd is starting in the foreground (Ctrl-C stops it). Mail for $domain lands in
  $VAR/mail/${domain}/<user>/new/
Send a first mail from another terminal:
  swaks --server 127.0.0.1:${port:-$SMTP_PORT} --from you@example.com --to $user
or with Python:
  python3 -c 'import smtplib; smtplib.SMTP("127.0.0.1", ${port:-$SMTP_PORT}).sendmail("you@example.com", ["$user"], "Subject: hi\r\n\r\nhello\r\n")'
As $user (with the password printed above), over STARTTLS on the submission port:
  swaks --server 127.0.0.1:${SUBMISSION_PORT} --tls --auth-user $user --from $user --to $user
(swaks asks for the password; \`tern send\` arrives with the client-side work, see the README.)

MSG
exec build/ternd -c "$VAR/tern.conf"
