#!/usr/bin/env bash
# Resident memory of a real gateway (embedded store) through creates, warm
# exchanges and cold exchanges. Prints figures only; nothing here passes or
# fails on a size or a time.
#   bash bench/memory.sh
#   BIN=target/release/tessera CREATES=1000 WARM=10000 COLD=1000 CONC=8 bash bench/memory.sh
#   HASH_CONCURRENCY=4 bash bench/memory.sh     (TESSERA_HASH_CONCURRENCY; default: cores)
# Anything else in the environment reaches the gateway unchanged, so
# GLIBC_TUNABLES=glibc.malloc.mmap_threshold=131072 bash bench/memory.sh
# gives the allocator-trick comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
CREATES=${CREATES:-1000}
WARM=${WARM:-10000}
COLD=${COLD:-1000}
CONC=${CONC:-8}

if [[ -z ${BIN:-} ]]; then
  cargo build --quiet --bin tessera
  BIN=${CARGO_TARGET_DIR:-target}/debug/tessera
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
TMP=$(mktemp -d)
GW=
cleanup() { [[ -n $GW ]] && kill "$GW" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

ADMIN_ID=bench-admin
ADMIN_SECRET=bench-admin-secret-0123456789abcdef
PORT=$(free_port)
# An empty catalogue: the built-in permissions are enough for "permissions": [].
: > "$TMP/config.toml"
env ${HASH_CONCURRENCY:+TESSERA_HASH_CONCURRENCY=$HASH_CONCURRENCY} \
  TESSERA_LISTEN=127.0.0.1:$PORT TESSERA_DATA_DIR=$TMP/data TESSERA_KEYS_DIR=$TMP/keys \
  TESSERA_ADMIN_APP_ID=$ADMIN_ID TESSERA_ADMIN_APP_SECRET=$ADMIN_SECRET TESSERA_LOG=warn \
  "$BIN" serve --config "$TMP/config.toml" > "$TMP/gateway.log" 2>&1 &
GW=$!
for _ in $(seq 1 400); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.05; done
curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null || { cat "$TMP/gateway.log"; exit 1; }

echo "== $(nproc) cores; $BIN; hash_concurrency ${HASH_CONCURRENCY:-default (cores)}; ${GLIBC_TUNABLES:+GLIBC_TUNABLES=$GLIBC_TUNABLES; }client concurrency $CONC"
python3 - "$GW" "http://127.0.0.1:$PORT" "$ADMIN_ID" "$ADMIN_SECRET" "$CREATES" "$WARM" "$COLD" "$CONC" <<'PY'
import http.client, json, sys, threading, time
from concurrent.futures import ThreadPoolExecutor

pid, base, admin_id, admin_secret = sys.argv[1:5]
creates, warm, cold, conc = map(int, sys.argv[5:9])
host, port = base.removeprefix("http://").split(":")
local = threading.local()

def call(method, path, body=None, token=None):
    """One request on this thread's keep-alive connection; (status, json)."""
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    for attempt in (0, 1):
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(host, int(port), timeout=120)
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            try:
                return resp.status, json.loads(raw) if raw else None
            except ValueError:
                return resp.status, None
        except (OSError, http.client.HTTPException):
            conn.close()
            local.conn = None
            if attempt:
                raise

def status_kb(field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0

admin = None

def verifications():
    """argon2 verifications so far, from /metrics (it wants metrics:read,
    which the admin's token holds); "-" before that token exists."""
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("GET", "/metrics", headers={"authorization": f"Bearer {admin}"} if admin else {})
    resp = conn.getresponse()
    text = resp.read().decode(errors="replace")
    conn.close()
    for line in text.splitlines() if resp.status == 200 else []:
        if line.startswith("tessera_secret_verifications_total"):
            return str(int(float(line.split()[-1])))
    return "-"

def report(label, started=None, errors=None):
    extra = ""
    if started is not None:
        extra += f"  {time.monotonic() - started:7.1f} s"
    if errors is not None:
        extra += f"  non-2xx {errors}"
    print(f"{label:<44} VmRSS {status_kb('VmRSS') / 1024:8.1f} MiB   "
          f"VmHWM {status_kb('VmHWM') / 1024:8.1f} MiB   threads {status_kb('Threads'):3d}   "
          f"argon2 verifications {verifications():>5}{extra}", flush=True)

def exchange(app_id, secret):
    return call("POST", "/api/v1/token",
                {"grantType": "app_token", "AppId": app_id, "AppSecret": secret})

def bounded(fn, items):
    with ThreadPoolExecutor(conc) as pool:
        return list(pool.map(fn, items))

time.sleep(0.5)
report("start")

status, body = exchange(admin_id, admin_secret)
if status != 200:
    sys.exit(f"admin exchange failed: {status} {body}")
admin = body["accessToken"]
report("after the admin's first exchange")

t = time.monotonic()
def create(i):
    return call("POST", "/api/v1/apps", {"name": f"mem-{i}", "permissions": []}, admin)
made = bounded(create, range(creates))
apps = [(b["id"], b["secret"]) for s, b in made if s in (200, 201) and b]
report(f"after {creates} creates ({conc} concurrent)", t, creates - len(apps))

t = time.monotonic()
# Warm: the admin's secret is already verified and cached, so no argon2.
warm_done = bounded(lambda _: exchange(admin_id, admin_secret)[0], range(warm))
report(f"after {warm} warm exchanges", t, sum(s != 200 for s in warm_done))

t = time.monotonic()
# Cold: each application's first exchange, so each one costs an argon2 run.
cold_done = bounded(lambda a: exchange(*a)[0], apps[:cold])
report(f"after {min(cold, len(apps))} cold exchanges (distinct apps, {conc} concurrent)",
       t, sum(s != 200 for s in cold_done))

t = time.monotonic()
# Rotations: each hashes a new secret (argon2); then each rotated
# application's first exchange with its new secret (argon2 again).
def rotate(a):
    return call("POST", f"/api/v1/apps/{a[0]}/rotate", {"gracePeriodSeconds": 0}, admin)
rotated = bounded(rotate, apps[:cold])
fresh = [(b["id"], b["secret"]) for s, b in rotated if s in (200, 201) and b]
report(f"after {min(cold, len(apps))} secret rotations ({conc} concurrent)", t, len(apps[:cold]) - len(fresh))
t = time.monotonic()
again = bounded(lambda a: exchange(*a)[0], fresh)
report(f"after {len(fresh)} cold exchanges with the rotated secrets", t, sum(s != 200 for s in again))

time.sleep(12)  # tokio retires idle blocking threads after 10 s
report("12 s later (idle)")
PY
