#!/usr/bin/env bash
# Load benchmark: builds the production binaries, starts on loopback the held-key
# limit, the jsonwebtoken ceiling and gateways (embedded store and Redis),
# and measures them with wrk (64 connections by default) in alternating
# rounds, so that every figure of a round shares the machine's state.
# Prints figures and ratios only; nothing here passes or fails on a time.
#   bash bench/run.sh
#   DUR=10s CONNS=64 THREADS=2 ROUNDS=3 bash bench/run.sh
#   SECTIONS="exchange cold" bash bench/run.sh   (any of: exchange cold flood revocation micro)
#   PIN=1 bash bench/run.sh   (servers on the last core, wrk on the others)
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
SECTIONS=${SECTIONS:-exchange cold flood revocation micro}
# PIN=1: the servers (and Redis) run on the last core and the load
# generator on the others, so the two do not preempt each other: the
# ratios then compare CPU per request, and p99 is the server's own.
SRV=()
LOAD=()
if [[ ${PIN:-0} == 1 ]]; then
  LAST=$(( $(nproc) - 1 ))
  (( LAST >= 1 )) || { echo "PIN=1 needs at least 2 cores" >&2; exit 2; }
  SRV=(taskset -c "$LAST")
  LOAD=(taskset -c "0-$(( LAST - 1 ))")
fi
has() { [[ " $SECTIONS " == *" $1 "* ]]; }

if ! command -v wrk >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
# The production profile (fat LTO), as the container image ships; the limit
# and the ceiling are built the same way.
cargo build --profile production --bin tessera --example sign_ceiling --example held_key \
  --example revocation_latency --example propagation --example cluster_api
TARGET=${CARGO_TARGET_DIR:-target}
BIN=$TARGET/production/tessera
CEIL=$TARGET/production/examples/sign_ceiling
HELD=$TARGET/production/examples/held_key
LAT=$TARGET/production/examples/revocation_latency
PROP=$TARGET/production/examples/propagation
CLUSTER=$TARGET/production/examples/cluster_api
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

ADMIN_ID=bench-admin
ADMIN_SECRET=bench-admin-secret-0123456789abcdef
# Gateways on Redis keep their signing keys there, sealed with a KEK.
KEK=$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')
start_gateway() { # name, extra config toml, [redis url]
  local name=$1 port; port=$(free_port)
  mkdir -p "$TMP/$name"
  printf '%s\n' "$2" > "$TMP/$name/config.toml"
  TESSERA_REDIS_URL=${3:-} TESSERA_KEK=$KEK TESSERA_LISTEN=127.0.0.1:$port TESSERA_DATA_DIR=$TMP/$name/data TESSERA_KEYS_DIR=$TMP/$name/keys \
  TESSERA_ADMIN_APP_ID=$ADMIN_ID TESSERA_ADMIN_APP_SECRET=$ADMIN_SECRET TESSERA_LOG=warn \
    "${SRV[@]}" "$BIN" serve --config "$TMP/$name/config.toml" > "$TMP/$name/out.log" 2>&1 &
  PIDS+=($!)
  echo $! > "$TMP/$name/pid"
  for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.05; done
  echo "http://127.0.0.1:$port"
}
json_field() { python3 -c "import sys,json; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }
new_app() { # url [permissions json] -> "id secret"
  local admin body perms=${2:-'["api_keys:read"]'}
  admin=$(curl -sf "$1/api/v1/token" -H 'content-type: application/json' \
    -d "{\"AppId\":\"$ADMIN_ID\",\"AppSecret\":\"$ADMIN_SECRET\"}" | json_field accessToken)
  body=$(curl -sf "$1/api/v1/apps" -H "authorization: Bearer $admin" -H 'content-type: application/json' \
    -d "{\"name\":\"bench-$(date +%s%N)\",\"permissions\":$perms}")
  echo "$(echo "$body" | json_field id) $(echo "$body" | json_field secret)"
}
run_wrk() { # label url path body ctype [conns]
  # One request first, so "warm" means the secret is already verified.
  curl -s -o /dev/null -XPOST "$2$3" -H "content-type: $5" --data-binary "$4" || true
  local out; out=$(BODY=$4 CTYPE=$5 "${LOAD[@]}" wrk -t"$THREADS" -c"${6:-$CONNS}" -d"$DUR" --latency -s bench/post.lua "$2$3")
  local rps p50 p99 non2xx
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $5}')
  printf '%-52s %10s req/s   p50 %-9s p99 %-9s non-2xx %s\n' "$1" "$rps" "$p50" "$p99" "${non2xx:-0}"
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$rps" "$p50" "$p99" "${non2xx:-0}" >> "$TMP/rounds.tsv"
}

