"""Shared helpers for Metamori's end-to-end tests.

Tests drive the real `metamori` binary (path in $METAMORI) on real files in
temporary directories, and compare trees by a manifest of content hash and
metadata taken at checkpoint time.
"""
import hashlib
import os
import shutil
import struct
import stat
import subprocess
import sys
import tempfile

METAMORI = os.environ.get("METAMORI") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "metamori")


class Failure(Exception):
    pass


def expect(cond, what):
    """Fails the test with what unless cond."""
    if not cond:
        raise Failure(what)


def with_store(fn, prefix="mtm-store-"):
    """Decorator: runs fn(root) on a new initialized store, removed after."""
    def wrapper():
        root = tempdir(prefix)
        try:
            init(root)
            fn(root)
        finally:
            rmtree(root)
    wrapper.__name__ = fn.__name__
    return wrapper


def run(args, cwd=None, check=True, env=None, input=None):
    """Runs metamori ARGS; returns CompletedProcess (text). check: exit 0 required."""
    p = subprocess.run([METAMORI] + list(args), cwd=cwd, capture_output=True, text=True,
                       env=env, input=input)
    if check and p.returncode != 0:
        raise Failure("metamori %s failed (%d):\n%s%s" % (" ".join(args), p.returncode, p.stdout, p.stderr))
    return p


def readback_env(env=None):
    """The environment for a command the test runs only to read a result
    back for its own comparison (a checkpoint restored --to a scratch
    directory to compare, the log polled or listed to count): in the
    sanitizer build, without LeakSanitizer, whose scan at exit is a third of
    a sanitized command's CPU (~35 of ~85 ms). Those are the same few
    success paths, hundreds of times; the suites that test them run them
    leak-checked, and `make torture` runs every command leak-checked
    (MTM_LEAKS=all)."""
    e = dict(os.environ if env is None else env)
    if e.get("MTM_SANITIZED") and e.get("MTM_LEAKS") != "all":
        e["ASAN_OPTIONS"] = e.get("ASAN_OPTIONS", "") + ":detect_leaks=0"
    return e


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


_TEMPDIRS = []


def _remove_tempdirs():
    for d in _TEMPDIRS:
        rmtree(d)


def tempdir(prefix="mtm-test-"):
    """A new temporary directory, removed when the test process exits
    (whatever the test did or did not clean up itself)."""
    import atexit
    if not _TEMPDIRS:
        atexit.register(_remove_tempdirs)
    d = tempfile.mkdtemp(prefix=prefix)
    _TEMPDIRS.append(d)
    return d


# The exit status ctest reads as "skipped" (SKIP_RETURN_CODE in tests/CMakeLists.txt).
SKIP_EXIT = 77


class Skip(Exception):
    """Raised by a test whose prerequisite is missing (a tool, root, a kernel
    feature): the test did not run, and is reported as a skip, never as ok."""


_PARTS_SKIPPED = []


def skip_part(what, why):
    """A test that could not run one of its parts (the rest ran and passed
    or failed as usual): the run ends as a skip unless something failed."""
    _PARTS_SKIPPED.append(what)
    print("skip %s: %s" % (what, why))


def exit_skipped(why):
    """Ends a test program whose every test needs a missing prerequisite."""
    print("skip: %s" % why)
    sys.exit(SKIP_EXIT)


def _took(t0):
    """' (wall 1.2 s, cpu 0.9 s)': a test's time, the commands it ran
    included, so make test's budget can be kept where it is spent."""
    t1 = os.times()
    cpu = sum(t1[i] - t0[i] for i in range(4))
    return "  (wall %.1f s, cpu %.1f s)" % (t1.elapsed - t0.elapsed, cpu)


class History:
    """Checkpoints of root with the manifest taken when each was made;
    check() restores every one into a new directory and compares."""

    def __init__(self, root):
        self.root = root
        self.seen = {}

    def checkpoint(self):
        m = manifest(self.root)
        ck = checkpoint(self.root)
        self.seen[ck] = m
        return ck

    def check(self):
        base = tempdir("mtm-history-to-")
        try:
            for ck, m in self.seen.items():
                to = os.path.join(base, str(ck))
                restore(self.root, ck, to=to, env=readback_env())
                assert_same(m, manifest(to), "checkpoint %d restored" % ck)
        finally:
            rmtree(base)


