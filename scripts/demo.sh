#!/usr/bin/env bash
# make demo: validate and render every shipped inventory (each Kamailio config checked by
# the real kamailio), then run the lab platform on loopback and show it answering.
set -euo pipefail
cd "$(dirname "$0")/.."
ZPCTL=.venv/bin/zpctl
export ZPCTL_SECRETS="${ZPCTL_SECRETS:-$HOME/.config/zpctl/secrets/demo.yml}"

echo "== 1. validate the shipped inventories"
for inv in inventories/*/; do
  $ZPCTL inventory validate "${inv%/}"
done

echo
echo "== 2. render them (kamailio -c on every Kamailio config)"
for inv in inventories/*/; do
  name=$(basename "$inv")
  $ZPCTL render "inventories/$name" -o "build/$name"
done

echo
echo "== 3. run the lab platform (inventories/lab) on loopback"
$ZPCTL lab up inventories/lab >/dev/null
$ZPCTL lab status

echo
echo "== 4. every Kamailio node answers SIP OPTIONS (UDP) and JSON-RPC"
.venv/bin/python - <<'PY'
from zpctl.clients.kamailio import KamailioRpc
from zpctl.clients.probes import sip_options
from zpctl.model import load_inventory
inv = load_inventory("inventories/lab")
for p in inv.nodes():
    if p.role.value not in ("lb", "proxy", "sbc"):
        continue
    r = sip_options(p.node.address, p.node.ports.sip)
    up = KamailioRpc(f"http://{p.node.mgmt}:{p.node.ports.mgmt_http}/RPC").call("core.uptime")
    print(f"  {p.name:<14} {p.role.value:<6} OPTIONS sip:{p.node.address}:{p.node.ports.sip}"
          f" -> {r.status} {r.reason}; JSON-RPC core.uptime -> {up['uptime']} s")
PY

echo
echo "The lab keeps running.  Look around:  .venv/bin/zpctl lab status | logs NODE"
echo "Stop it with:                         .venv/bin/zpctl lab down"
