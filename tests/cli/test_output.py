#!/usr/bin/env python3
"""What scripts and people read (issue 20): --json on every command that
reports, valid UTF-8 with non-UTF-8 bytes escaped; -z where paths are listed;
git-style quoting so no escape sequence from a name or message reaches the
terminal; exit codes; log -n and the branch drawing in id order; the
wording (plurals, a missing option argument, prune's figures)."""
import json
import os
import subprocess

import mtmtest as T
from clilib import ESC, Failure, as_json, expect, mtm_id, ok, raw, store, write

ODD = b"esc\x1b[31mred\xff"      # an escape sequence and a byte that is not UTF-8
TAB = b"tab\tname\xc3\xa9"         # a tab and valid UTF-8 (e-acute)


def test_json_on_every_reporting_command():
    root = store()
    write(root, "a", b"a" * 5000)
    write(root, ODD, b"odd")
    c1 = as_json(["-C", root, "checkpoint", "--json", "-m", "first"])
    expect(c1["id"] == 1 and c1["parent"] == 0 and c1["files_added"] == 2 and c1["message"] == "first", c1)
    write(root, "a", b"b" * 5000)
    write(root, TAB, b"t")
    # a message that is not UTF-8 (bytes straight from argv)
    c2 = mtm_id(ok(["-C", root, "checkpoint", "-q", "-m", b"caf\xe9 \x1b[2J"]))
    log = as_json(["-C", root, "log", "--json"])
    expect([e["id"] for e in log] == [1, c2], log)
    expect(os.fsencode(log[1]["message"]) == b"caf\xe9 \x1b[2J", "message bytes lost: %r" % log[1]["message"])
    for e in log:
        for k in ("id", "parent", "time_ns", "files_added", "files_changed", "files_removed", "bytes_changed",
                  "bytes_stored", "entries", "tree_bytes", "pause_ns"):
            expect(isinstance(e[k], int), "log %s: %r" % (k, e))
        expect(isinstance(e["head"], bool) and isinstance(e["tracked"], bool), e)
    expect(set(c1) | {"head"} == set(log[0]), "checkpoint --json and log --json differ: %r %r" % (c1, log[0]))
    write(root, "a", b"c" * 5000)
    st = as_json(["-C", root, "status", "--json"])
    expect(st == {"from": c2, "to": None, "changes": [{"kind": "M", "path": "a", "bytes": 5000}]}, st)
    d = as_json(["-C", root, "diff", "--json", "1", str(c2)])  # --json before the ids
    expect(d["from"] == 1 and d["to"] == c2, d)
    got = {(c["kind"], os.fsencode(c["path"])) for c in d["changes"]}
    expect(got == {("M", b"a"), ("A", TAB)}, got)
    d = as_json(["-C", root, "diff", "--json", "1"])
    expect(d["to"] is None, d)
    for c in as_json(["-C", root, "diff", "--json", "1"])["changes"]:
        expect(set(c) <= {"kind", "path", "bytes"}, c)
    v = as_json(["-C", root, "verify", "--json", "--data"])
    expect(v["ok"] is True and v["problems"] == [] and v["checkpoints"] == 2 and v["data"] is True
           and v["bytes_read"] > 0, v)
    ok(["-C", root, "tag", "1", "base"])
    ok(["-C", root, "tag", str(c2), "two"])
    tags = as_json(["-C", root, "tag", "--json"])
    expect(tags == [{"name": "base", "id": 1}, {"name": "two", "id": c2}], tags)
    du = as_json(["-C", root, "du", "--json"])
    expect([e["id"] for e in du["checkpoints"]] == [1, c2], du)
    pr = as_json(["-C", root, "prune", "--keep-last", "1", "--dry-run", "--json"])
    expect(pr["dry_run"] is True and pr["dropped"] == [], pr)  # 1 is tagged
    r = as_json(["-C", root, "restore", "1", "--json", "--to", os.path.join(T.tempdir(), "to")])
    expect(r["id"] == 1 and r["files_written"] == 2, r)


