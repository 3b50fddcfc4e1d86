#!/usr/bin/env bash
# Build FreeSWITCH from its upstream git repositories, at pinned commits, into one prefix
# (sofia-sip and spandsp included), and link freeswitch and fs_cli into /usr/local/bin.
# The same versions and modules as the package in ../shared/freeswitch (see its README).
# Needs internet access (git clone from GitHub) and root (apt-get, the prefix).
# `scripts/build-freeswitch.sh --help` for the settings.
set -euo pipefail

# Pins (each overridable from the environment).
SOFIA_REPO=${SOFIA_REPO:-https://github.com/freeswitch/sofia-sip}
SOFIA_COMMIT=${SOFIA_COMMIT:-7333682}       # sofia-sip 1.13.17
SPANDSP_REPO=${SPANDSP_REPO:-https://github.com/freeswitch/spandsp}
SPANDSP_COMMIT=${SPANDSP_COMMIT:-0c7bceb}   # spandsp 3.0.0
FS_REPO=${FS_REPO:-https://github.com/signalwire/freeswitch}
FS_COMMIT=${FS_COMMIT:-ac60d2f6ec}          # FreeSWITCH 1.11.2-dev

PREFIX=${PREFIX:-/usr/local/freeswitch}
WORKDIR=${WORKDIR:-/usr/local/src/zpctl-freeswitch}
BINDIR=${BINDIR:-/usr/local/bin}
JOBS=${JOBS:-$(nproc)}
FORCE=${FORCE:-0}

# Debian 12 packages the build needs: toolchain and autotools, git, and the libraries of the
# core (ssl, curl, pcre2, speex, sqlite, uuid, zlib, libedit for fs_cli), of spandsp (tiff,
# jpeg) and of the modules below (ldns, opus, sndfile, lua 5.2, libpq).  This FreeSWITCH uses
# PCRE2 (libpcre2-dev), not the old libpcre3.  yasm is only for video, which is off.
BUILD_DEPS=(
  build-essential autoconf automake libtool libtool-bin pkg-config git ca-certificates
  libssl-dev libcurl4-openssl-dev libpcre2-dev libspeex-dev libspeexdsp-dev libsqlite3-dev
  libedit-dev libldns-dev libopus-dev libsndfile1-dev liblua5.2-dev libpq-dev uuid-dev
  libtiff-dev libjpeg-dev yasm zlib1g-dev
)

# FreeSWITCH's modules.conf: the module list of ../shared/freeswitch/README.md, in its order.
MODULES=(
  applications/mod_commands
  databases/mod_pgsql
  event_handlers/mod_cdr_pg_csv
  applications/mod_conference
  applications/mod_db
  applications/mod_dptools
  applications/mod_esf
  applications/mod_expr
  applications/mod_fifo
  applications/mod_hash
  applications/mod_httapi
  applications/mod_callcenter
  applications/mod_directory
  applications/mod_valet_parking
  applications/mod_voicemail
  applications/mod_spandsp
  applications/mod_curl
  codecs/mod_opus
  dialplans/mod_dialplan_xml
  endpoints/mod_loopback
  endpoints/mod_sofia
  event_handlers/mod_cdr_csv
  event_handlers/mod_json_cdr
  event_handlers/mod_event_socket
  formats/mod_local_stream
  formats/mod_native_file
  formats/mod_sndfile
  formats/mod_tone_stream
  languages/mod_lua
  loggers/mod_console
  loggers/mod_logfile
  say/mod_say_en
  xml_int/mod_xml_curl
  xml_int/mod_xml_cdr
)

usage() {
  cat <<EOF
Usage: scripts/build-freeswitch.sh [--help]

Builds FreeSWITCH from source on Debian 12 and installs it into \$PREFIX, with freeswitch
and fs_cli linked into \$BINDIR.  Needs internet access and root.  Steps, each skipped when
its result is already there (FORCE=1 redoes them all):

  1. apt-get install the build dependencies (only the missing ones);
  2. clone sofia-sip, spandsp and FreeSWITCH into \$WORKDIR and check out the pinned commits;
  3. build and install sofia-sip, then spandsp, into \$PREFIX;
  4. write FreeSWITCH's modules.conf (${#MODULES[@]} modules), configure (video off, rpath and
     PKG_CONFIG_PATH at \$PREFIX), make -j\$JOBS, make install;
  5. link \$PREFIX/bin/freeswitch and fs_cli into \$BINDIR and run freeswitch -version.

Settings (environment; current value):
  PREFIX=$PREFIX
  WORKDIR=$WORKDIR
  BINDIR=$BINDIR
  JOBS=$JOBS
  FORCE=$FORCE
  SOFIA_REPO=$SOFIA_REPO SOFIA_COMMIT=$SOFIA_COMMIT
  SPANDSP_REPO=$SPANDSP_REPO SPANDSP_COMMIT=$SPANDSP_COMMIT
  FS_REPO=$FS_REPO FS_COMMIT=$FS_COMMIT

Modules (written to FreeSWITCH's modules.conf):
$(printf '%s ' "${MODULES[@]##*/}" | fold -s -w 86 | sed 's/^/  /')
EOF
}

say() { echo "build-freeswitch: $*"; }
run() {
  echo "+ $*"
  "$@"
}
die() {
  echo "build-freeswitch: error: $*" >&2
  exit 1
}
forced() { [ "$FORCE" = 1 ]; }

# The stamp of a finished step: which commit went into which prefix.
stamp_ok() {  # name commit
  ! forced && [ -f "$WORKDIR/.done-$1" ] && [ "$(cat "$WORKDIR/.done-$1")" = "$2 $PREFIX" ]
}
stamp() { echo "$2 $PREFIX" > "$WORKDIR/.done-$1"; }

install_deps() {
  local missing=() p
  for p in "${BUILD_DEPS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    say "build dependencies: all ${#BUILD_DEPS[@]} Debian packages present"
    return
  fi
  [ "$(id -u)" -eq 0 ] || die "missing Debian packages (${missing[*]}): run as root"
  say "build dependencies: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  run apt-get update -q
  run apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# Clone (once) and check out a pinned commit.  A partial clone: blobs come with the checkout.
checkout() {  # repo commit dir
  local repo=$1 commit=$2 dir=$WORKDIR/$3 want done_file
  if [ ! -d "$dir/.git" ]; then
    say "$3: clone $repo"
    run git clone -q --filter=blob:none --no-checkout "$repo" "$dir"
  fi
  if ! want=$(git -C "$dir" rev-parse -q --verify "$commit^{commit}"); then
    say "$3: fetch (commit $commit not in the clone)"
    run git -C "$dir" fetch -q --tags origin
    want=$(git -C "$dir" rev-parse -q --verify "$commit^{commit}") \
      || die "$3: no commit $commit in $repo"
  fi
  # What this script last checked out completely (a fresh clone has no work tree yet).
  done_file=$dir/.git/zpctl-checkout
  if [ "$(cat "$done_file" 2>/dev/null)" = "$want" ] && ! forced; then
    say "$3: at $commit already"
    return
  fi
  say "$3: check out $commit"
  run git -C "$dir" checkout -q --force --detach "$want"
  # A different commit (or FORCE=1) starts from a clean tree: bootstrap and configure again.
  run git -C "$dir" clean -q -fdx
  echo "$want" > "$done_file"
}

# bootstrap, configure, make, make install; each of bootstrap and configure only once.
autotools_build() {  # dir bootstrap-args... -- configure-args...
  local dir=$1 boot=() conf=()
  shift
  while [ $# -gt 0 ] && [ "$1" != -- ]; do boot+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  conf=("$@")
  cd "$dir"
  [ -x configure ] || run ./bootstrap.sh "${boot[@]}"
  [ -f config.status ] || run ./configure --prefix="$PREFIX" "${conf[@]}"
  run make -j"$JOBS"
  run make install
}

build_lib() {  # name commit result
  local name=$1 commit=$2 result=$PREFIX/$3
  if stamp_ok "$name" "$commit" && [ -e "$result" ]; then
    say "$name: installed in $PREFIX already ($result)"
    return
  fi
  say "$name: build and install into $PREFIX"
  (autotools_build "$WORKDIR/$name" -- --disable-static)
  [ -e "$result" ] || die "$name: make install did not produce $result"
  stamp "$name" "$commit"
}

build_freeswitch() {
  local dir=$WORKDIR/freeswitch wanted
  if stamp_ok freeswitch "$FS_COMMIT" && [ -x "$PREFIX/bin/freeswitch" ]; then
    say "freeswitch: installed in $PREFIX already"
    return
  fi
  wanted=$(printf '%s\n' "${MODULES[@]}")
  if [ ! -f "$dir/modules.conf" ] || [ "$(cat "$dir/modules.conf")" != "$wanted" ]; then
    say "freeswitch: modules.conf with ${#MODULES[@]} modules"
    echo "$wanted" > "$dir/modules.conf"
    rm -f "$dir/config.status"  # configure reads modules.conf: run it again
  fi
  say "freeswitch: build and install into $PREFIX"
  (autotools_build "$dir" -j -- --disable-libvpx --disable-libyuv)
  [ -x "$PREFIX/bin/freeswitch" ] || die "freeswitch: make install did not produce $PREFIX/bin/freeswitch"
  stamp freeswitch "$FS_COMMIT"
}

link_bin() {  # name
  local target=$PREFIX/bin/$1 link=$BINDIR/$1
  if [ -L "$link" ] && [ "$(readlink "$link")" = "$target" ]; then
    say "$link -> $target already"
  elif [ -e "$link" ] && [ ! -L "$link" ] && ! forced; then
    say "warning: $link exists and is not a link: left alone (FORCE=1 replaces it)" >&2
  else
    run ln -sfn "$target" "$link"
  fi
}

main() {
  case ${1:-} in
    -h | --help) usage; return 0 ;;
    "") ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  say "FreeSWITCH $FS_COMMIT, sofia-sip $SOFIA_COMMIT, spandsp $SPANDSP_COMMIT into $PREFIX" \
      "(work dir $WORKDIR, $JOBS jobs, FORCE=$FORCE)"
  install_deps
  mkdir -p "$WORKDIR" "$PREFIX" "$BINDIR"
  # Everything links against the prefix, and finds it at run time (rpath).
  export PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  export LDFLAGS="-Wl,-rpath,$PREFIX/lib${LDFLAGS:+ $LDFLAGS}"
  checkout "$SOFIA_REPO" "$SOFIA_COMMIT" sofia-sip
  checkout "$SPANDSP_REPO" "$SPANDSP_COMMIT" spandsp
  checkout "$FS_REPO" "$FS_COMMIT" freeswitch
  build_lib sofia-sip "$SOFIA_COMMIT" lib/pkgconfig/sofia-sip-ua.pc
  build_lib spandsp "$SPANDSP_COMMIT" lib/pkgconfig/spandsp.pc
  build_freeswitch
  link_bin freeswitch
  link_bin fs_cli
  run "$PREFIX/bin/freeswitch" -version
  say "done: $BINDIR/freeswitch, $BINDIR/fs_cli (modules in $PREFIX/lib/freeswitch/mod)"
}

main "$@"
