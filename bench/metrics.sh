#!/usr/bin/env bash
# What metrics and access logs cost: the warm exchange (POST /api/v1/token,
# secret already verified) on three gateways started side by side from one
# release build, measured one after the other, twice each, interleaved:
#   metrics on  (the default), logs at warn
#   metrics off (TESSERA_METRICS=off), logs at warn
#   metrics on, access log at INFO written to a file
# Prints figures only; nothing here passes or fails on a time.
#   bash bench/metrics.sh        DUR=8s CONNS=64 THREADS=2 ROUNDS=2 LOG_FORMAT=json to change
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-8s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-2}

if ! command -v wrk >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
cargo build --release --bin tessera
TARGET=${CARGO_TARGET_DIR:-target}
BIN=$TARGET/release/tessera

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
TMP=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

ADMIN_ID=bench-admin
ADMIN_SECRET=bench-admin-secret-0123456789abcdef
# Not in a $(…) subshell: its PID must reach PIDS, or the gateway outlives
# the script. The URL is left in GW, the process id in GWPID.
start_gateway() { # name, metrics on|off, log filter
  local name=$1 port; port=$(free_port)
  mkdir -p "$TMP/$name"
  TESSERA_METRICS=$2 TESSERA_LOG=$3 TESSERA_LOG_FORMAT=${LOG_FORMAT:-json} \
  TESSERA_LISTEN=127.0.0.1:$port TESSERA_DATA_DIR=$TMP/$name/data TESSERA_KEYS_DIR=$TMP/$name/keys \
  TESSERA_ADMIN_APP_ID=$ADMIN_ID TESSERA_ADMIN_APP_SECRET=$ADMIN_SECRET \
    "$BIN" serve > "$TMP/$name/out.log" 2> "$TMP/$name/err.log" &
  PIDS+=($!)
  GWPID=$!
  for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.05; done
  GW="http://127.0.0.1:$port"
}
json_field() { python3 -c "import sys,json; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }
new_secret() { # url -> secret of a new application
  local admin
  admin=$(curl -sf "$1/api/v1/token" -H 'content-type: application/json' \
    -d "{\"AppId\":\"$ADMIN_ID\",\"AppSecret\":\"$ADMIN_SECRET\"}" | json_field accessToken)
  curl -sf "$1/api/v1/apps" -H "authorization: Bearer $admin" -H 'content-type: application/json' \
    -d '{"name":"bench","permissions":["api_keys:read"]}' | json_field secret
}
TICK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run_wrk() { # label url secret pid
  local body="{\"grantType\":\"app_token\",\"AppSecret\":\"$3\"}"
  # One request first, so "warm" means the secret is already verified.
  curl -s -o /dev/null -XPOST "$2/api/v1/token" -H 'content-type: application/json' --data-binary "$body" || true
  local t0; t0=$(cpu_ticks "$4")
  local out; out=$(BODY=$body CTYPE=application/json wrk -t"$THREADS" -c"$CONNS" -d"$DUR" --latency -s bench/post.lua "$2/api/v1/token")
  local rps p50 p99 non2xx
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $5}')
  # The gateway's own CPU per request: steadier than req/s on a shared machine.
  local reqs cpu; reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  cpu=$(awk -v t="$(( $(cpu_ticks "$4") - t0 ))" -v hz="$TICK" -v n="$reqs" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
  printf '%-44s %10s req/s   p50 %-9s p99 %-9s non-2xx %-4s gateway CPU %s us/req\n' "$1" "$rps" "$p50" "$p99" "${non2xx:-0}" "$cpu"
}

echo "== machine: $(nproc) cores; wrk -t$THREADS -c$CONNS -d$DUR on loopback (load generator shares the cores)"
start_gateway on on warn; ON=$GW; P_ON=$GWPID
start_gateway off off warn; OFF=$GW; P_OFF=$GWPID
start_gateway logged on "warn,tessera::access=info"; LOGGED=$GW; P_LOGGED=$GWPID
S_ON=$(new_secret "$ON")
S_OFF=$(new_secret "$OFF")
S_LOGGED=$(new_secret "$LOGGED")
for round in $(seq 1 "$ROUNDS"); do
  run_wrk "[$round] warm /api/v1/token, metrics on" "$ON" "$S_ON" "$P_ON"
  run_wrk "[$round] warm /api/v1/token, metrics off" "$OFF" "$S_OFF" "$P_OFF"
  run_wrk "[$round] warm, metrics on + access log to a file" "$LOGGED" "$S_LOGGED" "$P_LOGGED"
done
echo "access lines written by the logged gateway: $(grep -c '"tessera::access"' "$TMP/logged/err.log" || true)"
