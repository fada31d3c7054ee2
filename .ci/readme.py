#!/usr/bin/env python3
"""Runs every ```sh / ```bash block of README.md, in order, in ONE bash
session (set -euo pipefail), the way a newcomer would paste them.

    python3 .ci/readme.py README.md BUILD_DIR

BUILD_DIR holds the built `tessera` and `examples/cluster_api` (cargo's
debug directory); both go on PATH under those names. The session runs in a
fresh temporary directory, with a fresh TESSERA_DATA_DIR, the gateway on a
free loopback port (TESSERA_LISTEN / TESSERA_URL) and cluster_api on
another (CLUSTER_API), no TESSERA_* setting inherited, and its own
XDG_CONFIG_HOME. Every process the blocks leave running is stopped at the
end (the session is its own process group).

Before that, every relative link of README.md and docs/*.md must name a
file of the repository (and a heading, when it has an anchor), and none of
them may point outside it (`../shared`, "SPEC §").

A block is skipped only when the line before its fence is
`<!-- readme: skip -->` (the test command itself, the install step whose
result BUILD_DIR stands in for). A block that fails stops the run: its line
number, its text and its output are printed, and the exit status is 1.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

FENCE = re.compile(r"^```(\w*)\s*$")
SKIP = "<!-- readme: skip -->"
TIMEOUT = 600


def blocks(path):
    """(line of the opening fence, text, skipped) for each sh/bash block."""
    found = []
    lines = open(path, encoding="utf-8").read().split("\n")
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        lang, start = m.group(1), i
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        if j == len(lines):
            raise SystemExit(f"{path}:{start + 1}: a code block is never closed")
        if lang in ("sh", "bash"):
            k = start - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            skipped = k >= 0 and lines[k].strip() == SKIP
            found.append((start + 1, "\n".join(lines[start + 1 : j]), skipped))
        i = j + 1
    return found


def slug(heading):
    """GitHub's anchor for a heading."""
    h = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return h.replace(" ", "-")


def check_links(readme):
    """Problems with the links of README.md and docs/*.md: missing files or
    headings, references outside the repository."""
    root = os.path.dirname(os.path.abspath(readme))
    docs = os.path.join(root, "docs")
    pages = [os.path.abspath(readme)] + sorted(
        os.path.join(docs, f) for f in os.listdir(docs) if f.endswith(".md")
    ) if os.path.isdir(docs) else [os.path.abspath(readme)]
    problems = []
    for page in pages:
        text = open(page, encoding="utf-8").read()
        name = os.path.relpath(page, root)
        for bad in ("../shared", "SPEC §", "SPEC.md"):
            if bad in text:
                problems.append(f"{name}: refers outside the repository ({bad!r})")
        for m in re.finditer(r"\]\(([^)\s]+)\)", text):
            link = m.group(1)
            if re.match(r"^[a-z]+:", link):
                continue
            path, _, anchor = link.partition("#")
            target = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
            if not target.startswith(root + os.sep) and target != root:
                problems.append(f"{name}: {link} points outside the repository")
            elif not os.path.exists(target):
                problems.append(f"{name}: {link} names a file that does not exist")
            elif anchor and target.endswith(".md"):
                heads = re.findall(r"^#+ (.*)$", open(target, encoding="utf-8").read(), re.M)
                if anchor not in {slug(h) for h in heads}:
                    problems.append(f"{name}: {link} names a heading that does not exist")
    problems += outside_references(root)
    return problems


