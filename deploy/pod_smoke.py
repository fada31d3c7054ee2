#!/usr/bin/env python3
"""The dev overlay's pods, run without a container engine or a cluster.

  pod_smoke.py DEV.yaml TESSERA_BINARY

From the rendered dev overlay (`kubectl kustomize deploy/k8s/overlays/dev`)
this takes the Redis StatefulSet's command and the gateway container's
environment, arguments and volumes exactly as written (ConfigMap and Secret
values resolved, `$(VAR)` expanded, files laid out as the kubelet mounts
them), and runs Redis and two gateways (the Deployment's two replicas) on
loopback. Only what a cluster provides is replaced: addresses become
127.0.0.1 and free ports, and absolute paths move under a scratch root.
The gateways run as uid 10001 (the pod's runAsUser, with the fsGroup)
when this runs as root.

Checked: the probes' paths answer 200 on the container's named ports, the
metrics listener answers without a token while the main port asks for one,
the admin from the Secret gets a token, both gateways publish the same keys
(shared through Redis, no keys volume), and nothing was written outside the
emptyDir volumes (the pod's root filesystem is read-only).
"""

import base64
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

DEADLINE = 60  # seconds for anything to come up


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, body=None, timeout=5):
    """(status, body) of a GET, or a JSON POST when `body` is given."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data,
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return res.status, res.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_for(what, check):
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"pod_smoke: {what} within {DEADLINE} s: no")


class Pod:
    """One pod's files under `root`, with the objects of the render."""

    def __init__(self, docs, root):
        self.by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
        self.root = Path(root)

    def value(self, ref_kind, ref):
        obj = self.by[(ref_kind, ref["name"])]
        if ref_kind == "Secret":
            return base64.b64decode(obj["data"][ref["key"]]).decode()
        return obj["data"][ref["key"]]

    def env(self, container, overrides):
        """The container's environment as the kubelet builds it."""
        env = {}
        for e in container.get("env", []):
            src = e.get("valueFrom", {})
            if "configMapKeyRef" in src:
                v = self.value("ConfigMap", src["configMapKeyRef"])
            elif "secretKeyRef" in src:
                v = self.value("Secret", src["secretKeyRef"])
            else:
                v = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                           lambda m: env.get(m.group(1), m.group(0)), e.get("value", ""))
            env[e["name"]] = overrides.get(e["name"], v)
        return env

    def mount(self, pod_spec, container, uid, gid):
        """Lays out the container's volumes as the kubelet would."""
        volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
        group = pod_spec.get("securityContext", {}).get("fsGroup", gid)
        for m in container.get("volumeMounts", []):
            v = volumes[m["name"]]
            where = self.path(m["mountPath"])
            where.mkdir(parents=True, exist_ok=True)
            if "configMap" in v:
                for k, text in self.by[("ConfigMap", v["configMap"]["name"])]["data"].items():
                    (where / k).write_text(text, encoding="utf-8")
                    os.chmod(where / k, v["configMap"].get("defaultMode", 0o644))
            elif "secret" in v:
                for k, b64 in self.by[("Secret", v["secret"]["secretName"])]["data"].items():
                    (where / k).write_bytes(base64.b64decode(b64))
                    os.chmod(where / k, v["secret"].get("defaultMode", 0o644))
                    if os.geteuid() == 0:
                        os.chown(where / k, 0, group)
            elif "emptyDir" in v and os.geteuid() == 0:
                os.chown(where, uid, group)

    def path(self, p):
        return self.root / p.lstrip("/")


def files_under(root):
    return {p for p in Path(root).rglob("*")}


