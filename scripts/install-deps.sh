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

# FreeSWITCH: no registry this project reaches carries it.  In order of preference: one
# already installed; else the Debian package named by $ZPCTL_FREESWITCH_DEB, by default the
# one in ../shared/freeswitch next to this checkout (a source build of 1.11.2-dev, see its
# README); else none, and the real-FreeSWITCH tests say they were skipped and why.
here=$(cd "$(dirname "$0")/.." && pwd)
if command -v freeswitch >/dev/null 2>&1; then
  echo "install: freeswitch present ($(command -v freeswitch))"
else
  deb=${ZPCTL_FREESWITCH_DEB:-}
  if [ -z "$deb" ]; then
    deb=$(ls "$here"/../shared/freeswitch/freeswitch-minimal_*_amd64.deb 2>/dev/null | sort | tail -n 1 || true)
  fi
  if [ -n "$deb" ] && [ -f "$deb" ]; then
    if [ "$(id -u)" -ne 0 ]; then
      echo "install: FreeSWITCH not installed; run as root or: sudo apt-get install $deb" >&2
      exit 9
    fi
    echo "install: apt-get install $deb"
    export DEBIAN_FRONTEND=noninteractive
    # apt reads a local package as its sandbox user: give it a copy it can read.
    tmp=$(mktemp -d)
    cp "$deb" "$tmp/"
    chmod 755 "$tmp"
    chmod 644 "$tmp"/*.deb
    if ! apt-get install -y -q --no-install-recommends "$tmp"/*.deb; then
      apt-get update -q
      apt-get install -y -q --no-install-recommends "$tmp"/*.deb
    fi
    rm -rf "$tmp"
  else
    echo "install: no FreeSWITCH (none installed, no package at \$ZPCTL_FREESWITCH_DEB or" \
         "../shared/freeswitch): the real-FreeSWITCH tests will be skipped" >&2
  fi
fi