if [[ ${PIN:-0} == 1 ]]; then
  echo "== machine: $(nproc) cores; servers pinned to core $LAST, wrk -t$THREADS -c$CONNS -d$DUR pinned to cores 0-$(( LAST - 1 )), on loopback"
else
  echo "== machine: $(nproc) cores; wrk -t$THREADS -c$CONNS -d$DUR on loopback (load generator shares the cores)"
fi
HPORT=$(free_port)
"${SRV[@]}" "$HELD" "127.0.0.1:$HPORT" > "$TMP/held.log" 2>&1 &
PIDS+=($!)
CPORT=$(free_port)
"${SRV[@]}" "$CEIL" "127.0.0.1:$CPORT" > "$TMP/ceiling.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 200); do curl -sf -XPOST "http://127.0.0.1:$CPORT/token" >/dev/null && break; sleep 0.05; done
for _ in $(seq 1 200); do curl -sf -XPOST "http://127.0.0.1:$HPORT/api/v1/token" -H 'content-type: application/json' -d '{"AppSecret":"x"}' >/dev/null && break; sleep 0.05; done

WARM=$(start_gateway warm "")
read -r ID SECRET <<< "$(new_app "$WARM")"
COLD=$(start_gateway cold "secret_cache_ttl = 0")
read -r CID CSECRET <<< "$(new_app "$COLD")"
OPEN=$(start_gateway open "max_failures_per_ip = 1000000000")
read -r OID OSECRET <<< "$(new_app "$OPEN")"
RPORT=$(free_port)
mkdir -p "$TMP/redis"
"${SRV[@]}" redis-server --port "$RPORT" --bind 127.0.0.1 --dir "$TMP/redis" --appendonly yes --save "" > "$TMP/redis/log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
REDIS_URL=redis://127.0.0.1:$RPORT/
SHARED=$(start_gateway shared "redis_prefix = \"bench:\"
[[permissions]]
name = \"workloads:read\"" "$REDIS_URL")
read -r RID RSECRET <<< "$(new_app "$SHARED" '["tokens:revoke","tokens:introspect"]')"
read -r SID SSECRET <<< "$(new_app "$SHARED")"

if has exchange; then
  # The same request shapes against the limit and the gateways. The key
  # alone is the AppSecret (it carries its application id).
  JBODY="{\"grantType\":\"app_token\",\"AppSecret\":\"$SECRET\"}"
  FBODY="grant_type=client_credentials&client_id=$ID&client_secret=$SECRET"
  RJBODY="{\"grantType\":\"app_token\",\"AppSecret\":\"$SSECRET\"}"
  RFBODY="grant_type=client_credentials&client_id=$SID&client_secret=$SSECRET"
  FORM=application/x-www-form-urlencoded
  for round in $(seq 1 "$ROUNDS"); do
    echo "-- round $round of $ROUNDS"
    run_wrk "limit: held key, JSON body" "http://127.0.0.1:$HPORT" /api/v1/token "$JBODY" application/json
    run_wrk "warm POST /api/v1/token (embedded)" "$WARM" /api/v1/token "$JBODY" application/json
    run_wrk "warm POST /api/v1/token (Redis)" "$SHARED" /api/v1/token "$RJBODY" application/json
    run_wrk "limit: held key, form body" "http://127.0.0.1:$HPORT" /oauth/token "$FBODY" $FORM
    run_wrk "warm POST /oauth/token (embedded)" "$WARM" /oauth/token "$FBODY" $FORM
    run_wrk "warm POST /oauth/token (Redis)" "$SHARED" /oauth/token "$RFBODY" $FORM
    run_wrk "ceiling: jsonwebtoken::encode per request" "http://127.0.0.1:$CPORT" /token "" application/json
  done
  python3 - "$TMP/rounds.tsv" <<'PY'
import statistics, sys
rows = {}
def ms(v):
    for unit, f in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if v.endswith(unit):
            return float(v[: -len(unit)]) * f
    return float("nan")
for line in open(sys.argv[1]):
    label, rps, p50, p99, bad = line.rstrip("\n").split("\t")
    rows.setdefault(label, []).append((float(rps), ms(p50), ms(p99), int(bad)))
print("== exchange: median of the rounds (p99: the worst round)")
med = {}
for label, rs in rows.items():
    med[label] = statistics.median(r[0] for r in rs)
    print(f"{label:<52} {med[label]:10.0f} req/s   p50 {statistics.median(r[1] for r in rs):6.2f} ms"
          f"   p99 {max(r[2] for r in rs):6.2f} ms   non-2xx {sum(r[3] for r in rs)}")
