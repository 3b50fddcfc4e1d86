#!/usr/bin/env bash
# Install what zpctl's lab and tests need on Debian 12, idempotently: a second run installs
# nothing.  Called by `make install` (and so by `make demo` and `make test`).
set -euo pipefail

PACKAGES=(
  kamailio kamailio-tls-modules kamailio-extra-modules kamailio-utils-modules
  kamailio-sqlite-modules kamailio-postgres-modules kamailio-redis-modules
  kamailio-json-modules kamcli
  sip-tester rtpengine-daemon redis-server prometheus
  sqlite3 openssl iproute2 procps curl python3-venv python3-pip
  openssh-server openssh-client
  sslscan sipvicious
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install: all ${#PACKAGES[@]} Debian packages present"
else
  if [ "$(id -u)" -ne 0 ]; then
    echo "install: missing packages (${missing[*]}); run as root or: sudo apt-get install ${missing[*]}" >&2
    exit 9
  fi
  echo "install: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # Keep the packaged services from grabbing SIP/RTP ports: the lab runs its own processes.
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now kamailio rtpengine-daemon >/dev/null 2>&1 || true
  fi
fi