def _descendants(pid):
    """Every process below pid (from /proc), children before theirs."""
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], list(kids.get(pid, []))
    while todo:
        p = todo.pop(0)
        out.append(p)
        todo += kids.get(p, [])
    return out


def reap_strays():
    """Kills what a failed test left running (a session whose program waits
    for a stop file that will never come): it would go on loading the
    machine after the suite, and hold its tree. Returns how many."""
    import signal
    strays = _descendants(os.getpid())
    for p in strays:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    for p in strays:
        try:
            os.waitpid(p, 0)
        except OSError:
            pass  # not our child: its parent (also killed) was
    return len(strays)


def main(tests):
    """Runs test functions; prints a closing 'N passed, N failed, N skipped'
    line. Exit 1 if any failed; else 77 (a skip, for ctest) if any test or
    part of one was skipped; else 0."""
    passed = failed = skipped = 0
    for t in tests:
        t0 = os.times()
        try:
            t()
            passed += 1
            print("ok   %s%s" % (t.__name__, _took(t0)))
        except Skip as e:
            skipped += 1
            print("skip %s: %s" % (t.__name__, e))
        except Exception as e:  # report every failure, then exit non-zero
            failed += 1
            print("FAIL %s: %s" % (t.__name__, e))
            n = reap_strays()
            if n:
                print("     (%d process%s it left running killed)" % (n, "es" if n > 1 else ""))
    parts = len(_PARTS_SKIPPED)
    print("%d passed, %d failed, %d skipped%s" % (passed, failed, skipped,
                                                    " (and %d parts of tests)" % parts if parts else ""))
    sys.exit(1 if failed else SKIP_EXIT if skipped or parts else 0)


# ---------------------------------------------------------------------------
# Added helpers (round-trip, model and CLI tests). The functions above keep
# their behaviour; these only build on them.

def overflowed(text):
    """True if a session's messages say its watcher's queue overflowed:
    other work on the file system made events faster than the session read
    them (a loaded machine), events were lost, and the next checkpoint
    scanned, rightly. A test that must see a tracked checkpoint may make it
    once more then, and says so; a second overflow fails it."""
    return "queue overflowed" in text


def init(root):
    """Creates the store for root (which must exist)."""
    return run(["-C", root, "init"])


def restore(root, ckpt, to=None, excludes=(), env=None):
    """Restores checkpoint ckpt of the store at root, in place or into to."""
    args = ["-C", root, "restore", str(ckpt)]
    if to is not None:
        args += ["--to", to]
    for pat in excludes:
        args += ["--exclude", pat]
    return run(args, env=env)


def checkpoint_args(root, msg=None, excludes=()):
    """Like checkpoint(), with --exclude patterns; returns the new id."""
    args = ["-C", root, "checkpoint", "-q"]
    if msg:
        args += ["-m", msg]
    for pat in excludes:
        args += ["--exclude", pat]
    return int(run(args).stdout.strip())


def changes(text):
    """Parses diff/status output into a set of (kind, path): 'M a (4.0 KiB)' -> ('M', 'a')."""
    out = set()
    for line in text.splitlines():
        if len(line) < 3 or line[1] != " " or line[0] not in "ADMTm":
            continue
        path = line[2:]
        if line[0] == "M" and path.endswith(")") and " (" in path:
            path = path[:path.rindex(" (")]
        out.add((line[0], path))
    return out


def diff(root, a, b=None):
    """`metamori diff a [b]` as a set of (kind, path)."""
    args = ["-C", root, "diff", str(a)] + ([str(b)] if b is not None else [])
    return changes(run(args).stdout)


def status(root):
    """`metamori status` output (text)."""
    return run(["-C", root, "status"]).stdout


def log_json(root):
    """`metamori log --json`, parsed."""
    import json
    return json.loads(run(["-C", root, "log", "--json"]).stdout)


