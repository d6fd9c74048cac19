"""Shared helpers for Metamori's end-to-end tests.

Tests drive the real `metamori` binary (path in $METAMORI) on real files in
temporary directories, and compare trees by a manifest of content hash and
metadata taken at checkpoint time.
"""
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile

METAMORI = os.environ.get("METAMORI") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "metamori")


class Failure(Exception):
    pass


def run(args, cwd=None, check=True, env=None, input=None):
    """Runs metamori ARGS; returns CompletedProcess (text). check: exit 0 required."""
    p = subprocess.run([METAMORI] + list(args), cwd=cwd, capture_output=True, text=True,
                       env=env, input=input)
    if check and p.returncode != 0:
        raise Failure("metamori %s failed (%d):\n%s%s" % (" ".join(args), p.returncode, p.stdout, p.stderr))
    return p


def run_fail(args, cwd=None, env=None):
    """Runs metamori ARGS expecting failure: exit 1 and one 'metamori: ' line on stderr."""
    p = run(args, cwd=cwd, check=False, env=env)
    if p.returncode != 1:
        raise Failure("expected exit 1 from metamori %s, got %d\n%s%s" % (" ".join(args), p.returncode, p.stdout, p.stderr))
    lines = [l for l in p.stderr.splitlines() if l]
    if not lines or not lines[-1].startswith("metamori: "):
        raise Failure("expected a 'metamori: <what>: <why>' error, got:\n" + p.stderr)
    return p


def checkpoint(root, msg=None):
    """Makes a checkpoint of root; returns its id (int)."""
    args = ["-C", root, "checkpoint", "-q"]
    if msg:
        args += ["-m", msg]
    return int(run(args).stdout.strip())


def manifest(root, ignore=(".metamori",), mtimes=True):
    """Content hash and metadata of every entry under root, keyed by relative path.

    Regular files: ('f', mode, size, sha256, mtime_ns); dirs: ('d', mode, mtime_ns);
    symlinks: ('l', target). The root itself is not included.
    """
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            rel_dir = ""
            dirnames[:] = [d for d in dirnames if d not in ignore]
        for name in sorted(dirnames + filenames):
            rel = os.path.join(rel_dir, name) if rel_dir else name
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("d", stat.S_IMODE(st.st_mode), st.st_mtime_ns if mtimes else 0)
            elif stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                with open(full, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
                out[rel] = ("f", stat.S_IMODE(st.st_mode), st.st_size, h.hexdigest(),
                            st.st_mtime_ns if mtimes else 0)
        # symlinked dirs are listed by os.walk in dirnames but not followed
    return out


def assert_same(expected, actual, what):
    if expected == actual:
        return
    lines = ["%s: trees differ" % what]
    for k in sorted(set(expected) | set(actual)):
        if expected.get(k) != actual.get(k):
            lines.append("  %s: expected %r, got %r" % (k, expected.get(k), actual.get(k)))
            if len(lines) > 20:
                break
    raise Failure("\n".join(lines))


def tempdir(prefix="mtm-test-"):
    return tempfile.mkdtemp(prefix=prefix)


def main(tests):
    """Runs test functions; prints a closing 'N passed, N failed' line."""
    passed = failed = 0
    for t in tests:
        try:
            t()
            passed += 1
            print("ok   %s" % t.__name__)
        except Exception as e:  # report every failure, then exit non-zero
            failed += 1
            print("FAIL %s: %s" % (t.__name__, e))
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)