lj, lf = med["limit: held key, JSON body"], med["limit: held key, form body"]
for store in ("embedded", "Redis"):
    print(f"ratio to the held-key limit ({store}): /api/v1/token "
          f"{med[f'warm POST /api/v1/token ({store})'] / lj:.2f}, /oauth/token "
          f"{med[f'warm POST /oauth/token ({store})'] / lf:.2f} (target 0.85)")
print(f"jsonwebtoken::encode ceiling / held-key limit: {med['ceiling: jsonwebtoken::encode per request'] / lj:.2f}")
PY
fi

if has cold; then
  echo "== cold: argon2id every time, then the first exchange of ${COLD_APPS:-64} distinct applications at once"
  run_wrk "cold POST /api/v1/token (secret_cache_ttl = 0)" "$COLD" /api/v1/token \
    "{\"grantType\":\"app_token\",\"AppSecret\":\"$CSECRET\"}" application/json
  python3 bench/cold.py "$WARM" "$ADMIN_ID" "$ADMIN_SECRET" "${COLD_APPS:-64}"
fi

if has flood; then
for gw in warm open; do
  case $gw in
    warm) URL=$WARM; AID=$ID; S=$SECRET; LABEL="limiter on";;
    open) URL=$OPEN; AID=$OID; S=$OSECRET; LABEL="limiter off: every guess costs argon2";;
  esac
  BODY="{\"AppId\":\"$AID\",\"AppSecret\":\"wrong-secret-wrong-secret\"}" CTYPE=application/json \
    wrk -t1 -c32 -d"$DUR" -s bench/post.lua "$URL/api/v1/token" > "$TMP/flood_$gw.log" &
  FLOOD=$!
  sleep 1
  run_wrk "warm /api/v1/token, 32 conns, during flood ($LABEL)" "$URL" /api/v1/token \
    "{\"grantType\":\"app_token\",\"AppSecret\":\"$S\"}" application/json 32
  wait $FLOOD || true
  echo "    the flood itself ($LABEL): $(awk '/Requests\/sec/ {print $2}' "$TMP/flood_$gw.log") req/s, non-2xx $(awk '/Non-2xx/ {print $5}' "$TMP/flood_$gw.log")"
done

fi

if has revocation; then
echo "== revocation visibility (Redis backend, ${REVOCATIONS:-200} revocations)"
"$LAT" "$SHARED" "$REDIS_URL" "bench:" "$RID" "$RSECRET" "${REVOCATIONS:-200}"

echo "== propagation to cluster_api (${PROPAGATIONS:-200} revocations; feed polled every 500 ms)"
admin=$(curl -sf "$SHARED/api/v1/token" -H 'content-type: application/json' \
  -d "{\"AppId\":\"$ADMIN_ID\",\"AppSecret\":\"$ADMIN_SECRET\"}" | json_field accessToken)
body=$(curl -sf "$SHARED/api/v1/apps" -H "authorization: Bearer $admin" -H 'content-type: application/json' \
  -d '{"name":"propagation","permissions":["tokens:revoke","tokens:introspect"],"audiences":["cluster-api"],"accessRules":[{"scope":"cluster:c1","permissions":["workloads:read"]}]}')
PAPP=$(echo "$body" | json_field id); PSECRET=$(echo "$body" | json_field secret)
C1=$(free_port); C2=$(free_port)
"$CLUSTER" --listen 127.0.0.1:$C1 --gateway "$SHARED" --audience cluster-api --redis "$REDIS_URL" --redis-prefix bench: > "$TMP/c1.log" 2>&1 &
PIDS+=($!)
TESSERA_APP_ID=$PAPP TESSERA_APP_SECRET=$PSECRET "$CLUSTER" --listen 127.0.0.1:$C2 --gateway "$SHARED" --audience cluster-api > "$TMP/c2.log" 2>&1 &
PIDS+=($!)
sleep 1
"$PROP" "$SHARED" "$PAPP" "$PSECRET" "${PROPAGATIONS:-200}" "cluster_api(redis)=http://127.0.0.1:$C1" "cluster_api(feed)=http://127.0.0.1:$C2"

fi

if has micro; then
echo "== micro-benchmarks"
cargo bench --quiet --bench mint 2>/dev/null | grep -v '^$' || true
cargo bench --quiet --bench verify 2>/dev/null | grep -v '^$' || true

fi