def outside_references(root):
    """Tracked files (code, comments, deploy files) that cite a document
    the repository does not hold. Skipped outside a git checkout."""
    try:
        files = subprocess.run(["git", "-C", root, "ls-files", "-z"], capture_output=True,
                               text=True, check=True).stdout.split("\0")
    except (OSError, subprocess.CalledProcessError):
        print("readme: not a git checkout; tracked files not scanned for outside references")
        return []
    problems = []
    for f in filter(None, files):
        # This file names the patterns; the Markdown pages are checked above.
        if f == ".ci/readme.py" or f == "README.md" or (f.startswith("docs/") and f.endswith(".md")):
            continue
        try:
            text = open(os.path.join(root, f), encoding="utf-8").read()
        except (UnicodeDecodeError, OSError):
            continue
        for bad in ("../shared", "SPEC §", "SPEC.md"):
            if bad in text:
                problems.append(f"{f}: refers outside the repository ({bad!r})")
    return problems


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def script(found, state):
    """The session: each block preceded by a marker in the output and the
    block's line written to `state`, so a failure names its block."""
    out = ["set -euo pipefail", "shopt -s inherit_errexit"]
    for line, text, skipped in found:
        if skipped:
            continue
        out.append(f"echo {line} > {state}")
        out.append(f"printf '\\n@@readme-block {line}\\n'")
        out.append(text)
    out.append(f"echo done > {state}")
    return "\n".join(out) + "\n"


def stop_group(pgid):
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    readme, build = sys.argv[1], os.path.abspath(sys.argv[2])
    problems = check_links(readme)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    found = blocks(readme)
    if not found:
        raise SystemExit(f"{readme} has no sh or bash block")
    top = tempfile.mkdtemp(prefix="tessera-readme-")
    try:
        bindir = os.path.join(top, "bin")
        work = os.path.join(top, "work")
        os.makedirs(bindir)
        os.makedirs(work)
        for name, rel in (("tessera", "tessera"), ("cluster_api", "examples/cluster_api")):
            src = os.path.join(build, rel)
            if not os.access(src, os.X_OK):
                raise SystemExit(f"{src} is missing: build it first (cargo build --bin tessera --example cluster_api)")
            os.symlink(src, os.path.join(bindir, name))
        env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
        gateway = free_port()
        service = free_port()
        while service == gateway:
            service = free_port()
        env.update(
            PATH=bindir + os.pathsep + env.get("PATH", "/usr/bin:/bin"),
            TESSERA_LISTEN=f"127.0.0.1:{gateway}",
            TESSERA_URL=f"http://127.0.0.1:{gateway}",
            TESSERA_DATA_DIR=os.path.join(top, "data"),
            CLUSTER_API=f"127.0.0.1:{service}",
            XDG_CONFIG_HOME=os.path.join(top, "config"),
            NO_COLOR="1",
        )
        state = os.path.join(top, "state")
        session = os.path.join(top, "session.sh")
        with open(session, "w", encoding="utf-8") as f:
            f.write(script(found, state))
        log_path = os.path.join(top, "output")
        started = time.monotonic()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                ["bash", session], cwd=work, env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
            try:
                status = proc.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                status = None
            stop_group(proc.pid)
        output = open(log_path, encoding="utf-8", errors="replace").read()
        where = open(state, encoding="utf-8").read().strip() if os.path.exists(state) else ""
        ran = sum(1 for b in found if not b[2])
        if status == 0 and where == "done":
            print(output.replace("@@readme-block ", f"--- {readme}:"))
            print(f"{readme}: {ran} blocks ran in order in one session ({len(found) - ran} skipped), "
                  f"{time.monotonic() - started:.1f} s")
            return 0
        # The failing block, its text, and what it printed.
        text = next((t for line, t, _ in found if str(line) == where), "")
        part = output.rsplit(f"@@readme-block {where}\n", 1)[-1] if where else output
        reason = "timed out" if status is None else f"exit status {status}"
        print(f"{readme}:{where or '?'}: this block failed ({reason})", file=sys.stderr)
        print("```sh\n" + text + "\n```", file=sys.stderr)
        print("its output:\n" + part, file=sys.stderr)
        for name in ("serve.log", "cluster_api.log"):
            p = os.path.join(work, name)
            if os.path.exists(p):
                tail = open(p, encoding="utf-8", errors="replace").read()[-4000:]
                print(f"--- {name} (last 4000 characters)\n{tail}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