def main(dev_yaml, binary):
    # The pods run in their own directories: a relative path would not
    # name the binary there.
    binary = os.path.abspath(binary)
    with open(dev_yaml, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    redis = next(d for d in docs if d["kind"] == "StatefulSet")
    scratch = Path(tempfile.mkdtemp(prefix="pod-smoke-"))
    os.chmod(scratch, 0o755)
    procs = []
    try:
        # Redis, from the StatefulSet's own command and Secret.
        rspec = redis["spec"]["template"]["spec"]
        rc = rspec["containers"][0]
        rpod = Pod(docs, scratch / "redis")
        (rpod.path("/data")).mkdir(parents=True)
        rport = free_port()
        script = rc["command"][-1].replace(
            "--dir /data", f"--dir {rpod.path('/data')} --port {rport} --bind 127.0.0.1")
        renv = rpod.env(rc, {})
        procs.append(subprocess.Popen(rc["command"][:-1] + [script],
                                      env={"PATH": os.environ["PATH"], **renv},
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_for("Redis answering its readiness probe", lambda: subprocess.run(
            rc["readinessProbe"]["exec"]["command"][:1] + ["-p", str(rport)]
            + rc["readinessProbe"]["exec"]["command"][1:],
            env={"PATH": os.environ["PATH"], **renv}, capture_output=True,
            text=True, check=False).stdout.strip() == "PONG")

        spec = deploy["spec"]["template"]["spec"]
        c = next(c for c in spec["containers"] if c["name"] == "tessera")
        uid = c["securityContext"]["runAsUser"]
        gid = c["securityContext"].get("runAsGroup", uid)
        gateways = []
        for replica in range(deploy["spec"]["replicas"]):
            pod = Pod(docs, scratch / f"gateway-{replica}")
            pod.mount(spec, c, uid, gid)
            # The image's empty, read-only keys directory.
            pod.path("/etc/tessera/keys").mkdir(parents=True, exist_ok=True)
            ports = {p["name"]: free_port() for p in c["ports"]}
            # The kubelet's expansion, with the Redis Service's address
            # replaced; then listen addresses and absolute paths moved onto
            # this machine.
            env = pod.env(c, {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(rport)})
            for k, v in env.items():
                m = re.fullmatch(r"0\.0\.0\.0:(\d+)", v)
                if m:
                    name = next(p["name"] for p in c["ports"]
                                if p["containerPort"] == int(m.group(1)))
                    env[k] = f"127.0.0.1:{ports[name]}"
                elif v.startswith("/"):
                    env[k] = str(pod.path(v))
            args = [str(pod.path(a)) if a.startswith("/") else a for a in c.get("args", [])]
            before = files_under(pod.root)
            drop = (["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
                    if os.geteuid() == 0 else [])
            log = open(pod.root / "stderr", "w", encoding="utf-8")
            procs.append(subprocess.Popen(drop + [binary] + args, cwd=pod.root,
                                          env={"PATH": os.environ["PATH"], **env},
                                          stdout=subprocess.DEVNULL, stderr=log))
            gateways.append((pod, ports, env, before, procs[-1]))

        admin = (env["TESSERA_ADMIN_APP_ID"], env["TESSERA_ADMIN_APP_SECRET"])
        jwks = []
        for pod, ports, env, before, proc in gateways:
            base = f"http://127.0.0.1:{ports['http']}"

            def started(proc=proc, pod=pod, base=base):
                if proc.poll() is not None:
                    raise SystemExit("pod_smoke: a gateway exited:\n"
                                     + (pod.root / "stderr").read_text(encoding="utf-8")[-2000:])
                return get(base + c["startupProbe"]["httpGet"]["path"])[0] == 200

            wait_for("the startup probe", started)
            wait_for("the readiness probe",
                     lambda base=base: get(base + c["readinessProbe"]["httpGet"]["path"])[0] == 200)
            for probe in ("livenessProbe", "readinessProbe"):
                status, _ = get(base + c[probe]["httpGet"]["path"])
                if status != 200:
                    raise SystemExit(f"pod_smoke: {probe} answered {status}")
            status, text = get(f"http://127.0.0.1:{ports['metrics']}/metrics")
            if status != 200 or "tessera_" not in text:
                raise SystemExit(f"pod_smoke: the metrics port answered {status}")
            if get(base + "/metrics")[0] != 401:
                raise SystemExit("pod_smoke: /metrics on the main port answered without a token")
            status, text = get(base + "/api/v1/token",
                               {"grantType": "app_token", "AppId": admin[0], "AppSecret": admin[1]})
            if status != 200 or "accessToken" not in text:
                raise SystemExit(f"pod_smoke: the Secret's admin got {status}: {text[:200]}")
            status, text = get(base + "/.well-known/jwks.json")
            jwks.append(sorted(k["kid"] for k in json.loads(text)["keys"]))
        if not jwks[0] or any(j != jwks[0] for j in jwks):
            raise SystemExit(f"pod_smoke: the gateways publish different keys: {jwks}")
        for pod, ports, env, before, proc in gateways:
            proc.terminate()
            if proc.wait(timeout=40) != 0:
                raise SystemExit(f"pod_smoke: a gateway exited with {proc.returncode} on SIGTERM")
            tmp = pod.path("/tmp")
            written = {p for p in files_under(pod.root) - before
                       if p != pod.root / "stderr" and tmp not in p.parents}
            if written:
                raise SystemExit(f"pod_smoke: written outside emptyDir volumes: {sorted(written)}")
        print(f"pod_smoke: Redis and {len(gateways)} gateways from the dev render: probes, "
              f"metrics port, admin token, one key ring ({len(jwks[0])} keys), "
              f"read-only files: ok")
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        subprocess.run(["rm", "-rf", str(scratch)], check=False)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