def test_nul_separated_paths():
    root = store()
    write(root, "keep", b"k")
    ok(["-C", root, "checkpoint", "-q"])
    write(root, ODD, b"o")
    write(root, b"line\nbreak", b"l")
    out = ok(["-C", root, "status", "-z"])
    expect(out.endswith(b"\0") and set(out.split(b"\0")[:-1]) == {b"A " + ODD, b"A line\nbreak"}, out)
    ok(["-C", root, "checkpoint", "-q"])
    out = ok(["-C", root, "diff", "-z", "1", "2"])
    expect(set(out.split(b"\0")[:-1]) == {b"A " + ODD, b"A line\nbreak"}, out)


def test_quoting_on_the_terminal():
    root = store()
    write(root, ODD, b"o")
    write(root, TAB, b"t")
    write(root, "plain", b"p")
    ok(["-C", root, "checkpoint", "-q", "-m", b"msg \x1b]0;title\x07"])
    write(root, ODD, b"changed")
    status = ok(["-C", root, "status"])
    expect(status == b'M "esc\\033[31mred\\377" (7 B)\n', status)
    diff = ok(["-C", root, "diff", "1"])
    expect(diff == status, diff)
    ok(["-C", root, "checkpoint", "-q"])
    lines = ok(["-C", root, "diff", "1", "2"])
    expect(lines == b'M "esc\\033[31mred\\377" (7 B)\n', lines)
    for args in (["log"], ["tag"], ["status"], ["diff", "1", "2"]):
        out = ok(["-C", root] + args)
        expect(ESC not in out and b"\x07" not in out, "%s printed an escape sequence: %r" % (args, out))
    log = ok(["-C", root, "log"])
    expect(b'"msg \\033]0;title\\a"' in log, log)
    # ls quotes names and symlink targets like status: one line per entry, no escape reaches the terminal
    os.symlink(b"to\x1b]0;t\x07", os.path.join(os.fsencode(root), b"link"))
    write(root, b"line\nbreak", b"n")
    c = mtm_id(ok(["-C", root, "checkpoint", "-q"]))
    names = [l.split(b"  ")[-1] for l in ok(["-C", root, "ls", str(c)]).splitlines()]
    expect(names == [b'"esc\\033[31mred\\377"', b'"line\\nbreak"', b'link -> "to\\033]0;t\\a"', b"plain",
                     b'"tab\\tname\xc3\xa9"'], names)
    one = ok(["-C", root, "ls", str(c), ODD])
    expect(one.endswith(b'  "esc\\033[31mred\\377"\n') and ESC not in one, one)
    # a name with a tab and UTF-8 is quoted like git: the tab escaped, UTF-8 kept
    os.remove(os.path.join(os.fsencode(root), TAB))
    expect(b'D "tab\\tname\xc3\xa9"\n' in ok(["-C", root, "status"]), ok(["-C", root, "status"]))


def test_exit_codes():
    root = store()
    rc, out, _ = raw(["-C", root, "status", "--exit-code"])
    expect(rc == 0, "empty tree, no checkpoint: %d" % rc)
    write(root, "a", b"1")
    rc, _, _ = raw(["-C", root, "status", "--exit-code"])
    expect(rc == 2, "something new, no checkpoint: %d" % rc)
    ok(["-C", root, "checkpoint", "-q"])
    rc, _, _ = raw(["-C", root, "status", "--exit-code"])
    expect(rc == 0, "nothing changed: %d" % rc)
    write(root, "a", b"2")
    rc, out, _ = raw(["-C", root, "status", "--exit-code", "--json"])
    expect(rc == 2 and json.loads(out)["changes"], "changed: %d %r" % (rc, out))
    rc, _, _ = raw(["-C", root, "status"])
    expect(rc == 0, "without --exit-code: %d" % rc)
    ok(["-C", root, "checkpoint", "-q"])
    rc, _, _ = raw(["-C", root, "diff", "--exit-code", "1", "2"])
    expect(rc == 2, "diff of different checkpoints: %d" % rc)
    rc, _, _ = raw(["-C", root, "diff", "--exit-code", "2"])
    expect(rc == 0, "diff 2 against the live tree: %d" % rc)
    rc, _, err = raw(["-C", root, "status", "--exit-code", "--bogus"])
    expect(rc == 1 and err == b"metamori: status: bad option (see 'metamori status --help')\n", err)
    env = dict(os.environ, METAMORI_PRELOAD=os.path.join(os.path.dirname(os.path.abspath(T.METAMORI)), "libmetamori-preload.so"))
    rc, _, err = raw(["-C", root, "run", "no-such-command-mtm"], env=env)
    expect(rc == 127 and err == b"metamori: run: no-such-command-mtm: No such file or directory\n", (rc, err))
    write(root, "noexec", b"#!/bin/sh\n")
    rc, _, err = raw(["-C", root, "run", "./noexec"], cwd=root, env=env)
    expect(rc == 126 and err == b"metamori: run: ./noexec: Permission denied\n", (rc, err))
    rc, _, _ = raw(["-C", root, "run", "sh", "-c", "exit 7"], env=env)
    expect(rc == 7, "the command's own status: %d" % rc)


