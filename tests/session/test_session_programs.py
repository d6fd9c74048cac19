#!/usr/bin/env python3
"""Real programs under `metamori run` with the real interposer.

Each test runs a program (sqlite3, git, tar, python, and writers in
progs.c: threads, fork, stdio, O_APPEND, shared mmap) in stages, asks the
session for a checkpoint between stages (as `metamori checkpoint` from the
job's own script), and takes a manifest at each. Then every checkpoint is
restored (into a new directory and in place) and compared with its
manifest, and the program's own consistency check runs on it (PRAGMA
integrity_check, git fsck). The lockstep test checks that a checkpoint
never catches two files written one after the other out of step.
"""
import os
import shutil
import subprocess
import sys
import tarfile

import mtmtest as T
import sessiontest as S

BUILD = os.path.dirname(os.path.abspath(T.METAMORI))
PRELOAD = os.path.join(BUILD, "libmetamori-preload.so")
_progs = None


def progs():
    """Builds progs.c once; returns its path."""
    global _progs
    if _progs is None:
        out = os.path.join(T.tempdir("mtm-progs-"), "progs")
        subprocess.run(["cc", "-O1", "-pthread", "-o", out, os.path.join(S.HERE, "progs.c")], check=True)
        _progs = out
    return _progs


def scenario(root, body, **kw):
    p, res = S.run_scenario(root, body, preload=PRELOAD, **kw)
    if not res:
        raise T.Failure("the scenario made no checkpoint:\n%s%s" % (p.stdout, p.stderr))
    if "tracked" not in S.modes(res):
        raise T.Failure("no checkpoint was tracked: %s\n%s" % (S.modes(res), p.stderr))
    return p, res


DRIVE = r'''
def drive(args, steps, name):
    p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    for i in range(steps):
        p.stdin.write("step\n"); p.stdin.flush()
        line = p.stdout.readline()
        if line != "ok\n":
            raise SystemExit("%s: step %d: %r" % (name, i, line))
        ck("%s %d" % (name, i))
    p.stdin.close()
    if p.wait():
        raise SystemExit("%s failed" % name)
    ck("%s end" % name)
'''


def writer_test(mode, n=None, steps=4):
    root = S.new_tree({"keep": b"untouched\n"})
    args = [progs(), mode] + ([str(n)] if n else [])
    p, res = scenario(root, DRIVE + "drive(%r, %d, %r)\n" % (args, steps, mode))
    S.check_restores(root, res)
    T.rmtree(root)
    return res


def test_threads():
    writer_test("threads", 6)


def test_fork():
    writer_test("fork", 4)


def test_stdio():
    writer_test("stdio")


def test_append():
    res = writer_test("append", steps=5)
    if S.modes(res)[1:] != ["tracked"] * (len(res) - 1):
        raise T.Failure("an O_APPEND logger should be tracked: %s" % S.modes(res))


def test_mmap():
    writer_test("mmap")


def sqlite_check(d, r):
    out = subprocess.run(["sqlite3", os.path.join(d, "db.sqlite"), "PRAGMA integrity_check; SELECT count(*), "
                          "coalesce(sum(length(v)), 0) FROM t;"], capture_output=True, text=True)
    want = "ok\n%d|%d\n" % (r["rows"], r["bytes"])
    if out.returncode or out.stdout != want:
        raise T.Failure("checkpoint %d (%s): sqlite3 says %r%r, expected %r" % (r["id"], r["msg"], out.stdout,
                                                                               out.stderr, want))


