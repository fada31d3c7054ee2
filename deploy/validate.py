#!/usr/bin/env python3
"""Static checks of the deployment files that no schema expresses.

Run by `.ci/run validate_deploy` after the schema validators:

  validate.py k8s NAME=RENDERED.yaml ...   what deploy/k8s promises, in each
                                           rendered overlay (`kubectl kustomize`)
  validate.py selftest DEV.yaml            each k8s check refuses a broken copy
  validate.py docker                       the Dockerfile's promises and its
                                           build context against Cargo.toml

Exit status 1 with one line per problem; nothing is fixed silently.
"""

import copy
import fnmatch
import re
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = {"app.kubernetes.io/name": "tessera", "app.kubernetes.io/component": "gateway"}
# What the prod overlay expects to exist already (its README says how to
# create them); base leaves the settings ConfigMap to the overlays too.
EXTERNAL = {
    "base": {("Secret", n) for n in ("tessera-admin", "tessera-kek", "tessera-redis")}
    | {("ConfigMap", "tessera-settings")},
    "dev": set(),
    "prod": {("Secret", n) for n in ("tessera-admin", "tessera-kek", "tessera-redis")},
}


def load(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def settings_keys():
    """The file keys `Settings` accepts (it denies unknown ones)."""
    src = (ROOT / "src" / "config.rs").read_text(encoding="utf-8")
    body = src.split("pub struct Settings {", 1)[1].split("\n}", 1)[0]
    keys, skipped = set(), False
    for line in body.splitlines():
        line = line.strip()
        if line.startswith("#[serde(") and "skip" in line:
            skipped = True  # environment only (secrets)
        m = re.match(r"pub (\w+):", line)
        if m:
            if not skipped:
                keys.add(m.group(1))
            skipped = False
    return keys


def check_workload(name, obj, problems):
    pod = obj["spec"]["template"]["spec"]
    psc = pod.get("securityContext", {})
    if pod.get("automountServiceAccountToken") is not False:
        problems.append(f"{name}: automountServiceAccountToken is not false")
    for v in pod.get("volumes", []):
        kinds = set(v) - {"name"}
        if not kinds <= {"configMap", "secret", "emptyDir", "projected"}:
            problems.append(f"{name}: volume {v['name']} is {sorted(kinds)}")
    for c in pod.get("containers", []) + pod.get("initContainers", []):
        where = f"{name}/{c['name']}"
        sc = c.get("securityContext", {})

        def either(key):
            return sc.get(key, psc.get(key))

        if either("runAsNonRoot") is not True:
            problems.append(f"{where}: runAsNonRoot is not true")
        if not isinstance(either("runAsUser"), int) or either("runAsUser") == 0:
            problems.append(f"{where}: runAsUser is not a non-zero number")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: readOnlyRootFilesystem is not true")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation is not false")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            problems.append(f"{where}: capabilities do not drop ALL")
        if (either("seccompProfile") or {}).get("type") != "RuntimeDefault":
            problems.append(f"{where}: seccompProfile is not RuntimeDefault")
        res = c.get("resources", {})
        for part in ("requests", "limits"):
            for what in ("cpu", "memory"):
                if what not in res.get(part, {}):
                    problems.append(f"{where}: no {part}.{what}")
        image = c.get("image", "")
        tag = image.rsplit("/", 1)[-1]
        if "@sha256:" not in image and (":" not in tag or tag.endswith(":latest")):
            problems.append(f"{where}: image {image!r} has no tag or digest")
        # $(VAR) expands only to a variable defined earlier; an unknown one
        # is left as it is, silently.
        defined = set()
        for e in c.get("env", []):
            for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", e.get("value", "")):
                if ref not in defined:
                    problems.append(f"{where}: {e['name']} uses $({ref}) before it is defined")
            defined.add(e["name"])


