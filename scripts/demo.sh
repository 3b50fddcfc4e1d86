#!/usr/bin/env bash
# make demo: validate and render every shipped inventory (each Kamailio config checked by
# the real kamailio), run the lab platform on loopback, place real calls through it and
# leave it running.
set -euo pipefail
cd "$(dirname "$0")/.."
ZPCTL=.venv/bin/zpctl
export ZPCTL_SECRETS="${ZPCTL_SECRETS:-$HOME/.config/zpctl/secrets/demo.yml}"

echo "== 1. validate the shipped inventories"
for inv in inventories/*/; do
  $ZPCTL inventory validate "${inv%/}"
done

echo
echo "== 2. render them (kamailio -c on every Kamailio config; the lab's switch configs"
echo "      started in scratch FreeSWITCH instances; us01's 64 take about 30 s more:"
echo "      zpctl render inventories/us01 does it)"
for inv in inventories/*/; do
  name=$(basename "$inv")
  check=()
  [ "$name" = lab ] || check=(--no-switch-check)
  $ZPCTL render "inventories/$name" --out "build/$name" "${check[@]}"
done

echo
echo "== 3. run the lab platform (inventories/lab) on loopback"
$ZPCTL lab up inventories/lab >/dev/null

echo
echo "== 4. real calls through it (SIPp phones, carriers, a BYOC-P premises SBC over mutual TLS)"
$ZPCTL lab demo

echo
$ZPCTL lab status

echo
echo "The lab keeps running.  Look around:  .venv/bin/zpctl lab status | logs NODE"
echo "Place a call by hand:                 see docs/LAB.md"
echo "Stop it with:                         .venv/bin/zpctl lab down"
