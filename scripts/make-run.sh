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
sub=$(sed -n 's/^submission *= *[^:]*:\([0-9]*\).*/\1/p' "$VAR/tern.conf" | head -1)
# tern send verifies certificates: the one made above names 127.0.0.1, so trusting it as a CA
# is enough; one from elsewhere (an older ./var) may not, and then only --insecure gets through
tlsopt="--ca-file $VAR/tls/cert.pem"
tlswhy="The certificate is the self-signed one in $VAR/tls/, made out to
127.0.0.1 and localhost, so --ca-file is all tern send needs to verify it."
if ! openssl x509 -in "$VAR/tls/cert.pem" -noout -checkip 127.0.0.1 2>/dev/null | grep -q "does match"; then
  tlsopt="--insecure"
  tlswhy="$VAR/tls/cert.pem is not made out to 127.0.0.1, so it cannot verify there:
--insecure skips the check, which is fine for this local test only."
fi
cat <<MSG

ternd is starting in the foreground (Ctrl-C stops it). Mail for $domain lands in
  $VAR/mail/${domain}/<user>/new/
Send a first mail from another terminal:
  swaks --server 127.0.0.1:${port:-$SMTP_PORT} --from you@example.com --to $user
or with Python:
  python3 -c 'import smtplib; smtplib.SMTP("127.0.0.1", ${port:-$SMTP_PORT}).sendmail("you@example.com", ["$user"], "Subject: hi\r\n\r\nhello\r\n")'
As $user (with the password printed above), over STARTTLS on the submission port:
  echo hello | build/tern send --server 127.0.0.1:${sub:-$SUBMISSION_PORT} $tlsopt \\
      --user $user --from $user --to $user --subject "first mail"
tern send asks for the password.
$tlswhy
\`build/tern probe 127.0.0.1:${sub:-$SUBMISSION_PORT}\` shows what the server offers and its certificate.

MSG
exec build/ternd -c "$VAR/tern.conf"
