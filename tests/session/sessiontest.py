"""Helpers for the session tests: run a scenario under `metamori run`,
collect the checkpoints it made with a manifest taken at each, and check
that every one restores exactly (into a new directory, and in place)."""
import io
import json
import os
import re
import subprocess
import sys

import mtmtest as T

HERE = os.path.dirname(os.path.abspath(__file__))

# An ASan-built metamori started by a traced program has the interposer
# preloaded ahead of the ASan runtime: let it run.
if "verify_asan_link_order" not in os.environ.get("ASAN_OPTIONS", ""):
    os.environ["ASAN_OPTIONS"] = ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"), "verify_asan_link_order=0"]))

def wait_run(proc, timeout=60):
    """Waits for a `metamori run` started with its stdout and stderr as
    pipes, reading them while it waits, and returns its exit status; after
    it, proc.stdout and proc.stderr read back what the pipes held. A
    session's debug lines (a pass every 10-20 ms) fill a pipe's 64 KiB in
    seconds, and a session nobody reads blocks in write(2) before it can
    end: a red session_prewrite test hung 60 s in proc.wait() and ended in
    a timeout instead of its own failure."""
    out, err = proc.communicate(timeout=timeout)
    if proc.stdout is not None or out is not None:
        proc.stdout = io.StringIO(out or "")
    if proc.stderr is not None or err is not None:
        proc.stderr = io.StringIO(err or "")
    return proc.returncode


# Prologue of every scenario script: `ck()` asks the running session for a
# checkpoint (as `metamori checkpoint` from a shell would) and records its
# id, how it was made, and a manifest of the tree taken right after it.
PROLOGUE = r'''
import json, os, re, subprocess, sys, time
HERE = %(here)r
sys.path.insert(0, %(lib)r)
sys.path.insert(0, HERE)
import mtmtest as T
ROOT = os.environ["METAMORI_ROOT"]
OUT = sys.argv[1]
RESULTS = []
def ck(msg="c", manifest=True, **extra):
    p = subprocess.run([T.METAMORI, "-C", ROOT, "checkpoint", "-m", msg], capture_output=True, text=True)
    if p.returncode:
        raise SystemExit("checkpoint failed: " + p.stderr)
    m = re.search(r"^checkpoint (\d+)", p.stdout, re.M)
    mode = re.search(r"\((tracked|scanned), paused", p.stdout)
    RESULTS.append(dict(extra, id=int(m.group(1)), mode=mode.group(1) if mode else "none",
                        manifest=T.manifest(ROOT) if manifest else None, msg=msg, said=p.stdout.strip()))
    with open(OUT, "w") as f:
        json.dump(RESULTS, f)
    return RESULTS[-1]
def P(rel):
    return os.path.join(ROOT, rel)
'''


def run_scenario(root, body, args=(), env=None, check=True, preload=None):
    """Runs python BODY (after PROLOGUE) under metamori run in root; returns
    (CompletedProcess, results)."""
    work = T.tempdir("mtm-scen-")
    script = os.path.join(work, "scenario.py")
    out = os.path.join(work, "out.json")
    with open(script, "w") as f:
        f.write(PROLOGUE % {"here": HERE, "lib": os.path.join(HERE, "..", "lib")})
        f.write(body)
    e = dict(os.environ)
    if preload:
        e["METAMORI_PRELOAD"] = preload
    if env:
        e.update(env)
    p = subprocess.run([T.METAMORI, "-C", root, "run"] + list(args) + ["--", sys.executable, script, out],
                       capture_output=True, text=True, env=e)
    if check and p.returncode != 0:
        raise T.Failure("metamori run failed (%d):\n%s%s" % (p.returncode, p.stdout, p.stderr))
    results = json.load(open(out)) if os.path.exists(out) else []
    for r in results:
        if r["manifest"] is not None:
            r["manifest"] = {k: tuple(v) for k, v in r["manifest"].items()}
    T.rmtree(work)
    return p, results


def check_restores(root, results, in_place=True, check=None):
    """Every checkpoint restores exactly: into a new directory, then in place.
    check(dir, result), if given, then runs the program's own consistency
    checks on the restored tree (after the manifest is compared: they may
    change it, as opening a database does)."""
    for r in results:
        to = T.tempdir("mtm-to-")
        os.rmdir(to)
        T.restore(root, r["id"], to=to, env=T.readback_env())
        if r["manifest"] is not None:
            T.assert_same(r["manifest"], T.manifest(to), "checkpoint %d (%s) restored --to" % (r["id"], r["msg"]))
        if check:
            check(to, r)
        T.rmtree(to)
    if in_place:
        for r in reversed(results):
            T.restore(root, r["id"])
            if r["manifest"] is not None:
                T.assert_same(r["manifest"], T.manifest(root), "checkpoint %d (%s) restored in place" % (r["id"], r["msg"]))
            if check:
                check(root, r)


def new_tree(files=None):
    """A tree with a store and one checkpoint of files {rel: bytes}."""
    root = T.tempdir()
    for rel, data in (files or {}).items():
        full = os.path.join(root, rel)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(data)
    T.init(root)
    T.checkpoint(root, "base")
    return root


def modes(results):
    return [r["mode"] for r in results]


def said(results):
    """What each checkpoint printed (a scan says why), for a failure's message."""
    return "\n".join("  %s: %s" % (r["msg"], r.get("said", "")) for r in results)


def libc_path():
    """A harmless library to preload instead of the interposer (tests of the
    session's side alone, with the records written by fakepreload)."""
    import ctypes.util
    for cand in ("/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6"):
        if os.path.exists(cand):
            return cand
    return ctypes.util.find_library("c")
