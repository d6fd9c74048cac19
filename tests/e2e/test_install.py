#!/usr/bin/env python3
"""`cmake --install` into a fresh prefix gives a working tool: the installed
metamori finds its interposer (`run` tracks), the header and the library
build and link the README's kind of program, and the man page is there."""
import os
import subprocess

import mtmtest as T
from mtmtest import Failure

BUILD = os.environ["METAMORI_BUILD_DIR"]
SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def expect(cond, what):
    if not cond:
        raise Failure(what)


def sh(args, **kw):
    p = subprocess.run(args, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise Failure("%s failed (%d): %s%s" % (" ".join(args), p.returncode, p.stdout, p.stderr))
    return p


def test_install_prefix():
    prefix = T.tempdir("mtm-install-")
    tree = T.tempdir("mtm-install-tree-")
    try:
        sh(["cmake", "--install", BUILD, "--prefix", prefix])
        m = os.path.join(prefix, "bin", "metamori")
        expect(os.access(m, os.X_OK), "no bin/metamori")
        expect(os.path.exists(os.path.join(prefix, "lib", "metamori", "libmetamori-preload.so")), "no interposer")
        expect(os.path.exists(os.path.join(prefix, "include", "metamori.h")), "no header")
        expect(any(f.startswith("libmetamori.so") for f in os.listdir(os.path.join(prefix, sh(
            ["sh", "-c", "ls -d lib*/ | head -1"], cwd=prefix).stdout.strip()))), "no libmetamori.so")
        mans = [os.path.join(d, f) for d, _, fs in os.walk(prefix) for f in fs if f == "metamori.1"]
        expect(mans, "no man page")
        env = dict(os.environ)
        env.pop("METAMORI_PRELOAD", None)
        sh([m, "-C", tree, "init"], env=env)
        sh([m, "-C", tree, "run", "-q", "--", "sh", "-c",
            "echo one > a; %s checkpoint -q >/dev/null; echo two >> a; %s checkpoint -q >/dev/null" % (m, m)],
           env=env, cwd=tree)
        log = sh([m, "-C", tree, "log", "--json"], env=env).stdout
        expect(log.count('"id"') == 2, "two checkpoints expected: %s" % log)
        to = os.path.join(tree, "..", os.path.basename(tree) + "-to")
        sh([m, "-C", tree, "restore", "1", "--to", to], env=env)
        with open(os.path.join(to, "a")) as f:
            expect(f.read() == "one\n", "restore of 1")
        T.rmtree(to)
    finally:
        T.rmtree(prefix)
        T.rmtree(tree)


if __name__ == "__main__":
    T.main([test_install_prefix])