SQLITE = r'''
# one long-lived sqlite3 shell, fed through a pipe; the database stays open
# (WAL: the -wal and the shared-memory -shm files live) across checkpoints
sq = subprocess.Popen(["sqlite3", P("db.sqlite")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
def sql(text):
    sq.stdin.write(text + "\n.print done\n"); sq.stdin.flush()
    out = []
    while True:
        line = sq.stdout.readline()
        if not line:
            raise SystemExit("sqlite3 died")
        if line == "done\n":
            return "".join(out)
        out.append(line)
sql("PRAGMA journal_mode=%(mode)s; PRAGMA cache_size=8; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);")
rows = nbytes = 0
for stage in range(4):
    n = 50 + stage * 40
    sql("BEGIN; " + " ".join("INSERT INTO t(v) VALUES(randomblob(%%d));" %% (500 + i * 37 %% 3000) for i in range(n)) + " COMMIT;")
    rows += n
    nbytes += sum(500 + i * 37 %% 3000 for i in range(n))
    ck("stage %%d" %% stage, rows=rows, bytes=nbytes)
    if stage == 1:
        sql("DELETE FROM t WHERE id %% 3 = 0;")
        r = sql("SELECT count(*), coalesce(sum(length(v)), 0) FROM t;").split("|")
        rows, nbytes = int(r[0]), int(r[1])
        ck("after delete", rows=rows, bytes=nbytes)
# in the middle of a transaction (pages spilled to the file with a tiny cache):
# a restore sees only what was committed
sql("BEGIN; " + " ".join("INSERT INTO t(v) VALUES(randomblob(4000));" for i in range(200)))
ck("mid-transaction", rows=rows, bytes=nbytes)
sql("COMMIT;")
rows += 200
nbytes += 200 * 4000
ck("committed", rows=rows, bytes=nbytes)
sql("VACUUM;")
ck("vacuum", rows=rows, bytes=nbytes)
sq.stdin.close(); sq.wait()
ck("closed", rows=rows, bytes=nbytes)
'''


def sqlite_test(mode):
    root = S.new_tree({"README": b"a database lives here\n"})
    p, res = scenario(root, SQLITE % {"mode": mode})
    S.check_restores(root, res, check=sqlite_check)
    T.rmtree(root)


def test_sqlite_rollback_journal():
    sqlite_test("DELETE")


def test_sqlite_wal():
    sqlite_test("WAL")


GIT = r'''
def git(*a):
    subprocess.run(["git", "-C", P("repo")] + list(a), check=True, capture_output=True)
os.mkdir(P("repo"))
git("init", "-q")
git("config", "user.email", "t@example.com")
git("config", "user.name", "t")
git("config", "gc.auto", "0")
n = 0
for stage in range(4):
    for i in range(30):
        with open(P("repo/f%d.txt" % i), "a") as f:
            f.write("stage %d line for file %d\n" % (stage, i) * (i + 1))
    git("add", "-A")
    git("commit", "-q", "-m", "stage %d" % stage)
    n += 1
    ck("commit %d" % stage, commits=n)
git("repack", "-a", "-d", "-q")
ck("repack", commits=n)
os.unlink(P("repo/f3.txt"))
git("commit", "-q", "-a", "-m", "remove")
n += 1
git("gc", "--prune=now", "-q")
ck("gc", commits=n)
'''


def git_check(d, r):
    repo = os.path.join(d, "repo")
    f = subprocess.run(["git", "-C", repo, "fsck", "--full", "--strict"], capture_output=True, text=True)
    c = subprocess.run(["git", "-C", repo, "rev-list", "--count", "HEAD"], capture_output=True, text=True)
    if f.returncode or c.stdout.strip() != str(r["commits"]):
        raise T.Failure("checkpoint %d (%s): git fsck %d %s; %s commits, expected %d" % (
            r["id"], r["msg"], f.returncode, f.stderr[:300], c.stdout.strip(), r["commits"]))


def test_git():
    if not shutil.which("git"):
        raise T.Skip("no git (Debian package git)")
    root = S.new_tree({})
    p, res = scenario(root, GIT, env={"GIT_CONFIG_NOSYSTEM": "1", "HOME": root})
    S.check_restores(root, res, check=git_check)
    T.rmtree(root)


def test_tar_extract_delete():
    src = T.tempdir("mtm-tarsrc-")
    for i in range(20):
        os.makedirs(os.path.join(src, "pkg", "d%d" % (i % 4)), exist_ok=True)
        T.write_file(os.path.join(src, "pkg", "d%d" % (i % 4), "f%d" % i), os.urandom(1000 + i * 997), mode=0o640 + (i % 2))
    os.symlink("d0/f0", os.path.join(src, "pkg", "link"))
    tarball = os.path.join(T.tempdir("mtm-tar-"), "pkg.tar")
    with tarfile.open(tarball, "w") as tf:
        tf.add(os.path.join(src, "pkg"), arcname="pkg")
    root = S.new_tree({"other": b"x"})
    body = r'''
def sh(cmd):
    subprocess.run(cmd, shell=True, check=True, cwd=ROOT)
sh("tar -xf %(tar)s")
ck("extracted")
sh("rm -rf pkg/d1 pkg/link && rm pkg/d2/f2")
ck("deleted")
sh("tar -xf %(tar)s pkg/d1")
ck("partly again")
sh("rm -rf pkg")
ck("all gone")
''' % {"tar": tarball}
    p, res = scenario(root, body)
    S.check_restores(root, res)
    T.rmtree(root)
    T.rmtree(src)


