#!/usr/bin/env bash
# Edge benchmark (docs/api.md, "At the edge", issue 13): builds release binaries once, starts
# on loopback a bare actix-web echo (examples/edge_echo, bench/echo.rs), a
# gateway on its embedded store with default settings, and nginx in front
# of both, then measures with wrk (64 connections by default):
#   1. the bare echo;  2. /auth/forward with a cached raw key;
#   3. /auth/forward with an access token;  4. nginx -> echo and
#   nginx -> auth_request /auth/forward -> echo, and their difference;
#   5. (2) on a gateway on Redis with a rate limit, when the build has one.
# Prints figures only; nothing here passes or fails on a time.
#   bash bench/edge.sh            DUR=10s CONNS=64 THREADS=2 to change;
#   BUILD_LOCK=/work/cargo.lock to take that lock around the build;
#   PROFILE=1 to sample the /auth/forward runs with perf (when installed);
#   BIN=<binary> for another gateway build.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}

need() { # command, Debian package
  command -v "$1" >/dev/null 2>&1 && return 0
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "$2" >/dev/null
}
need wrk wrk
need redis-server redis-server
# Debian's nginx ships the auth_request module in its main binary.
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || need nginx nginx
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

${BUILD_LOCK:+flock "$BUILD_LOCK"} cargo build --release --bin tessera --example edge_echo
TARGET=${CARGO_TARGET_DIR:-target}
# BIN=<binary> measures another gateway build (the echo is still built here).
BIN=${BIN:-$TARGET/release/tessera}
ECHO=$TARGET/release/examples/edge_echo

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
TMP=$(mktemp -d)
PIDS=()
# Servers started inside $(...) run in a subshell: they leave their pid in
# $TMP/<name>/pid, since PIDS there would be lost.
cleanup() {
  local p
  for p in "${PIDS[@]}" $(cat "$TMP"/*/pid 2>/dev/null); do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Starts a server in the background without the descriptors the script
# inherited: run under `flock`, a server left behind would hold the lock.
spawn() { "$@" 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- & }

ADMIN_ID=bench-admin
ADMIN_SECRET=bench-admin-secret-0123456789abcdef
# Gateways on Redis keep their signing keys there, sealed with a KEK.
KEK=$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')
start_gateway() { # name, extra config toml, [redis url] -> base url
  local name=$1 port; port=$(free_port)
  mkdir -p "$TMP/$name"
  printf '%s\n' "$2" > "$TMP/$name/config.toml"
  TESSERA_REDIS_URL=${3:-} TESSERA_KEK=$KEK TESSERA_LISTEN=127.0.0.1:$port TESSERA_DATA_DIR=$TMP/$name/data TESSERA_KEYS_DIR=$TMP/$name/keys \
  TESSERA_ADMIN_APP_ID=$ADMIN_ID TESSERA_ADMIN_APP_SECRET=$ADMIN_SECRET TESSERA_LOG=warn \
    spawn "$BIN" serve --config "$TMP/$name/config.toml" > "$TMP/$name/out.log" 2>&1
  echo $! > "$TMP/$name/pid"
  for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.05; done
  echo "http://127.0.0.1:$port"
}
json_field() { python3 -c "import sys,json; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }
admin_token() {
  curl -sf "$1/api/v1/token" -H 'content-type: application/json' \
    -d "{\"AppId\":\"$ADMIN_ID\",\"AppSecret\":\"$ADMIN_SECRET\"}" | json_field accessToken
}
new_app() { # url [extra json fields] -> "id secret" (nothing when refused)
  local body
  body=$(curl -sf "$1/api/v1/apps" -H "authorization: Bearer $(admin_token "$1")" -H 'content-type: application/json' \
    -d "{\"name\":\"edge-bench\",\"permissions\":[\"api_keys:read\"]${2:-}}") || return 0
  echo "$(echo "$body" | json_field id) $(echo "$body" | json_field secret)"
}
status_of() { # url [curl args...] -> the HTTP status of one GET
  local url=$1; shift
  curl -s -o /dev/null -w '%{http_code}' "$url" "$@" || true
}
# One wrk run (GET; headers as further arguments); prints a table row and
# leaves "rps p50_us p99_us" in $TMP/<key>.
run_wrk() { # key label url conns [curl/wrk -H header...]
  local key=$1 label=$2 url=$3 conns=$4; shift 4
  local hdr=() h
  for h in "$@"; do hdr+=(-H "$h"); done
  # One request first: the raw key's token is minted and cached by it.
  curl -s -o /dev/null "${hdr[@]}" "$url" || true
  local line rps p50 p99 bad sock
  line=$(wrk -t"$(( conns < THREADS ? conns : THREADS ))" -c"$conns" -d"$DUR" -s bench/edge.lua "${hdr[@]}" "$url" | grep '^EDGE ')
  read -r _ rps p50 p99 bad sock <<< "$line"
  echo "$rps $p50 $p99" > "$TMP/$key"
  awk -v l="$label" -v r="$rps" -v a="$p50" -v b="$p99" -v n="$bad" -v s="$sock" 'BEGIN {
    printf "%-50s %8s req/s  p50 %6.2f ms  p99 %6.2f ms  non-2xx %s%s\n", l, r, a / 1000, b / 1000, n,
      (s != 0 ? "  socket errors " s : "") }'
}

echo "== machine: $(nproc) cores shared by wrk, the servers and nginx; wrk -t$THREADS -d$DUR on loopback"
EPORT=$(free_port)
spawn "$ECHO" "127.0.0.1:$EPORT" > "$TMP/echo.log" 2>&1
PIDS+=($!)
for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$EPORT/" >/dev/null && break; sleep 0.05; done
ECHO_URL=http://127.0.0.1:$EPORT

GW=$(start_gateway embedded "")
read -r ID SECRET <<< "$(new_app "$GW")"
TOKEN=$(curl -sf "$GW/api/v1/token" -H 'content-type: application/json' \
  -d "{\"grantType\":\"app_token\",\"AppSecret\":\"$SECRET\"}" | json_field accessToken)
# Both credentials must pass, and a wrong one must not: a bench of 401s
# would measure nothing.
for c in "Authorization: Bearer $SECRET" "Authorization: Bearer $TOKEN" "X-Api-Key: $SECRET"; do
  s=$(status_of "$GW/auth/forward" -H "$c")
  [ "$s" = 200 ] || { echo "forward auth answered $s to a good credential" >&2; exit 1; }
done
s=$(status_of "$GW/auth/forward" -H "Authorization: Bearer ${SECRET}x")
[ "$s" = 401 ] || { echo "forward auth answered $s to a wrong key" >&2; exit 1; }

NDIR=$TMP/nginx
mkdir -p "$NDIR"
NDIRECT=$(free_port); NAUTH=$(free_port)
sed -e "s|@DIR@|$NDIR|g" -e "s|@ECHO@|127.0.0.1:$EPORT|" -e "s|@GATEWAY@|${GW#http://}|" \
  -e "s|@DIRECT@|127.0.0.1:$NDIRECT|" -e "s|@AUTH@|127.0.0.1:$NAUTH|" bench/edge-nginx.conf > "$NDIR/nginx.conf"
# nginx's workers drop to an unprivileged user when started as root.
chmod 755 "$TMP" "$NDIR"
spawn "$NGINX" -p "$NDIR" -c "$NDIR/nginx.conf" -e "$NDIR/error.log" -g 'daemon off;'
PIDS+=($!)
for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$NDIRECT/" >/dev/null && break; sleep 0.05; done
s=$(status_of "http://127.0.0.1:$NAUTH/x" -H "Authorization: Bearer $SECRET")
[ "$s" = 200 ] || { echo "nginx with auth_request answered $s to a good key" >&2; cat "$NDIR/error.log" >&2; exit 1; }
s=$(status_of "http://127.0.0.1:$NAUTH/x")
[ "$s" = 401 ] || { echo "nginx with auth_request answered $s without a key" >&2; exit 1; }

echo "== $CONNS connections (gateway: embedded store, default settings; echo and gateway $(nproc) workers each)"
run_wrk echo "bare actix-web JSON echo" "$ECHO_URL/" "$CONNS"
# PROFILE=1: perf samples the whole machine during a run, then prints the
# share of each program (wrk included: it shares the cores), the gateway's
# split between its code, libc and the kernel, and its hottest symbols (self
# time; a release build keeps its symbols).
PERF=
prof_start() {
  [ "${PROFILE:-0}" = 1 ] && command -v perf >/dev/null 2>&1 || return 0
  perf record -a -F 999 -o "$TMP/perf.$1" -- sleep "${DUR%s}" >/dev/null 2>&1 &
  PERF=$!
}
prof_report() {
  [ -n "$PERF" ] || return 0
  wait "$PERF" || true
  PERF=
  local data=$TMP/perf.$1 gw; gw=$(cat "$TMP/embedded/pid")
  # awk reads to the end: `head` would stop perf with SIGPIPE, and pipefail
  # would end the script.
  rows() { awk -v n="$1" '/^ +[0-9]/ && ++i <= n { print "   " substr($0, 1, 150) }'; }
  echo "   perf, whole machine during that run, by program:"
  perf report -i "$data" --no-children --sort comm --stdio 2>/dev/null | rows 8
  perf report -i "$data" --pid "$gw" --percentage relative --no-children --sort dso,symbol --stdio \
    > "$data.gw" 2>/dev/null || true
  echo "   perf, the gateway alone, by object:"
  awk '/^ +[0-9]/ { sub("%", "", $1); s[$2] += $1 } END { for (k in s) printf "   %8.2f%%  %s\n", s[k], k }' \
    "$data.gw" | sort -rn | head -5 || true
  echo "   perf, the gateway alone, self time by symbol (top ${PROFILE_TOP:-30}):"
  rows "${PROFILE_TOP:-30}" < "$data.gw"
}
prof_start key
run_wrk key "/auth/forward, cached raw key" "$GW/auth/forward" "$CONNS" "Authorization: Bearer $SECRET"
prof_report key
prof_start token
run_wrk token "/auth/forward, access token" "$GW/auth/forward" "$CONNS" "Authorization: Bearer $TOKEN"
prof_report token
run_wrk ndirect "nginx -> echo" "http://127.0.0.1:$NDIRECT/api/items" "$CONNS"
run_wrk nauth "nginx -> auth_request /auth/forward -> echo" "http://127.0.0.1:$NAUTH/api/items" "$CONNS" \
  "Authorization: Bearer $SECRET"
echo "== 1 connection (latency without queueing)"
run_wrk ndirect1 "nginx -> echo" "http://127.0.0.1:$NDIRECT/api/items" 1
run_wrk nauth1 "nginx -> auth_request /auth/forward -> echo" "http://127.0.0.1:$NAUTH/api/items" 1 \
  "Authorization: Bearer $SECRET"

# Optional: the same cached key on a gateway on Redis whose application has
# a budget (well above what the run can use), once the rate limiter is in:
# without it the application cannot be given one, or no budget is reported.
RPORT=$(free_port)
mkdir -p "$TMP/redis"
spawn redis-server --port "$RPORT" --bind 127.0.0.1 --dir "$TMP/redis" --save "" > "$TMP/redis/log" 2>&1
PIDS+=($!)
for _ in $(seq 1 100); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
SHARED=$(start_gateway redis 'redis_prefix = "edge:"' "redis://127.0.0.1:$RPORT/")
read -r RID RSECRET <<< "$(new_app "$SHARED" ',"rateLimit":{"requests":1000000,"per":"1m"}')"
if [ -n "${RSECRET:-}" ] && curl -s -D - -o /dev/null "$SHARED/auth/forward" -H "Authorization: Bearer $RSECRET" \
    | grep -qi '^ratelimit-policy:'; then
  echo "== Redis backend, rateLimit 1000000 per 1m"
  run_wrk limited "/auth/forward, cached raw key, rate limited" "$SHARED/auth/forward" "$CONNS" \
    "Authorization: Bearer $RSECRET"
else
  echo "== Redis backend with a rate limit: skipped (this build has no rate limiter: no RateLimit-Policy answered)"
fi

python3 - "$TMP" "$CONNS" <<'PY'
import os, sys
d, conns = sys.argv[1], sys.argv[2]
def row(k):
    p = os.path.join(d, k)
    return tuple(map(float, open(p).read().split())) if os.path.exists(p) else None
echo, key, tok = row("echo"), row("key"), row("token")
nd, na, nd1, na1 = row("ndirect"), row("nauth"), row("ndirect1"), row("nauth1")
ms = lambda us: us / 1000
print("== summary")
print(f"cached key / bare echo:   {key[0]/echo[0]:.2f}x  (target >= 0.5x); p99 {ms(key[2]):.2f} ms "
      f"({'under' if key[2] < 5000 else 'NOT under'} 5 ms)")
print(f"access token / bare echo: {tok[0]/echo[0]:.2f}x; p99 {ms(tok[2]):.2f} ms "
      f"({'under' if tok[2] < 5000 else 'NOT under'} 5 ms)")
print(f"auth_request added per proxied request, {conns} connections: p50 {ms(na[1]-nd[1]):+.2f} ms, "
      f"p99 {ms(na[2]-nd[2]):+.2f} ms (throughput {na[0]/nd[0]:.2f}x of nginx -> echo)")
print(f"auth_request added per proxied request, 1 connection: p50 {ms(na1[1]-nd1[1]):+.2f} ms, "
      f"p99 {ms(na1[2]-nd1[2]):+.2f} ms")
r = row("limited")
if r:
    print(f"cached key on Redis with a rate limit / embedded without: {r[0]/key[0]:.2f}x; p99 {ms(r[2]):.2f} ms")
PY
