"""The cold path under concurrency: creates N applications, then sends the
first exchange of every one of them at the same instant (one thread and one
connection each, released by a barrier), so every exchange needs its own
argon2id verification. Prints p50/p99/max latency and checks that every
answer is a token for the right application. Figures only.

    python3 bench/cold.py http://127.0.0.1:8080 ADMIN_ID ADMIN_SECRET 64
"""
import base64
import http.client
import json
import statistics
import sys
import threading
import time

base, admin_id, admin_secret, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
host, port = base.removeprefix("http://").split(":")


def call(method, path, body, token=None):
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    conn.request(method, path, body=json.dumps(body), headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, json.loads(data) if data else None


status, body = call("POST", "/api/v1/token", {"AppId": admin_id, "AppSecret": admin_secret})
if status != 200:
    sys.exit(f"admin exchange failed: {status}")
admin = body["accessToken"]
apps = []
stamp = time.time_ns()
for i in range(count):
    status, body = call("POST", "/api/v1/apps",
                        {"name": f"cold-{stamp}-{i}", "permissions": ["api_keys:read"]}, admin)
    if status != 201:
        sys.exit(f"create failed: {status} {body}")
    apps.append((body["id"], body["secret"]))

barrier = threading.Barrier(count)
results = [None] * count


def first_exchange(i):
    app_id, secret = apps[i]
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    conn.connect()
    payload = json.dumps({"grantType": "app_token", "AppSecret": secret})
    barrier.wait()
    started = time.monotonic()
    conn.request("POST", "/api/v1/token", body=payload,
                 headers={"content-type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    elapsed = (time.monotonic() - started) * 1000
    conn.close()
    ok = False
    if resp.status == 200:
        claims = json.loads(base64.urlsafe_b64decode(
            json.loads(data)["accessToken"].split(".")[1] + "=="))
        ok = claims["sub"] == app_id and claims["permissions"] == ["api_keys:read"]
    results[i] = (elapsed, resp.status, ok)


threads = [threading.Thread(target=first_exchange, args=(i,)) for i in range(count)]
for t in threads:
    t.start()
for t in threads:
    t.join()
times = sorted(r[0] for r in results)
statuses = {}
for r in results:
    statuses[r[1]] = statuses.get(r[1], 0) + 1
p99 = times[min(len(times) - 1, int(round(0.99 * len(times))) - 1)]
print(f"first exchange of {count} distinct applications at once: p50 {statistics.median(times):.1f} ms, "
      f"p99 {p99:.1f} ms, max {times[-1]:.1f} ms; statuses {statuses}; "
      f"right token for its application: {sum(r[2] for r in results)}/{count}")
