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
  sslscan sipvicious nmap  # attack tests; the edge test's port scan (docs/EDGE.md)
  espeak-ng  # the switches' voice prompts, spoken offline (docs/PROMPTS.md)
  postgresql-15 postgresql-client-15  # the switches' core databases (switch_recovery)
  gcc libc6-dev  # the OpenSSL fork guard the lab preloads into Kamailio 5.6 (zpctl/native)
  nsd keepalived nftables  # the edge: DNS, VRRP for lb pairs, firewalls (docs/EDGE.md)
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
    systemctl disable --now kamailio rtpengine-daemon postgresql nsd keepalived \
      >/dev/null 2>&1 || true
  fi
fi

# FreeSWITCH: no registry this project reaches carries it.  In order of preference:
#   a. one already installed: `freeswitch` on PATH, or /usr/local/freeswitch/bin/freeswitch;
#   b. the Debian package named by $ZPCTL_FREESWITCH_DEB, by default the newest
#      ../shared/freeswitch/freeswitch-minimal_*_amd64.deb next to this checkout (a source
#      build of 1.11.2-dev, see its README), installed with apt so its dependencies resolve;
#   c. with ZPCTL_FREESWITCH_BUILD=1, a source build: scripts/build-freeswitch.sh (internet);
#   d. none: say so and what to do.  Not an error here: the real-FreeSWITCH tests skip, or
#      fail when ZPCTL_REQUIRE_FREESWITCH=1 (CI).
here=$(cd "$(dirname "$0")/.." && pwd)
FS_DEFAULT_BIN=/usr/local/freeswitch/bin/freeswitch

find_freeswitch() {
  if command -v freeswitch 2>/dev/null; then
    return 0
  elif [ -x "$FS_DEFAULT_BIN" ]; then
    echo "$FS_DEFAULT_BIN"
  fi
}

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "install: FreeSWITCH not installed; run as root or: sudo $*" >&2
    exit 9
  fi
}

fs_bin=$(find_freeswitch)
if [ -n "$fs_bin" ]; then
  echo "install: FreeSWITCH present ($fs_bin), using it"
  if ! command -v freeswitch >/dev/null 2>&1; then
    echo "install: note: $fs_bin is not on PATH (the tests look there too)" >&2
  fi
else
  deb=${ZPCTL_FREESWITCH_DEB:-}
  if [ -n "$deb" ] && [ ! -f "$deb" ]; then
    echo "install: ZPCTL_FREESWITCH_DEB=$deb: no such file" >&2
    exit 2
  fi
  if [ -z "$deb" ]; then
    deb=$(find "$(dirname "$here")/shared/freeswitch" -maxdepth 1 \
            -name 'freeswitch-minimal_*_amd64.deb' 2>/dev/null | sort -V | tail -n 1 || true)
  fi
  if [ -n "$deb" ]; then
    need_root apt-get install -y "$deb"
    echo "install: FreeSWITCH from $deb: apt-get install"
    export DEBIAN_FRONTEND=noninteractive
    # apt reads a local package as its sandbox user: give it a copy it can read.  A path
    # (not a name) makes apt install the file and resolve its dependencies from Debian.
    tmp=$(mktemp -d)
    cp "$deb" "$tmp/"
    chmod 755 "$tmp"
    chmod 644 "$tmp"/*.deb
    if ! apt-get install -y -q --no-install-recommends "$tmp"/*.deb; then
      apt-get update -q
      apt-get install -y -q --no-install-recommends "$tmp"/*.deb
    fi
    rm -rf "$tmp"
  elif [ "${ZPCTL_FREESWITCH_BUILD:-}" = 1 ]; then
    need_root "$here/scripts/build-freeswitch.sh"
    echo "install: ZPCTL_FREESWITCH_BUILD=1: building FreeSWITCH from source" \
         "(scripts/build-freeswitch.sh, needs internet access)"
    "$here/scripts/build-freeswitch.sh"
  else
    cat >&2 <<EOF
install: FreeSWITCH is NOT installed: none on PATH or at $FS_DEFAULT_BIN, no package at
  \$ZPCTL_FREESWITCH_DEB or ../shared/freeswitch/freeswitch-minimal_*_amd64.deb, and
  ZPCTL_FREESWITCH_BUILD=1 not set.  The real-FreeSWITCH tests will be skipped (they fail
  when ZPCTL_REQUIRE_FREESWITCH=1, as in CI).  To install it, one of:
    ZPCTL_FREESWITCH_DEB=/path/to/freeswitch-minimal_..._amd64.deb make install
    scripts/build-freeswitch.sh               # source build, needs internet access
    ZPCTL_FREESWITCH_BUILD=1 make install     # the same, from make
EOF
  fi
  if [ -n "$deb" ] || [ "${ZPCTL_FREESWITCH_BUILD:-}" = 1 ]; then
    fs_bin=$(find_freeswitch)
    if [ -z "$fs_bin" ]; then
      echo "install: FreeSWITCH was installed but there is no freeswitch on PATH or at" \
           "$FS_DEFAULT_BIN" >&2
      exit 1
    fi
    echo "install: FreeSWITCH installed ($fs_bin)"
  fi
fi
