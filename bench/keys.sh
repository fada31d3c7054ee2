#!/usr/bin/env bash
# Signing-key propagation between two gateways on one Redis (docs/api.md, "Signing keys over time"): 50
# rotations on gateway A, each timed until gateway B's JWKS publishes the new
# keys, then revoked on A and timed until B withdraws them. Prints figures
# only; nothing here passes or fails on a time.
#   bash bench/keys.sh            N=50 to change
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-50}
cargo build --release --bin tessera --example key_propagation
TARGET=${CARGO_TARGET_DIR:-target}
BIN=$TARGET/release/tessera
PROP=$TARGET/release/examples/key_propagation
command -v redis-server >/dev/null 2>&1 || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
TMP=$(mktemp -d)
PIDS=()
# Gateways start inside $(...), a subshell: they leave their pid in
# $TMP/<name>/pid, since PIDS there would be lost (and they would outlive us).
cleanup() {
  local p
  for p in "${PIDS[@]}" $(cat "$TMP"/*/pid 2>/dev/null); do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

RPORT=$(free_port)
mkdir -p "$TMP/redis"
redis-server --port "$RPORT" --bind 127.0.0.1 --dir "$TMP/redis" --save '' --appendonly no > "$TMP/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.05; done

ADMIN_ID=bench-admin
ADMIN_SECRET=bench-admin-secret-0123456789abcdef
KEK=$("$BIN" keys kek)
start_gateway() { # name
  local name=$1 port; port=$(free_port)
  mkdir -p "$TMP/$name"
  TESSERA_REDIS_URL=redis://127.0.0.1:$RPORT/ TESSERA_KEK=$KEK TESSERA_LISTEN=127.0.0.1:$port \
  TESSERA_DATA_DIR=$TMP/$name/data TESSERA_KEYS_DIR=$TMP/$name/keys \
  TESSERA_ADMIN_APP_ID=$ADMIN_ID TESSERA_ADMIN_APP_SECRET=$ADMIN_SECRET TESSERA_LOG=warn \
    "$BIN" serve > "$TMP/$name/out.log" 2>&1 &
  PIDS+=($!)
  echo $! > "$TMP/$name/pid"
  for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.05; done
  echo "http://127.0.0.1:$port"
}
A=$(start_gateway a)
B=$(start_gateway b)
echo "== machine: $(nproc) cores; two gateways on one Redis; $N rotations (ES256 + RS256 each)"
"$PROP" "$A" "$B" "$ADMIN_ID" "$ADMIN_SECRET" "$N"