def check_gateway(name, obj, problems):
    tpl = obj["spec"]["template"]
    c = next((c for c in tpl["spec"]["containers"] if c["name"] == "tessera"), None)
    if c is None:
        problems.append(f"{name}: no container named tessera")
        return
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    env = {e["name"]: e for e in c.get("env", [])}
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"),
                        ("readinessProbe", "/readyz")):
        get = c.get(probe, {}).get("httpGet", {})
        port = ports.get(get.get("port"), get.get("port"))
        if get.get("path") != path or port != 8080:
            problems.append(f"{name}: {probe} is not GET {path} on 8080")
    listen = env.get("TESSERA_METRICS_LISTEN", {}).get("value", "")
    scrape = tpl["metadata"].get("annotations", {})
    if not listen.endswith(":9090") or ports.get("metrics") != 9090 \
            or scrape.get("prometheus.io/port") != "9090" \
            or scrape.get("prometheus.io/scrape") != "true":
        problems.append(f"{name}: metrics are not on 9090 with a scrape annotation")
    if "TESSERA_KEK" not in env and "TESSERA_KEK_FILE" not in env:
        problems.append(f"{name}: no TESSERA_KEK or TESSERA_KEK_FILE")
    if not env.get("TESSERA_REDIS_URL", {}).get("value", "").startswith(("redis://", "rediss://")):
        problems.append(f"{name}: TESSERA_REDIS_URL is not a redis URL")
    for var in ("TESSERA_ADMIN_APP_SECRET", "REDIS_PASSWORD"):
        if "secretKeyRef" not in env.get(var, {}).get("valueFrom", {}):
            problems.append(f"{name}: {var} does not come from a Secret")


def references(obj):
    """(kind, name, key or None) of every ConfigMap and Secret a pod uses."""
    pod = obj["spec"]["template"]["spec"]
    for c in pod.get("containers", []) + pod.get("initContainers", []):
        for e in c.get("env", []):
            src = e.get("valueFrom", {})
            if "configMapKeyRef" in src:
                yield "ConfigMap", src["configMapKeyRef"]["name"], src["configMapKeyRef"]["key"]
            if "secretKeyRef" in src:
                yield "Secret", src["secretKeyRef"]["name"], src["secretKeyRef"]["key"]
        for e in c.get("envFrom", []):
            if "configMapRef" in e:
                yield "ConfigMap", e["configMapRef"]["name"], None
            if "secretRef" in e:
                yield "Secret", e["secretRef"]["name"], None
    for v in pod.get("volumes", []):
        if "configMap" in v:
            yield "ConfigMap", v["configMap"]["name"], None
        if "secret" in v:
            yield "Secret", v["secret"]["secretName"], None


def check_render(overlay, docs):
    problems = []
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    gateways = [d for d in docs if d["kind"] == "Deployment"
                and matches(GATEWAY, d["spec"]["template"]["metadata"].get("labels", {}))]
    if len(gateways) != 1:
        return [f"{overlay}: {len(gateways)} gateway Deployments, expected 1"]
    gw = gateways[0]
    pod_labels = gw["spec"]["template"]["metadata"]["labels"]
    gw_ports = {p["name"]: p["containerPort"] for c in gw["spec"]["template"]["spec"]["containers"]
                for p in c.get("ports", [])}
    for d in docs:
        name = f"{overlay}: {d['kind']}/{d['metadata']['name']}"
        if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet"):
            check_workload(name, d, problems)
            for kind, ref, key in references(d):
                target = by.get((kind, ref))
                if target is None:
                    if (kind, ref) not in EXTERNAL[overlay]:
                        problems.append(f"{name}: uses {kind} {ref}, which nothing provides")
                    continue
                data = {**target.get("data", {}), **target.get("stringData", {})}
                if key is not None and key not in data:
                    problems.append(f"{name}: {kind} {ref} has no key {key}")
        if d["kind"] == "Secret" and overlay != "dev":
            problems.append(f"{name}: a secret value is shipped outside the dev overlay")
        if d["kind"] == "Service" and matches(d["spec"].get("selector"), pod_labels):
            for p in d["spec"]["ports"]:
                target = gw_ports.get(p.get("targetPort"), p.get("targetPort"))
                if target not in gw_ports.values():
                    problems.append(f"{name}: port {p['port']} targets nothing")
                if target == 9090 or p["port"] == 9090:
                    problems.append(f"{name}: exposes the metrics port")
        if d["kind"] in ("PodDisruptionBudget", "NetworkPolicy") and d["metadata"]["name"] == "tessera":
            sel = d["spec"]["podSelector" if d["kind"] == "NetworkPolicy" else "selector"]
            if not matches(sel.get("matchLabels"), pod_labels):
                problems.append(f"{name}: its selector does not select the gateways")
        if d["kind"] == "HorizontalPodAutoscaler":
            ref = d["spec"]["scaleTargetRef"]
            if (ref["kind"], ref["name"]) not in by:
                problems.append(f"{name}: scales {ref['kind']}/{ref['name']}, which is not here")
            if not 1 <= d["spec"].get("minReplicas", 1) <= d["spec"]["maxReplicas"]:
                problems.append(f"{name}: minReplicas/maxReplicas out of order")
    check_gateway(f"{overlay}: Deployment/{gw['metadata']['name']}", gw, problems)
    pdb = by.get(("PodDisruptionBudget", "tessera"))
    if pdb is None or pdb["spec"].get("minAvailable", 0) < 1:
        problems.append(f"{overlay}: no PodDisruptionBudget keeping a gateway up")
    if gw["spec"].get("replicas", 1) < 2:
        problems.append(f"{overlay}: fewer than 2 gateways")
    policy = by.get(("NetworkPolicy", "tessera"))
    if policy is None or set(policy["spec"].get("policyTypes", [])) != {"Ingress", "Egress"}:
        problems.append(f"{overlay}: no NetworkPolicy for both directions")
    else:
        for rule in policy["spec"].get("ingress", []):
            ports = {p["port"] for p in rule.get("ports", [])}
            if 9090 in ports and any(
                    f.get("namespaceSelector", {}).get("matchLabels", {})
                    .get("kubernetes.io/metadata.name") != "monitoring"
                    for f in rule.get("from", [{}])):
                problems.append(f"{overlay}: 9090 reachable from outside the monitoring namespace")
            if not ports:
                problems.append(f"{overlay}: an ingress rule opens every port")
        for rule in policy["spec"].get("egress", []):
            if not rule.get("to") or not rule.get("ports"):
                problems.append(f"{overlay}: an egress rule opens every destination or port")
    if overlay == "prod":
        for c in gw["spec"]["template"]["spec"]["containers"]:
            if "@sha256:" not in c["image"]:
                problems.append(f"prod: {c['name']} image is not pinned by digest")
    # The catalogue: a key the gateway does not know stops it at start.
    allowed = settings_keys()
    for (kind, name), d in by.items():
        if kind == "ConfigMap" and "tessera.toml" in d.get("data", {}):
            try:
                conf = tomllib.loads(d["data"]["tessera.toml"])
            except tomllib.TOMLDecodeError as e:
                problems.append(f"{overlay}: ConfigMap/{name}: tessera.toml: {e}")
                continue
            for key in sorted(set(conf) - allowed):
                problems.append(f"{overlay}: ConfigMap/{name}: tessera.toml: unknown key {key}")
    return problems


