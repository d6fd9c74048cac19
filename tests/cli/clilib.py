"""Helpers of the command-line tests (tests/cli): raw bytes out of metamori
(names are bytes; the text helpers of mtmtest would decode them), and a
store with a few odd names."""
import json
import os
import subprocess

import mtmtest as T
from mtmtest import Failure

ESC = b"\x1b"


def expect(cond, what):
    if not cond:
        raise Failure(what)


def raw(args, cwd=None, env=None, input=None):
    """Runs metamori ARGS; returns (exit status, stdout bytes, stderr bytes)."""
    p = subprocess.run([os.path.abspath(T.METAMORI)] + list(args), cwd=cwd, capture_output=True, env=env, input=input)
    return p.returncode, p.stdout, p.stderr


def ok(args, **kw):
    rc, out, err = raw(args, **kw)
    expect(rc == 0, "metamori %r: exit %d: %r %r" % (args, rc, out, err))
    return out


def as_json(args, **kw):
    """Runs a --json command: its stdout must be valid UTF-8 and one JSON document."""
    out = ok(args, **kw)
    try:
        text = out.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Failure("metamori %r: output is not UTF-8 (%s): %r" % (args, e, out[:200]))
    try:
        return json.loads(text)
    except ValueError as e:
        raise Failure("metamori %r: not JSON (%s): %r" % (args, e, text[:300]))


def store(prefix="mtm-cli-"):
    root = T.tempdir(prefix)
    T.init(root)
    return root


def write(root, name, data):
    """name: bytes (any file name) or str."""
    path = os.path.join(os.fsencode(root), os.fsencode(name))
    with open(path, "wb") as f:
        f.write(data)
    return path


def mtm_id(out):
    return int(out.decode().strip())
