#!/usr/bin/env bash
# Installs, with apt-get, the Debian 12 packages tern needs to build, run and test; only what is
# missing, so a second run is instant. Needs root (or sudo) the first time only.
set -euo pipefail
pkgs=(build-essential pkg-config clang clang-format libclang-rt-14-dev
      libevent-dev libssl-dev openssl libinih-dev libjansson-dev libcrypt-dev libcmocka-dev
      libgsasl-dev libreadline-dev libunbound-dev
      python3 python3-pytest swaks mandoc strace dovecot-imapd)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps: need root to apt-get install ${missing[*]}; run as root or install them" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