def selftest(dev_path):
    """Breaks a copy of the dev render in ways the checks must notice."""
    docs = load(dev_path)

    def gw(ds):
        return next(d for d in ds if d["kind"] == "Deployment")

    def container(ds):
        return gw(ds)["spec"]["template"]["spec"]["containers"][0]

    def drop_secret(ds):
        ds[:] = [d for d in ds if d["kind"] != "Secret" or "kek" not in d["metadata"]["name"]]

    def expose_metrics(ds):
        svc = next(d for d in ds if d["kind"] == "Service" and d["metadata"]["name"] == "tessera")
        svc["spec"]["ports"].append({"name": "m", "port": 9090, "targetPort": "metrics"})

    breakages = {
        "root filesystem writable": lambda ds: container(ds)["securityContext"].update(
            readOnlyRootFilesystem=False),
        "readiness on /healthz": lambda ds: container(ds)["readinessProbe"]["httpGet"].update(
            path="/healthz"),
        "URL before its password": lambda ds: container(ds)["env"].sort(
            key=lambda e: e["name"] != "TESSERA_REDIS_URL"),
        "KEK Secret missing": drop_secret,
        "metrics in the Service": expose_metrics,
        "unknown catalogue key": lambda ds: next(
            d for d in ds if "tessera.toml" in d.get("data", {}))["data"].update(
                {"tessera.toml": "tokenttl = 5\n"}),
        "PDB selecting nothing": lambda ds: next(
            d for d in ds if d["kind"] == "PodDisruptionBudget")["spec"]["selector"].update(
                matchLabels={"app.kubernetes.io/name": "other"}),
    }
    problems = []
    if check_render("dev", docs):
        problems.append("the unbroken dev render fails its checks")
    for what, breaks in breakages.items():
        broken = copy.deepcopy(docs)
        breaks(broken)
        if not check_render("dev", broken):
            problems.append(f"selftest: {what} was not noticed")
    return problems, len(breakages)


def dockerfile_instructions(text):
    """(stage index, INSTRUCTION, arguments), continuation lines joined."""
    out, stage, line = [], -1, ""
    for raw in text.splitlines():
        s = raw.strip()
        if not line and (not s or s.startswith("#")):
            continue
        if s.startswith("#"):
            continue
        line += " " + s.rstrip("\\").strip() if line else s.rstrip("\\").strip()
        if s.endswith("\\"):
            continue
        word, _, args = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            stage += 1
        out.append((stage, word, args.strip()))
        line = ""
    return out