def not_root(what):
    """The command prefix that runs as a normal user (root reads anything):
    [] when not root, setpriv as nobody when root; None (the part skipped)
    when root has no setpriv."""
    import shutil
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        T.skip_part(what, "root without setpriv cannot test permissions")
        return None
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def test_status_reports_all_it_can_read():
    """A file status cannot read (its stat changed, so its content must be
    compared) does not hide the rest: every other change is listed, in
    order, then one error line names the file (a checkpoint would fail on
    it), exit 1. Status stopped at the first such file."""
    pre = not_root("the unreadable file")
    if pre is None:
        return
    root = os.path.realpath(store())
    for n in ("b", "c", "e"):
        write(root, n, n.encode())
    if pre:
        subprocess.run(["chown", "-R", "65534:65534", root], check=True)
    subprocess.run(pre + [os.path.abspath(T.METAMORI), "-C", root, "checkpoint", "-q"], check=True, capture_output=True)
    write(root, "b", b"bb")
    write(root, "d", b"new")
    for n in ("c", "e"):
        os.chmod(os.path.join(root, n), 0)
    for mode, out_want in (([], b"M b (2 B)\nA d\n"), (["-z"], b"M b\0A d\0")):
        for cmd in (["status"], ["diff", "1"]):
            p = subprocess.run(pre + [os.path.abspath(T.METAMORI), "-C", root] + cmd + mode, capture_output=True)
            expect(p.returncode == 1 and p.stdout == out_want and
                   p.stderr == b"metamori: c: Permission denied (1 more file could not be read)\n",
                   "%r: %d %r %r" % (cmd + mode, p.returncode, p.stdout, p.stderr))
    os.chmod(os.path.join(root, "e"), 0o644)
    p = subprocess.run(pre + [os.path.abspath(T.METAMORI), "-C", root, "status"], capture_output=True)
    expect(p.returncode == 1 and p.stdout == b"M b (2 B)\nA d\n" and p.stderr == b"metamori: c: Permission denied\n",
           "one unreadable: %d %r %r" % (p.returncode, p.stdout, p.stderr))


