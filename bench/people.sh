#!/usr/bin/env bash
# People's figures (docs/api.md, "People"): sign-in latency (argon2-bound), the refresh
# grant against the warm client_credentials exchange in the same run, and
# what sessions and refresh families cost in each store. Prints figures
# only; nothing here passes or fails on a time.
#   bash bench/people.sh          DUR=10s CONNS=32 THREADS=2 to change
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-10s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}

if ! command -v wrk >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
command -v redis-server >/dev/null 2>&1 || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; }
cargo build --release --bin tessera --example session_memory
TARGET=${CARGO_TARGET_DIR:-target}
BIN=$TARGET/release/tessera

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
TMP=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

ADMIN_ID=bench-admin
ADMIN_SECRET=bench-admin-secret-0123456789abcdef
EMAIL=bench@example.com
PASSWORD=bench-password-0123456789
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
# A long refresh grace lets every wrk request present the same refresh
# token (each one still rotates: a new token is stored per request).
# Sign-ins are counted per address: open the limiter for the load test.
cat > "$TMP/config.toml" <<'TOML'
[people]
refresh_grace = 300
signin_failures_per_ip = 1000000
signin_failures_per_account = 1000000
TOML
TESSERA_LISTEN=127.0.0.1:$PORT TESSERA_DATA_DIR=$TMP/data TESSERA_KEYS_DIR=$TMP/keys \
  TESSERA_ADMIN_APP_ID=$ADMIN_ID TESSERA_ADMIN_APP_SECRET=$ADMIN_SECRET \
  TESSERA_ADMIN_EMAIL=$EMAIL TESSERA_ADMIN_PASSWORD=$PASSWORD TESSERA_LOG=warn \
  "$BIN" serve --config "$TMP/config.toml" > "$TMP/out.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 200); do curl -sf "$URL/healthz" >/dev/null && break; sleep 0.05; done

json_field() { python3 -c "import sys,json; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }
run_wrk() { # label path body ctype [conns]
  curl -s -o /dev/null -XPOST "$URL$2" -H "content-type: $4" --data-binary "$3" || true
  local out; out=$(BODY=$3 CTYPE=$4 wrk -t"$THREADS" -c"${5:-$CONNS}" -d"$DUR" --latency -s bench/post.lua "$URL$2")
  local rps p50 p99 non2xx
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $5}')
  printf '%-48s %10s req/s   p50 %-9s p99 %-9s non-2xx %s\n' "$1" "$rps" "$p50" "$p99" "${non2xx:-0}"
}

echo "== $(nproc) cores; wrk -t$THREADS -c$CONNS -d$DUR on loopback (the load generator shares the cores)"
ADMIN=$(curl -sf "$URL/api/v1/token" -H 'content-type: application/json' \
  -d "{\"AppId\":\"$ADMIN_ID\",\"AppSecret\":\"$ADMIN_SECRET\"}" | json_field accessToken)
APP=$(curl -sf "$URL/api/v1/apps" -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"name":"bench","permissions":["api_keys:read"]}')
SECRET=$(echo "$APP" | json_field secret)
LOGIN="{\"grantType\":\"password\",\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}"
RT=$(curl -sf "$URL/api/v1/token" -H 'content-type: application/json' -d "$LOGIN" | json_field refreshToken)
# Token exchange: a client listing the grant exchanges one application token
# (default TTL 600 s: keep the runs before it shorter than that in total).
XSECRET=$(curl -sf "$URL/api/v1/apps" -H "authorization: Bearer $ADMIN" -H 'content-type: application/json' \
  -d '{"name":"bench-exchange","grantTypes":["urn:ietf:params:oauth:grant-type:token-exchange"]}' | json_field secret)
SUBJECT=$(curl -sf "$URL/api/v1/token" -H 'content-type: application/json' \
  -d "{\"AppSecret\":\"$SECRET\"}" | json_field accessToken)
TX="grant_type=urn:ietf:params:oauth:grant-type:token-exchange&client_secret=$XSECRET"
TX="$TX&subject_token=$SUBJECT&subject_token_type=urn:ietf:params:oauth:token-type:access_token"

run_wrk "sign-in (password grant, argon2id)" /api/v1/token "$LOGIN" application/json 4
run_wrk "sign-in, 32 connections (queue on the pool)" /api/v1/token "$LOGIN" application/json 32
run_wrk "warm client_credentials /oauth/token" /oauth/token \
  "grant_type=client_credentials&client_secret=$SECRET" application/x-www-form-urlencoded
run_wrk "token exchange (warm client, one subject) /oauth/token" /oauth/token "$TX" application/x-www-form-urlencoded
run_wrk "refresh_token grant /oauth/token" /oauth/token \
  "grant_type=refresh_token&client_id=tessera-cli&refresh_token=$RT" application/x-www-form-urlencoded
run_wrk "refresh_token grant /api/v1/token" /api/v1/token \
  "{\"grantType\":\"refresh_token\",\"refreshToken\":\"$RT\"}" application/json

echo "== sessions and refresh families at rest"
"$TARGET/release/examples/session_memory" "${SESSIONS:-2000}" both
