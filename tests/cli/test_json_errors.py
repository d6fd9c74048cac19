#!/usr/bin/env python3
"""A failing --json command prints no JSON (issue 20; metamori(1), JSON
OUTPUT): stdout is empty, stderr holds the one-line error, the exit status
is 1. A document is printed only when complete. Every reporting command is
failed at each of its reads in turn (METAMORI_FAULT=read:N:EIO, N swept up
to the first run that succeeds): each run's stdout is empty or exactly one
valid JSON document. verify is the one command that reports a failure as a
document: problems found give {"ok": false, "problems": [...]} and exit 1."""
import json
import os

import mtmtest as T
from clilib import expect, ok, raw, store, write

COMMANDS = [
    ["status", "--json"],
    ["diff", "--json", "1", "2"],
    ["diff", "--json", "1"],
    ["restore", "--dry-run", "--json", "1"],
    ["verify", "--data", "--json"],
    ["log", "--json"],
    ["ls", "--json", "1"],
    ["tag", "--json"],
    ["du", "--json"],
    ["prune", "--json", "--dry-run", "--keep-last", "1"],
]


def test_failing_json_commands_print_nothing():
    root = store("mtm-json-err-")
    for name in "abc":
        write(root, name, name.encode() * 5000)
    ok(["-C", root, "checkpoint", "-q"])
    write(root, "b", b"B" * 7000)
    write(root, "d", b"d")
    ok(["-C", root, "checkpoint", "-q"])
    ok(["-C", root, "tag", "1", "first"])
    write(root, "a", b"A")
    write(root, "e", b"e")
    for args in COMMANDS:
        failed = 0
        for n in range(1, 300):
            env = dict(os.environ, METAMORI_FAULT="read:%d:EIO" % n)
            rc, out, err = raw(["-C", root] + args, env=env)
            what = "%s with read %d failing" % (" ".join(args), n)
            if rc == 0:
                expect(json.loads(out.decode()) is not None and err == b"", "%s: %r %r" % (what, out, err))
                break
            failed += 1
            lines = err.decode().splitlines()
            if args[0] == "verify" and out:
                doc = json.loads(out.decode())
                expect(rc == 1 and doc["ok"] is False and doc["problems"], "%s: %r" % (what, doc))
                continue
            expect(rc == 1 and out == b"", "%s: exit %d, stdout %r" % (what, rc, out))
            expect(lines and lines[-1].startswith("metamori: "), "%s: stderr %r" % (what, err))
        else:
            raise T.Failure("%s never succeeded" % " ".join(args))
        expect(failed > 0, "%s: no read failed" % " ".join(args))


if __name__ == "__main__":
    T.main([test_failing_json_commands_print_nothing])