def ignored(path, patterns):
    """Whether .dockerignore leaves `path` out (the patterns used here)."""
    for p in patterns:
        p = p.rstrip("/")
        parts = Path(path).parts
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if fnmatch.fnmatch(prefix, p) or fnmatch.fnmatch(prefix, p.removeprefix("**/")) \
                    or (p.startswith("**/") and fnmatch.fnmatch(parts[i - 1], p[3:])):
                return True
    return False


def check_docker():
    problems = []
    ins = dockerfile_instructions((ROOT / "Dockerfile").read_text(encoding="utf-8"))
    stages = [(i, a) for i, w, a in ins if w == "FROM"]
    names = {a.split()[-1] for _, a in stages if " AS " in a.upper()}
    if len(stages) < 2:
        problems.append("Dockerfile: not multi-stage")
    for _, a in stages:
        image = a.split()[0]
        if image in names:
            continue
        tag = image.rsplit("/", 1)[-1]
        if "@sha256:" not in image and (":" not in tag or tag.endswith(":latest")):
            problems.append(f"Dockerfile: base image {image} is not pinned to a tag")
    last = len(stages) - 1
    users = [a for i, w, a in ins if w == "USER" and i == last]
    uid = users[-1].split(":")[0] if users else ""
    if not uid.isdigit() or int(uid) == 0:
        problems.append("Dockerfile: the final stage's USER is not a numeric non-root uid")
    if not any(w == "COPY" and i == last and re.search(r"--from=(\S+)", a)
               and re.search(r"--from=(\S+)", a).group(1) in names for i, w, a in ins):
        problems.append("Dockerfile: the final stage copies nothing from a build stage")
    for _, w, a in ins:
        if w == "ADD" and re.search(r"\bhttps?://", a):
            problems.append(f"Dockerfile: ADD of a URL: {a}")
    builds = [a for _, w, a in ins if w == "RUN" and "cargo build" in a]
    if not builds or not all("--locked" in a for a in builds):
        problems.append("Dockerfile: cargo build without --locked")
    # The build context: what the build stage copies, less .dockerignore.
    patterns = [ln.strip() for ln in (ROOT / ".dockerignore").read_text(encoding="utf-8")
                .splitlines() if ln.strip() and not ln.startswith("#")]
    for must in ("target/x", "node_modules/x", "tests/browser/node_modules/x", ".env"):
        if not ignored(must, patterns):
            problems.append(f".dockerignore: {must.split('/x')[0]} enters the build context")
    copied = []
    for i, w, a in ins:
        if w == "COPY" and i < last and "--from" not in a:
            copied += [s.rstrip("/") for s in a.split()[:-1] if not s.startswith("--")]
    manifest = tomllib.loads((ROOT / "Cargo.toml").read_text(encoding="utf-8"))
    needed = ["Cargo.toml", "Cargo.lock", "src/main.rs"]
    if (ROOT / "askama.toml").exists():
        needed.append("askama.toml")
    # Targets declared without a path must exist where cargo looks, or the
    # manifest does not load (explicit paths are only read when built).
    for table, folder in (("bench", "benches"), ("example", "examples"), ("test", "tests")):
        for t in manifest.get(table, []):
            if "path" not in t:
                needed.append(f"{folder}/{t['name']}.rs"
                              if (ROOT / folder / f"{t['name']}.rs").exists()
                              else f"{folder}/{t['name']}/main.rs")
    for path in needed:
        if not (ROOT / path).exists():
            problems.append(f"Dockerfile context: {path} does not exist in the repository")
        elif not any(path == c or path.startswith(c + "/") for c in copied):
            problems.append(f"Dockerfile: {path} is not copied into the build stage")
        elif ignored(path, patterns):
            problems.append(f".dockerignore: leaves out {path}, which the build needs")
    return problems


def main(argv):
    if len(argv) >= 2 and argv[0] == "k8s":
        problems = []
        for arg in argv[1:]:
            overlay, _, path = arg.partition("=")
            docs = load(path)
            found = check_render(overlay, docs)
            problems += found
            print(f"{overlay}: {len(docs)} objects, {len(found)} problems")
    elif len(argv) == 2 and argv[0] == "selftest":
        problems, n = selftest(argv[1])
        print(f"selftest: {n} broken copies of the dev render, {len(problems)} problems")
    elif argv == ["docker"]:
        problems = check_docker()
        print(f"Dockerfile and .dockerignore: {len(problems)} problems")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for p in problems:
        print(f"  {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