def test_python_writer():
    root = S.new_tree({"data/old.bin": os.urandom(100000)})
    body = r'''
import random
rng = random.Random(3)
for stage in range(4):
    with open(P("data/old.bin"), "r+b") as f:
        for k in range(5):
            f.seek(rng.randrange(0, 100000)); f.write(os.urandom(rng.randrange(1, 9000)))
    with open(P("data/new%d.json" % stage), "w") as f:
        json.dump({"stage": stage, "x": list(range(stage * 100))}, f)
    tmp = P("data/state.tmp")
    with open(tmp, "w") as f:
        f.write("state %d\n" % stage * 100)
    os.replace(tmp, P("data/state"))
    os.makedirs(P("data/sub%d/deeper" % stage))
    os.chmod(P("data/new%d.json" % stage), 0o600)
    os.truncate(P("data/old.bin"), 100000 - stage * 1000)
    ck("stage %d" % stage)
'''
    p, res = scenario(root, body)
    S.check_restores(root, res)
    T.rmtree(root)


def test_lockstep_consistency():
    root = S.new_tree({})
    body = r'''
lp = subprocess.Popen([%r, "lockstep"], stdin=subprocess.PIPE, cwd=ROOT)
while not (os.path.exists(P("A")) and os.path.exists(P("B")) and os.path.getsize(P("B")) == 64 * 4096):
    time.sleep(0.01)
for i in range(8):
    time.sleep(0.05)
    ck("lockstep %%d" %% i, manifest=False)
lp.stdin.close(); lp.wait()
''' % progs()
    p, res = scenario(root, body)
    S.check_restores(root, res, in_place=False, check=lockstep_check)
    T.rmtree(root)