def test_unreadable_directory_is_named_and_not_lost():
    """A directory of the tree this user cannot read (mode 0; or 0444:
    listed, not searchable): status lists every other change (the
    directory's own mode, `m d`, too), then names it in one error line,
    relative to the tree like every other path, exit 1; what it holds is
    unknown, so nothing in it shows as removed. A checkpoint fails on it
    with that line and records nothing (its contents would be recorded as
    removed, and a restore of that checkpoint would delete them); a restore
    refuses, the tree untouched. Once readable, everything is there. Failed
    before: status stopped at the directory and listed nothing, and every
    message named it by its absolute path."""
    pre = not_root("the unreadable directory")
    if pre is None:
        return
    root = os.path.realpath(store())
    as_user = lambda *args: subprocess.run(pre + [os.path.abspath(T.METAMORI), "-C", root] + list(args),
                                           capture_output=True)
    for d in ("d", "d/sub", "e"):
        os.mkdir(os.path.join(root, d), 0o755)
    for n in ("a", "z", "d/x", "d/sub/s", "e/y"):
        write(root, n, n[-1].encode())
    if pre:
        subprocess.run(["chown", "-R", "65534:65534", root], check=True)
    expect(as_user("checkpoint", "-q").returncode == 0, "checkpoint 1")
    for n in ("a", "z"):
        write(root, n, n.encode() * 2)
    for n in ("d-new", "e/new"):  # ("d-new" sorts between d and d/x)
        write(root, n, b"n")
        if pre:
            os.chown(os.path.join(root, n), 65534, 65534)
    want = b"M a (2 B)\nm d\nA d-new\nA e/new\nM z (2 B)\n"
    for mode in (0, 0o444):
        os.chmod(os.path.join(root, "d"), mode)
        for cmd in (["status"], ["diff", "1"]):
            p = as_user(*cmd)
            expect(p.returncode == 1 and p.stdout == want and p.stderr == b"metamori: d: Permission denied\n",
                   "%r, d %o: %d %r %r" % (cmd, mode, p.returncode, p.stdout, p.stderr))
        p = as_user("checkpoint", "-q")
        expect(p.returncode == 1 and p.stderr == b"metamori: d: Permission denied\n",
               "checkpoint, d %o: %d %r" % (mode, p.returncode, p.stderr))
        expect(len(json.loads(as_user("log", "--json").stdout)) == 1, "a checkpoint was recorded")
        before = sorted(os.listdir(root)) + sorted(os.listdir(os.path.join(root, "d")))
        p = as_user("restore", "1")
        expect(p.returncode == 1 and p.stderr.endswith(b": d: Permission denied\n") and p.stderr.count(b"\n") == 1,
               "restore, d %o: %d %r" % (mode, p.returncode, p.stderr))
        expect(sorted(os.listdir(root)) + sorted(os.listdir(os.path.join(root, "d"))) == before and
               open(os.path.join(root, "a"), "rb").read() == b"aa", "the refused restore changed the tree")
    os.chmod(os.path.join(root, "d"), 0o755)
    p = as_user("status")
    expect(p.returncode == 0 and p.stdout == b"M a (2 B)\nA d-new\nA e/new\nM z (2 B)\n", "readable: %r" % p.stdout)
    expect(as_user("checkpoint", "-q").returncode == 0, "checkpoint 2")
    expect(as_user("restore", "1").returncode == 0, "restore 1")
    for n, data in (("a", b"a"), ("d/x", b"x"), ("d/sub/s", b"s"), ("e/y", b"y")):
        expect(open(os.path.join(root, n), "rb").read() == data, n)
    expect(not os.path.exists(os.path.join(root, "d-new")), "d-new")


def log_rows(root, *args):
    """(mark, depth, id, rest) of each line of metamori log."""
    rows = []
    for line in ok(["-C", root, "log"] + list(args)).decode().splitlines():
        body, depth = line[2:], 0
        while body.startswith("| "):
            depth, body = depth + 1, body[2:]
        rows.append((line[0], depth, int(body.split()[0]), body))
    return rows


def test_log_n_and_branches_in_id_order():
    root = store()
    ids = []
    for i in range(3):
        write(root, "f", b"%d" % i)
        ids.append(mtm_id(ok(["-C", root, "checkpoint", "-q"])))
    ok(["-C", root, "restore", "1"])
    for i in range(2):  # 4, 5 branch from 1
        write(root, "g", b"%d" % i)
        ids.append(mtm_id(ok(["-C", root, "checkpoint", "-q"])))
    ok(["-C", root, "restore", "2"])
    write(root, "h", b"h")
    ids.append(mtm_id(ok(["-C", root, "checkpoint", "-q"])))  # 6 from 2
    rows = log_rows(root)
    expect([r[2] for r in rows] == [1, 2, 3, 4, 5, 6], "log not in id order: %r" % rows)
    expect([r[1] for r in rows] == [0, 0, 0, 1, 1, 1], "depths: %r" % rows)
    expect("(from 1)" in rows[3][3] and "(from" not in rows[4][3] and "(from 2)" in rows[5][3], rows)
    expect([r[0] for r in rows] == [" "] * 5 + ["*"], rows)
    rows = log_rows(root, "-n", "2")
    expect([r[2] for r in rows] == [5, 6], "log -n 2: %r" % rows)
    expect([e["id"] for e in as_json(["-C", root, "log", "--json", "-n", "3"])] == [4, 5, 6], "log --json -n 3")
    expect(len(log_rows(root, "-n", "100")) == 6, "-n past the count")
    rc, _, err = raw(["-C", root, "log", "-n", "0"])
    expect(rc == 1 and err == b"metamori: -n: needs a whole number of at least 1\n", err)
    # strtoull's leniency is no number: " -1" was every checkpoint, " 2" and "+2" were 2
    for bad in (" -1", " 2", "+2", "2 ", "0x2"):
        rc, _, err = raw(["-C", root, "log", "-n", bad])
        expect(rc == 1 and err == b"metamori: -n: needs a whole number of at least 1\n", "-n %r: %r" % (bad, err))