def index_value(root, sql):
    """The first column of the first row of sql, read from root's index
    (read-only, beside whatever else has it open)."""
    import sqlite3
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(root, ".metamori", "index.db"), uri=True)
    try:
        return db.execute(sql).fetchone()[0]
    finally:
        db.close()


STAT_FIELDS = ("size", "mtime_ns", "ctime_ns", "ino", "dev", "mode", "uid", "gid", "racy")


def statblob(st):
    """A stat cache row's st (FORMAT.md 3.9, format 8) as a dict of its nine
    fields (times and sizes signed), or None if it is not a valid one."""
    import struct
    if not isinstance(st, bytes) or len(st) < 5:
        return None
    lens = [(st[i // 2] >> (4 * (i % 2))) & 15 for i in range(9)]
    if st[4] >> 4 or any(n > 8 for n in lens) or 5 + sum(lens) != len(st):
        return None
    out, at = {}, 5
    for name, n in zip(STAT_FIELDS, lens):
        v = int.from_bytes(st[at:at + n], "little")
        at += n
        out[name] = struct.unpack("<q", struct.pack("<Q", v))[0]
    return out


def statcache_row(root, path):
    """path's stat cache row: {"ver": ..., and statblob's fields}, or None."""
    import sqlite3
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(root, ".metamori", "index.db"), uri=True)
    try:
        r = db.execute("SELECT ver, st FROM statcache WHERE path = CAST(? AS TEXT)", (path,)).fetchone()
    finally:
        db.close()
    if r is None:
        return None
    fields = statblob(r[1])
    return dict(fields, ver=r[0]) if fields is not None else None


def checkpoint_to_format_10(con):
    """In an open connection to a format 11 index: the checkpoint table as
    format 10 kept it (the root's mode, not its owner, mtime nor
    attributes). The caller sets user_version."""
    for col in ("root_uid", "root_gid", "root_mtime_s", "root_mtime_nsec", "root_xattrs"):
        con.execute("ALTER TABLE checkpoint DROP COLUMN " + col)


def blockhash_to_format_9(con):
    """In an open connection to a format 11 index: what format 9 kept (and
    format 10's checkpoint table), no blockhash_delta (a cache: its rows
    are dropped; the whole rows stay, each describes the version it
    names). The caller sets user_version."""
    checkpoint_to_format_10(con)
    con.execute("DROP TABLE blockhash_delta")


def checkpoint_to_format_8(con):
    """In an open connection to a format 11 index: the checkpoint table as
    format 8 kept it (no root_mode), and no blockhash_delta (format 10's)
    nor the root's owner, mtime and attributes (format 11's). The caller
    sets user_version."""
    blockhash_to_format_9(con)
    con.execute("ALTER TABLE checkpoint DROP COLUMN root_mode")


def statcache_to_format_7(con):
    """In an open connection to a format 8 index: the stat cache as format 7
    kept it (nine columns), every row kept. The caller sets user_version."""
    rows = [(p, v, statblob(st)) for p, v, st in con.execute("SELECT path, ver, st FROM statcache")]
    con.executescript("DROP TABLE statcache; CREATE TABLE statcache(path TEXT PRIMARY KEY, ver INTEGER NOT NULL,"
                      " size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,"
                      " ino INTEGER NOT NULL, dev INTEGER NOT NULL, mode INTEGER NOT NULL, uid INTEGER NOT NULL,"
                      " gid INTEGER NOT NULL, racy INTEGER NOT NULL) WITHOUT ROWID;")
    con.executemany("INSERT INTO statcache VALUES(?,?,?,?,?,?,?,?,?,?,?)",
                    [(p, v) + tuple(f[k] for k in STAT_FIELDS) for p, v, f in rows if f is not None])


def manifest_full(root, ignore=(".metamori",)):
    """manifest() plus ownership and symlink mtimes: every piece of metadata
    a checkpoint records. Files: ('f', mode, size, sha256, mtime_ns, uid, gid);
    dirs: ('d', mode, mtime_ns, uid, gid); symlinks: ('l', target, mtime_ns, uid, gid)."""
    out = manifest(root, ignore=ignore)
    for rel in out:
        st = os.lstat(os.path.join(root, rel))
        if out[rel][0] == "l":
            out[rel] = out[rel] + (st.st_mtime_ns, st.st_uid, st.st_gid)
        else:
            out[rel] = out[rel] + (st.st_uid, st.st_gid)
    return out


def allocated(path):
    """Bytes the file system allocated for path (st_blocks * 512)."""
    return os.lstat(path).st_blocks * 512


def store_state(root):
    """A fingerprint of the store at root/.metamori: the bytes of every file
    in it (SQLite's shared-memory file aside, which readers may touch, and
    a killed session's socket, which has no bytes)."""
    out = {}
    base = os.path.join(root, ".metamori")
    for dirpath, dirnames, filenames in os.walk(base):
        for name in filenames:
            if name.endswith("-shm"):
                continue
            full = os.path.join(dirpath, name)
            if stat.S_ISSOCK(os.lstat(full).st_mode):
                continue
            with open(full, "rb") as f:
                out[os.path.relpath(full, base)] = hashlib.sha256(f.read()).hexdigest()
    return out


def wal_pages(records):
    """Page numbers of the frames written to the index's WAL among records
    (read_trace's): a frame's 24-byte header (written by itself) starts with
    the page number."""
    return {struct.unpack(">I", data[:4])[0] for op, p, _, off, _, data in records
            if op == "W" and p.endswith("index.db-wal") and off >= 32 and len(data) == 24}


def index_pages(root, names):
    """Pages of these tables and indexes of root's index (SQLite's dbstat)."""
    import sqlite3
    c = sqlite3.connect("file:%s?mode=ro" % os.path.join(root, ".metamori", "index.db"), uri=True)
    try:
        q = "SELECT pageno FROM dbstat WHERE name IN (%s)" % ",".join("?" * len(names))
        return {p for (p,) in c.execute(q, names)}
    finally:
        c.close()


def rmtree(path):
    """Removes a test directory, whatever the modes inside."""
    if os.path.lexists(path):
        for dirpath, dirnames, filenames in os.walk(path):
            for d in dirnames:
                full = os.path.join(dirpath, d)
                if not os.path.islink(full):
                    os.chmod(full, 0o700)
        shutil.rmtree(path, ignore_errors=True)


def write_file(path, data, mode=None, mtime_ns=None):
    """Creates or replaces (same inode) the file at path with data."""
    with open(path, "wb") as f:
        f.write(data)
    if mode is not None:
        os.chmod(path, mode)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))


