#!/usr/bin/env python3
"""Seeded random histories under `metamori run` with the real interposer.

A Python program makes random changes to a tree (writes at random offsets,
appends, truncations, creations, removals, renames of files and
directories, symlinks, chmod, utime, hard links now and then, other
processes: a shell, awk's stdio, dd, sed -i; shared writable mappings,
checkpointed while mapped or not) and asks the
session for a checkpoint every few operations, taking a manifest each time.
Then every checkpoint must restore exactly, into a new directory and in
place. METAMORI_MODEL_SEEDS / METAMORI_MODEL_OPS make it bigger.
"""
import os

import mtmtest as T
import sessiontest as S

BUILD = os.path.dirname(os.path.abspath(T.METAMORI))
PRELOAD = os.path.join(BUILD, "libmetamori-preload.so")

BODY = r'''
import random
rng = random.Random(%(seed)d)
def files():
    out = []
    for d, dirs, fs in os.walk(ROOT):
        if d == ROOT:
            dirs[:] = [x for x in dirs if x != ".metamori"]
        for f in fs:
            p = os.path.join(d, f)
            if not os.path.islink(p):
                out.append(os.path.relpath(p, ROOT))
    return out
def dirs():
    out = [""]
    for d, ds, fs in os.walk(ROOT):
        if d == ROOT:
            ds[:] = [x for x in ds if x != ".metamori"]
        for x in ds:
            p = os.path.join(d, x)
            if not os.path.islink(p):
                out.append(os.path.relpath(p, ROOT))
    return out
def name():
    return "%%s%%d" %% (rng.choice("abcxyz"), rng.randrange(50))
def data(n):
    return bytes(rng.randrange(256) for _ in range(min(n, 64))) * (n // 64 + 1)
for op in range(%(ops)d):
    fs, ds = files(), dirs()
    k = rng.randrange(108)
    try:
        if k < 25 and fs:                       # write at a random offset (may extend)
            p = P(rng.choice(fs))
            with open(p, "r+b") as f:
                size = os.fstat(f.fileno()).st_size
                f.seek(rng.randrange(0, size + 20000))
                f.write(data(rng.randrange(1, 20000)))
        elif k < 35 and fs:                     # append
            fd = os.open(P(rng.choice(fs)), os.O_WRONLY | os.O_APPEND)
            os.write(fd, data(rng.randrange(1, 5000)))
            os.close(fd)
        elif k < 42 and fs:                     # truncate shorter or longer
            p = P(rng.choice(fs))
            os.truncate(p, rng.randrange(0, os.path.getsize(p) + 9000))
        elif k < 55:                            # create (or replace with O_TRUNC)
            with open(P(os.path.join(rng.choice(ds), name())), "wb") as f:
                f.write(data(rng.randrange(0, 30000)))
        elif k < 62 and fs:                     # remove
            os.unlink(P(rng.choice(fs)))
        elif k < 70 and fs:                     # rename a file (maybe over another)
            os.rename(P(rng.choice(fs)), P(os.path.join(rng.choice(ds), name())))
        elif k < 75:                            # mkdir
            os.mkdir(P(os.path.join(rng.choice(ds), name())))
        elif k < 79 and len(ds) > 1:            # rename a directory
            src = rng.choice(ds[1:])
            dst = os.path.join(rng.choice(ds), name())
            if not (dst + "/").startswith(src + "/"):
                os.rename(P(src), P(dst))
        elif k < 82 and len(ds) > 1:            # remove a directory tree
            import shutil
            shutil.rmtree(P(rng.choice(ds[1:])))
        elif k < 86:                            # symlink
            os.symlink("target-%%d" %% rng.randrange(9), P(os.path.join(rng.choice(ds), name())))
        elif k < 90 and fs:                     # chmod
            os.chmod(P(rng.choice(fs)), rng.choice([0o600, 0o644, 0o640, 0o755]))
        elif k < 93 and fs:                     # utime
            t = rng.randrange(10**9, 2 * 10**9) * 10**9
            os.utime(P(rng.choice(fs)), ns=(t, t))
        elif k < 95 and fs:                     # replace through a temporary name
            tmp = P(os.path.join(rng.choice(ds), ".tmp-%%d" %% op))
            with open(tmp, "wb") as f:
                f.write(data(rng.randrange(0, 20000)))
            os.replace(tmp, P(rng.choice(fs)))
        elif k < 97 and fs and %(links)d:        # a hard link, gone again soon
            src = P(rng.choice(fs))
            dst = P(os.path.join(rng.choice(ds), name()))
            os.link(src, dst)
            with open(dst, "r+b") as f:
                f.write(b"through the other name")
            os.unlink(dst)
        elif k < 102 and fs:                    # other processes: a shell, awk (stdio), dd, sed -i
            p = P(rng.choice(fs))
            cmd = rng.choice(["echo shell %%d >> '%%s'", "awk 'BEGIN { print \"awk %%d\" >> \"%%s\" }'",
                              "dd if=/dev/urandom of='%%s' bs=1000 count=3 seek=%%d conv=notrunc status=none",
                              "sed -i 's/a/b%%d/g' '%%s'"])
            n = rng.randrange(9)
            cmd = cmd %% ((p, n) if cmd.startswith("dd") else (n, p))
            subprocess.run(cmd, shell=True, check=False, stderr=subprocess.DEVNULL)
        elif k < 106 and fs:                    # a shared writable mapping
            import mmap
            p = P(rng.choice(fs))
            if os.path.getsize(p) > 0:
                with open(p, "r+b") as f:
                    m = mmap.mmap(f.fileno(), 0)
                    for _ in range(3):
                        at = rng.randrange(len(m))
                        m[at:at + 1] = bytes([rng.randrange(256)])
                    if rng.randrange(2):
                        ck("mapped %%d" %% op)  # while mapped
                    m.close()
        else:
            ck("op %%d" %% op)
    except (FileExistsError, FileNotFoundError, IsADirectoryError, NotADirectoryError, OSError):
        pass
    if op %% %(every)d == %(every)d - 1:
        ck("op %%d" %% op)
ck("end")
'''


def one(seed, ops, every):
    files = {"d%d/f%d" % (i % 3, i): bytes([i]) * (1000 * i + 17) for i in range(8)}
    root = S.new_tree(files)
    links = 0 if os.environ.get("METAMORI_MODEL_NOLINK") else 1
    p, res = S.run_scenario(root, BODY % {"seed": seed, "ops": ops, "every": every, "links": links}, preload=PRELOAD)
    if len(res) < ops // every:
        raise T.Failure("seed %d: only %d checkpoints:\n%s" % (seed, len(res), p.stderr[-2000:]))
    try:
        S.check_restores(root, res)
    except T.Failure as e:
        raise T.Failure("seed %d: %s" % (seed, e))
    T.rmtree(root)
    return S.modes(res)


def test_random_histories():
    seeds = int(os.environ.get("METAMORI_MODEL_SEEDS", "4"))
    ops = int(os.environ.get("METAMORI_MODEL_OPS", "150"))
    counts = {}
    for seed in range(seeds):
        for m in one(seed, ops, 10):
            counts[m] = counts.get(m, 0) + 1
    print("checkpoints: %s" % counts)
    if not counts.get("tracked"):
        raise T.Failure("no checkpoint was tracked: %s" % counts)


if __name__ == "__main__":
    if not os.path.exists(PRELOAD):
        T.exit_skipped("no interposer at %s" % PRELOAD)
    T.main([test_random_histories])