def lockstep_check(d, r):
    import struct
    counts = []
    for name in ("A", "B"):
        data = open(os.path.join(d, name), "rb").read()
        vals = set(struct.unpack("<%dQ" % (len(data) // 8), data))
        if len(data) != 64 * 4096 or len(vals) != 1:
            raise T.Failure("checkpoint %d: %s is torn: %d bytes, counters %s" % (r["id"], name, len(data),
                                                                                  sorted(vals)[:5]))
        counts.append(vals.pop())
    if counts[0] - counts[1] not in (0, 1):
        raise T.Failure("checkpoint %d: A=%d and B=%d out of step" % (r["id"], counts[0], counts[1]))


def scatter_check(d, r):
    import struct
    j = struct.unpack("<Q", open(os.path.join(d, "J"), "rb").read(8))[0]
    data = open(os.path.join(d, "D"), "rb").read()
    last = {}
    for n in range(1, j + 2):  # j + 1: the write under way when J still said j
        last.setdefault((n * 2654435761) % 256, []).append(n)
    for b in range(256):
        vals = set(struct.unpack("<512Q", data[b * 4096:(b + 1) * 4096]))
        if len(vals) != 1:
            raise T.Failure("checkpoint %d: block %d of D is torn: %s" % (r["id"], b, sorted(vals)[:4]))
        v = vals.pop()
        ns = [n for n in last.get(b, []) if n <= j]
        want = {ns[-1] if ns else 0}
        if j + 1 in last.get(b, []):
            want.add(j + 1)
        if v not in want:
            raise T.Failure("checkpoint %d: J=%d but block %d of D holds %d (expected %s)" % (r["id"], j, b, v,
                                                                                          sorted(want)))


def test_scattered_writes_consistency():
    # blocks of D written one by one, J naming the last: the pre-copy reads
    # D while it changes; every checkpoint must still match what J says
    root = S.new_tree({})
    body = r'''
sp = subprocess.Popen([%r, "scatter"], stdin=subprocess.PIPE, cwd=ROOT)
while not (os.path.exists(P("J")) and os.path.getsize(P("J")) == 8):
    time.sleep(0.01)
for i in range(8):
    time.sleep(0.03)
    ck("scatter %%d" %% i, manifest=False)
sp.stdin.close(); sp.wait()
''' % progs()
    p, res = scenario(root, body)
    S.check_restores(root, res, in_place=False, check=scatter_check)
    T.rmtree(root)


def test_concurrent_requests_and_every():
    # --every, SIGUSR1 and several shells asking at once, while the pair is
    # written in lockstep: every checkpoint made is consistent
    root = S.new_tree({})
    body = r'''
import signal, threading
lp = subprocess.Popen([%r, "lockstep"], stdin=subprocess.PIPE, cwd=ROOT)
while not (os.path.exists(P("A")) and os.path.exists(P("B")) and os.path.getsize(P("B")) == 64 * 4096):
    time.sleep(0.01)
def asker(k):
    for i in range(3):
        subprocess.run([T.METAMORI, "-C", ROOT, "checkpoint", "-q", "-m", "asker %%d" %% k], check=True,
                       stdout=subprocess.DEVNULL)
th = [threading.Thread(target=asker, args=(k,)) for k in range(4)]
for x in th: x.start()
for i in range(3):
    os.kill(os.getppid(), signal.SIGUSR1)
    time.sleep(0.1)
for x in th: x.join()
lp.stdin.close(); lp.wait()
ck("end", manifest=False)
''' % progs()
    p, res = scenario(root, body, args=["--every", "0.1"])
    log = T.log_json(root)
    made = [{"id": c["id"], "msg": c["message"], "manifest": None} for c in log if c["id"] > 1]
    if len(made) < 4 * 3 + 2:
        raise T.Failure("only %d checkpoints were made: %s" % (len(made), [c["msg"] for c in made]))
    # --every starts at once, while the writer is still creating A and B:
    # only checkpoints begun after it was ready (the first asker's, and
    # every later id: a session makes them one at a time) must be in step
    first = min(m["id"] for m in made if m["msg"].startswith("asker "))
    S.check_restores(root, [m for m in made if m["msg"] != "end" and m["id"] >= first], in_place=False,
                     check=lockstep_check)
    T.rmtree(root)


def test_prune_and_tag_during_the_session():
    # prune (folding, gc) and tag run alongside the session between its
    # checkpoints; what is kept restores exactly, and tracking goes on
    root = S.new_tree({"a": os.urandom(200000), "b": b"b" * 5000})
    body = r'''
import mmap
def mtm(*a):
    subprocess.run([T.METAMORI, "-C", ROOT] + list(a), check=True, stdout=subprocess.DEVNULL)
f = open(P("a"), "r+b")
m = mmap.mmap(f.fileno(), 0)       # compared whole at every checkpoint while mapped
for i in range(8):
    m[i * 9000:i * 9000 + 10] = b"mapped %03d" % i
    with open(P("b"), "ab") as g:
        g.write(b"line %d\n" % i)
    with open(P("c%d" % i), "wb") as g:
        g.write(os.urandom(3000))
    if i % 3 == 2:
        os.unlink(P("c%d" % (i - 1)))
    r = ck("step %d" % i)
    if i == 2:
        mtm("tag", str(r["id"]), "kept")
    if i % 2 == 1:
        mtm("prune", "--keep-last", "2", "--gc-threshold", "0")
m.close(); f.close()
ck("end")
'''
    p, res = scenario(root, body)
    kept = {c["id"] for c in T.log_json(root)}
    res = [r for r in res if r["id"] in kept]
    if len(res) < 4:
        raise T.Failure("prune kept only %s" % sorted(kept))
    S.check_restores(root, res)
    T.run(["-C", root, "verify", "--data"])
    T.rmtree(root)


def test_prune_folds_what_the_precopy_looked_up():
    # The pre-copy's passes keep the parent's entry of each file they copy
    # blocks of, and the checkpoint's collect takes it from there (SESSION.md).
    # A prune between a pass and the checkpoint may fold the version that
    # entry names into the head (a renumbering): the checkpoint, and the next
    # ones, must still restore exactly, and the store verify.
    root = S.new_tree({"a": os.urandom(64 * 4096), "b": b"b" * 5000})
    body = r'''
def mtm(*a):
    subprocess.run([T.METAMORI, "-C", ROOT] + list(a), check=True, stdout=subprocess.DEVNULL)
ck("a written")
for i in range(3):                      # a's entry stays at an early version
    with open(P("b"), "ab") as g:
        g.write(b"line %d\n" % i)
    ck("b %d" % i)
for i in range(3):
    with open(P("a"), "r+b") as f:      # a pass copies the block and looks a's entry up ...
        f.seek(4096 * (7 + 9 * i)); f.write(os.urandom(4096))
    time.sleep(0.3)
    mtm("prune", "--keep-last", "1", "--gc-threshold", "0")   # ... then a's version is folded into the head
    ck("after prune %d" % i)
with open(P("a"), "r+b") as f:
    f.seek(4096 * 40); f.write(b"last")
ck("end")
'''
    p, res = scenario(root, body)
    kept = {c["id"] for c in T.log_json(root)}
    res = [r for r in res if r["id"] in kept]
    if len(res) < 2:
        raise T.Failure("prune kept only %s" % sorted(kept))
    S.check_restores(root, res)
    T.run(["-C", root, "verify", "--data"])
    T.rmtree(root)


def sanitizer_flags(lib):
    """-fsanitize flags matching the sanitizer runtimes LIB was linked with."""
    needed = subprocess.run(["readelf", "-d", lib], capture_output=True, text=True, check=True).stdout
    flags = [f for rt, f in (("libasan.so", "address"), ("libubsan.so", "undefined")) if rt in needed]
    return ["-fsanitize=" + ",".join(flags)] if flags else []


def test_linked_program_checkpoints_itself():
    # mtm_checkpoint() in a program linked with libmetamori asks the session
    # Built the way a program linking this build must be: against a
    # sanitized libmetamori the program is sanitized too, so that the ASan
    # runtime comes first in its link order (ASan's own rule); an unsanitized
    # program loading it dies in the runtime's start, before main.
    exe = os.path.join(T.tempdir("mtm-linked-"), "linked")
    subprocess.run(["cc"] + sanitizer_flags(os.path.join(BUILD, "libmetamori.so")) +
                   ["-I", os.path.join(S.HERE, "..", "..", "include"), "-o", exe, os.path.join(S.HERE, "linked.c"),
                    "-L", BUILD, "-lmetamori", "-Wl,-rpath," + BUILD], check=True)
    root = S.new_tree({})
    p = subprocess.run([T.METAMORI, "-C", root, "run", "-q", "--", exe, root, "4"], capture_output=True, text=True,
                       env=dict(os.environ, METAMORI_PRELOAD=PRELOAD))
    if p.returncode:
        raise T.Failure("linked program failed: %s" % p.stderr)
    lines = [l.split() for l in p.stdout.splitlines()]
    if len(lines) != 4 or any(t != "1" for _, t in lines):
        raise T.Failure("expected 4 tracked checkpoints, got %r" % p.stdout)
    data = bytearray()
    for i, (cid, _) in enumerate(lines):
        end = i * 3000 + 5000
        data.extend(b"\0" * max(0, end - len(data)))
        data[i * 3000:end] = bytes([ord("a") + i]) * 5000
        to = os.path.join(T.tempdir(), "out")
        T.restore(root, int(cid), to=to)
        if open(os.path.join(to, "linked.dat"), "rb").read() != bytes(data):
            raise T.Failure("checkpoint %s of the linked program differs" % cid)
        T.rmtree(os.path.dirname(to))
    T.rmtree(root)


if __name__ == "__main__":
    if not os.path.exists(PRELOAD):
        T.exit_skipped("no interposer at %s" % PRELOAD)
    T.main([test_append, test_threads, test_fork, test_stdio, test_mmap, test_python_writer, test_tar_extract_delete,
            test_sqlite_rollback_journal, test_sqlite_wal, test_git, test_lockstep_consistency, test_scattered_writes_consistency, test_concurrent_requests_and_every,
            test_prune_and_tag_during_the_session, test_prune_folds_what_the_precopy_looked_up,
            test_linked_program_checkpoints_itself])
