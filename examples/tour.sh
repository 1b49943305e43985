#!/usr/bin/env bash
# The README's five-minute tour, as a script: a token, then `flowbus call` and `curl` against
# inventory/device. Needs a running bus; FLOWBUS_URL and FLOWBUS_HTTP say where (defaults: the
# `make serve` ports) and FLOWBUS_PASSWORD is the admin's password.
set -euo pipefail
WS=${FLOWBUS_URL:-ws://127.0.0.1:8765}
HTTP=${FLOWBUS_HTTP:-http://127.0.0.1:8080}

# Log in: `flowbus token` asks for the password, or reads FLOWBUS_PASSWORD.
export FLOWBUS_TOKEN=$(flowbus token --user admin --url "$WS")
# The same over HTTP, with Basic auth:
curl -s --fail-with-body -u "admin:$FLOWBUS_PASSWORD" -X POST -H 'Content-Type: application/json' \
     -d "{\"username\": \"admin\", \"password\": \"$FLOWBUS_PASSWORD\"}" "$HTTP/api/auth/auth/token/" > /dev/null

# Create a device over websockets (flowbus call reads FLOWBUS_TOKEN) and keep its id.
ID=$(flowbus call inventory/device CREATE --url "$WS" --data '{"name": "core-sw-1", "location": "lab"}' \
     | python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["id"])')
echo "created $ID"

# Open it over HTTP: the last path segment is the object id.
curl -s --fail-with-body -H "Flow-Auth-Token: $FLOWBUS_TOKEN" "$HTTP/api/inventory/inventory/device/$ID"; echo

# Change one field over HTTP (POST with an object id means UPDATE), with Basic auth this time.
curl -s --fail-with-body -u "admin:$FLOWBUS_PASSWORD" -X POST -H 'Content-Type: application/json' \
     -d '{"location": "rack 4"}' "$HTTP/api/inventory/inventory/device/$ID"; echo

# List devices (the trailing / means the endpoint itself), two per page.
curl -s --fail-with-body -H "Flow-Auth-Token: $FLOWBUS_TOKEN" "$HTTP/api/inventory/inventory/device/?limit=2"; echo

# Search over websockets, then delete.
flowbus call inventory/device INDEX --url "$WS" --param q=core
flowbus call inventory/device DELETE --url "$WS" --objectid "$ID"

# Opening it again fails with DO_NOT_EXIST, and `flowbus call` exits 1.
if ! flowbus call inventory/device OPEN --url "$WS" --objectid "$ID"; then echo "gone, as expected"; fi

# A flow in three calls: define it, start it (wait=true answers once it waits), approve it.
# (Run twice, the definition exists already: CONFLICT, and the tour goes on with it.)
flowbus call flows/flow CREATE --url "$WS" --data @examples/device_approval.json > /dev/null || true
flowbus call flows/flow RUN --url "$WS" --objectid device-approval --data '{"name": "tour-sw"}' --param wait=true
flowbus call flows/event RUN --url "$WS" --objectid approve --data '{"input": {"ok": true}}'