def test_wording():
    root = store()
    write(root, "a", b"a" * 10)
    rc, _, err = raw(["-C", root, "checkpoint", "-m"])
    expect(rc == 1 and err == b"metamori: checkpoint: -m needs an argument (see 'metamori checkpoint --help')\n",
           err)
    rc, _, err = raw(["-C", root, "checkpoint", "--message"])
    expect(rc == 1 and err.startswith(b"metamori: checkpoint: --message needs an argument"), err)
    ok(["-C", root, "checkpoint", "-q"])
    out = ok(["-C", root, "verify"]).decode()
    expect(out == "store OK: 1 checkpoint, 1 entry, 1 block, 1 chunk in 1 pack\n", out)
    for i in range(3):
        write(root, "a", b"%d" % i * 5000)
        ok(["-C", root, "checkpoint", "-q"])
    out = ok(["-C", root, "prune", "--keep-last", "2"]).decode().splitlines()
    expect(out[0] == "dropped 2 checkpoints: 1 2", out)
    expect(out[1].startswith("kept 2 checkpoints; "), out)
    expect(out[3].startswith("store: ") and (" returned)" in out[3] or " more: the index grew)" in out[3]), out)
    out = ok(["-C", root, "prune", "--keep-last", "1", "--dry-run"]).decode().splitlines()
    expect(out[0] == "would drop 1 checkpoint: 3" and out[1].startswith("would keep 1 checkpoint; "), out)


def test_many_excludes():
    root = store()
    for i in range(100):
        write(root, "f%03d" % i, b"x")
    write(root, "kept", b"k")
    args = ["-C", root, "status"]
    for i in range(100):
        args += ["--exclude", "f%03d" % i]
    out = ok(args).decode()
    expect(out == "A kept\nno checkpoint yet (everything above is new)\n", out)


def test_tag_needs_force_to_move():
    root = store()
    for i in range(2):
        write(root, "a", b"%d" % i)
        ok(["-C", root, "checkpoint", "-q"])
    ok(["-C", root, "tag", "1", "baseline"])
    ok(["-C", root, "tag", "1", "baseline"])  # the same checkpoint: nothing to move
    rc, _, err = raw(["-C", root, "tag", "2", "baseline"])
    expect(rc == 1 and err == b"metamori: tag 'baseline': already names checkpoint 1 (use -f to move it)\n", err)
    expect(as_json(["-C", root, "tag", "--json"]) == [{"name": "baseline", "id": 1}], "moved without -f")
    ok(["-C", root, "tag", "-f", "2", "baseline"])
    expect(as_json(["-C", root, "tag", "--json"]) == [{"name": "baseline", "id": 2}], "not moved with -f")
    ok(["-C", root, "tag", "-d", "baseline"])
    expect(as_json(["-C", root, "tag", "--json"]) == [], "not removed")


def test_errors_escape_names():
    """An error naming a path or a tag the user gave stays one line, and no
    escape sequence in it reaches the terminal: control characters and bytes
    that are not UTF-8 are written as C escapes (printable UTF-8 as it is)."""
    root = store()
    ok(["-C", root, "checkpoint", "-q"])
    rc, out, err = raw(["-C", root, "cat", "1", b"no\x1b[31mfile\nnext\xff\xc3\xa9"])
    expect(rc == 1 and err == b"metamori: no\\033[31mfile\\nnext\\377\xc3\xa9: not in checkpoint 1\n", err)
    rc, out, err = raw(["-C", root, "tag", "1", b"bad\x1b]0;x\x07"])
    expect(rc == 1 and err.count(b"\n") == 1 and ESC not in err and b"\x07" not in err
           and err.startswith(b"metamori: tag 'bad\\033]0;x\\a': a name is"), err)
    rc, out, err = raw(["-C", root, "status", b"\x1b[2J"])
    expect(rc == 1 and err == b"metamori: \\033[2J: unexpected argument (see 'metamori status --help')\n", err)