def patch_file(path, offset, data):
    """Overwrites data at offset in place (past the end: the gap is a hole)."""
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def remove(path):
    """Removes a file, symlink or directory tree; nothing if absent."""
    if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
        os.unlink(path)
    elif os.path.isdir(path):
        rmtree(path)


def restore_counts(output):
    """'restored checkpoint N: W written, P patched, R removed; ...' -> (W, P, R)."""
    import re
    m = re.search(r": (\d+) written, (\d+) patched, (\d+) removed;", output)
    if not m:
        raise Failure("unexpected restore output: %r" % output)
    return tuple(int(x) for x in m.groups())


def read_trace(path, start=0):
    """The records of a METAMORI_IO_TRACE file (src/io/io.c: u8 op, u32 len +
    path, u32 len + path2, u64 off, u64 len, then a write's data), from byte
    start on: (op, path, path2, off, len, data; data None but for writes)."""
    with open(path, "rb") as f:
        f.seek(start)
        d = f.read()
    out, i = [], 0
    while i < len(d):
        op = chr(d[i])
        i += 1
        (l1,) = struct.unpack_from("<I", d, i)
        i += 4
        p1 = d[i:i + l1].decode("utf-8", "surrogateescape")
        i += l1
        (l2,) = struct.unpack_from("<I", d, i)
        i += 4
        p2 = d[i:i + l2].decode("utf-8", "surrogateescape")
        i += l2
        off, ln = struct.unpack_from("<QQ", d, i)
        i += 16
        data = None
        if op == "W":
            data = d[i:i + ln]
            i += ln
        if op not in "WSRTUDMCLP":
            raise Failure("trace: unknown record %r at byte %d" % (op, start + i))
        out.append((op, p1, p2, off, ln, data))
    return out