def writes_to_stderr(args, **kw):
    """Runs metamori with stderr on a SOCK_SEQPACKET socket, which keeps
    every write(2) a message of its own: (exit status, the writes)."""
    import socket
    import subprocess
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    p = subprocess.run([os.path.abspath(T.METAMORI)] + list(args), stderr=b, stdout=subprocess.DEVNULL, **kw)
    b.close()
    writes = []
    while True:
        m = a.recv(65536)
        if not m:
            break
        writes.append(m)
    a.close()
    return p.returncode, writes


def test_each_error_line_is_one_write():
    """stderr is unbuffered: a line written piece by piece was a write(2)
    per piece (per byte through the quoting), so the line of a session's
    checkpoint came out mixed, mid-line, with what the program it runs wrote
    to the same terminal. Every line metamori writes there is one write."""
    root = store()
    write(root, "a", b"a")
    ok(["-C", root, "checkpoint", "-q"])
    rc, w = writes_to_stderr(["-C", root, "cat", "1", b"no\x1bfile"])
    expect(rc == 1 and w == [b"metamori: no\\033file: not in checkpoint 1\n"], w)
    rc, w = writes_to_stderr(["-C", root, "status", "x"])
    expect(rc == 1 and w == [b"metamori: x: unexpected argument (see 'metamori status --help')\n"], w)
    ok(["-C", root, "tag", "1", "t"])
    write(root, "a", b"b")
    ok(["-C", root, "checkpoint", "-q"])
    rc, w = writes_to_stderr(["-C", root, "tag", "2", "t"])
    expect(rc == 1 and w == [b"metamori: tag 't': already names checkpoint 1 (use -f to move it)\n"], w)
    # the library's log lines: a session's line per checkpoint
    rc, w = writes_to_stderr(["-C", root, "run", "--every", "0.2", "--", "sh", "-c", "echo x > b; sleep 0.5"])
    lines = [m for m in w if m.startswith(b"metamori: checkpoint")]
    expect(rc == 0 and lines and all(m.endswith(b"\n") and m.count(b"\n") == 1 for m in lines), w)


def to_stdout(args, stdout):
    """Runs metamori ARGS with its stdout STDOUT (a file, or None: closed)."""
    pre = (lambda: os.close(1)) if stdout is None else None
    p = subprocess.run([os.path.abspath(T.METAMORI)] + list(args), stdout=stdout, stderr=subprocess.PIPE,
                       preexec_fn=pre)
    return p.returncode, p.stderr


def test_unwritable_stdout_fails():
    """What a command reports and cannot write is an error, not a success:
    'metamori log >&-' and 'metamori restore 1 >/dev/full' exited 0, the
    report (restore's 'saved the current tree as checkpoint N') gone
    without a word. The command's work stands; the exit says the report
    was lost, in one line."""
    root = store()
    write(root, "a", b"1")
    ok(["-C", root, "checkpoint", "-q"])
    write(root, "a", b"2")
    ok(["-C", root, "checkpoint", "-q"])
    ok(["-C", root, "tag", "1", "t"])
    full = open("/dev/full", "wb")
    cases = [["log"], ["status"], ["diff", "1", "2"], ["du"], ["verify"], ["ls", "2"], ["--version"],
             ["log", "--help"], ["checkpoint", "-m", "x"], ["restore", "1"], ["tag"]]
    for args in cases:
        for out, why in ((full, b"No space left on device"), (None, b"Bad file descriptor")):
            rc, err = to_stdout(["-C", root] + args, out)
            expect(rc == 1 and err == b"metamori: standard output: " + why + b"\n", (args, why, rc, err))
    full.close()
    # what the commands did stands: the checkpoints taken, the restores done
    log = as_json(["-C", root, "log", "--json"])
    expect(len(log) >= 4 and open(os.path.join(root, "a"), "rb").read() == b"1", log)
    expect(ok(["-C", root, "verify"]).startswith(b"store OK"), "verify")


if __name__ == "__main__":
    T.main([test_json_on_every_reporting_command, test_nul_separated_paths, test_quoting_on_the_terminal,
            test_exit_codes, test_log_n_and_branches_in_id_order, test_wording, test_many_excludes,
            test_tag_needs_force_to_move, test_errors_escape_names, test_each_error_line_is_one_write,
            test_unwritable_stdout_fails, test_status_reports_all_it_can_read,
            test_unreadable_directory_is_named_and_not_lost])
