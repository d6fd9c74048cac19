#!/usr/bin/env python3
"""Prune killed at its write points loses nothing kept (issue 5).

A history with branches and a tag is pruned once with METAMORI_IO_COUNT to
count prune's mutating operations (src/io/io.h); then, from a copy of the
same store each time, prune is SIGKILLed just before its Nth operation
(METAMORI_CRASH_AT=N) for a spread of N (every N with METAMORI_TORTURE=1).
After each kill:
  * `verify --data` passes;
  * the checkpoints are all of them (the fold had not committed) or exactly
    the kept ones (it had); each kept one restores byte-exactly (every one
    present, with METAMORI_TORTURE=1);
  * rerunning the prune completes, keeps exactly the policy's checkpoints,
    leaves the packs within 5% of what they reference, and every kept
    checkpoint still restores; a new checkpoint can be made and restored.
"""
import os
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtmtest as T  # noqa: E402
import prunelib as P  # noqa: E402

POINTS = 0 if P.TORTURE else 6  # 0: every point


def env(**kw):
    e = {k: v for k, v in os.environ.items()
         if k not in ("METAMORI_FAULT", "METAMORI_CRASH_AT", "METAMORI_IO_COUNT", "METAMORI_IO_TRACE")}
    e.update({k: str(v) for k, v in kw.items()})
    return e


def copy_root(src, dst):
    if os.path.lexists(dst):
        T.rmtree(dst)
    subprocess.run(["cp", "-a", src, dst], check=True)


def trace_ops(path):
    """The kinds of the mutating operations in a METAMORI_IO_TRACE file (src/io/io.c:
    u8 op, u32 len + path, u32 len + path2, u64 off, u64 len, data for writes), in
    the order the crash counter counts them. Records the counter does not count
    are left out: file creations, the truncation an O_TRUNC open records, and the
    directory fsync SQLite's VFS does inside a counted fsync or delete."""
    data = open(path, "rb").read()
    i, recs = 0, []
    while i < len(data):
        op = chr(data[i])
        i += 1
        l1 = struct.unpack("<I", data[i:i + 4])[0]
        p = data[i + 4:i + 4 + l1]
        i += 4 + l1
        l2 = struct.unpack("<I", data[i:i + 4])[0]
        i += 4 + l2
        _, ln = struct.unpack("<QQ", data[i:i + 16])
        i += 16
        if op == "W":
            i += ln
        recs.append((op, p, ln))
    ops = []
    for j, (op, p, ln) in enumerate(recs):
        prev = recs[j - 1] if j else None
        if op == "C":
            continue
        if op == "T" and ln == 0 and prev and prev[0] == "C" and prev[1] == p:
            continue
        if op == "S" and prev and prev[0] in "SU" and os.path.dirname(prev[1]) == p and p.endswith(b".metamori"):
            continue
        ops.append(op)
    return ops


def pick(n, k, ops):
    """Crash points out of 1..n: every one that is not a data write (fsync,
    rename, truncate, unlink: the commit order lives there), the first and last
    write of each run of writes, and k more spread evenly. All if n is small."""
    if not k or n <= k + 10:
        return list(range(1, n + 1))
    pts = {1, 2, 3, n - 2, n - 1, n}
    pts |= {1 + (j * (n - 1)) // (k - 1) for j in range(k)}
    if len(ops) == n:  # the trace lines up with the counter (checked below)
        for i, op in enumerate(ops):
            if op != "W" or i == 0 or ops[i - 1] != "W" or i + 1 == n or ops[i + 1] != "W":
                pts.add(i + 1)
    return sorted(p for p in pts if 1 <= p <= n)


def scenario(tmp, seed):
    h = P.History(seed, os.path.join(tmp, "base"))
    h.grow(14, branch_p=0.25)
    ids = P.ids_in_log(h.root)
    T.run(["-C", h.root, "tag", str(ids[len(ids) // 3]), "pinned"])
    keep = P.expected_keep(h.root, keep_last=3)
    if len(keep) == len(ids):
        raise T.Failure("scenario drops nothing")
    return h, ids, keep


def run_crashes(seed, args):
    tmp = T.tempdir()
    try:
        h, all_ids, keep = scenario(tmp, seed)
        work = os.path.join(tmp, "work")
        count_file = os.path.join(tmp, "count")
        trace_file = os.path.join(tmp, "trace")
        copy_root(h.root, work)
        T.run(["-C", work, "prune"] + args, env=env(METAMORI_IO_COUNT=count_file, METAMORI_IO_TRACE=trace_file))
        with open(count_file) as f:
            n = int(f.read().split()[0])
        if n < 5:
            raise T.Failure("prune did only %d mutating operations" % n)
        ops = trace_ops(trace_file)
        if len(ops) != n:  # the trace does not line up with the counter: every point
            print("  the I/O trace has %d mutating operations, the counter %d: checking all" % (len(ops), n))
            ops = ["S"] * n
        points = pick(n, POINTS, ops)
        for i in points:
            copy_root(h.root, work)
            p = subprocess.run([T.METAMORI, "-C", work, "prune"] + args, capture_output=True, text=True,
                               env=env(METAMORI_CRASH_AT=i))
            if p.returncode != -9:
                raise T.Failure("crash point %d of %d: prune exited %d, not killed: %s"
                                % (i, n, p.returncode, p.stderr))
            try:
                P.verify_data(work)
                present = P.ids_in_log(work)
                if present != all_ids and set(present) != keep:
                    raise T.Failure("checkpoints after the kill: %s (before %s, kept %s)"
                                    % (present, all_ids, sorted(keep)))
                # the kept ones must survive; the others too while they exist
                # (all of them with METAMORI_TORTURE=1)
                P.restore_check(work, h.manifests, present if P.TORTURE else sorted(keep), tmp)
                T.run(["-C", work, "prune"] + args)
                if set(P.ids_in_log(work)) != keep:
                    raise T.Failure("rerun kept %s, expected %s" % (P.ids_in_log(work), sorted(keep)))
                P.verify_data(work)
                P.check_space(work, slack=0.05)
                if P.TORTURE or present != sorted(keep):
                    P.restore_check(work, h.manifests, sorted(keep), tmp)
                T.write_file(os.path.join(work, "after-crash"), b"new data %d" % i * 1000)
                cid = T.checkpoint(work)
                m = T.manifest(work)
                P.restore_check(work, {cid: m}, [cid], tmp)
            except T.Failure as e:
                raise T.Failure("seed %d, crash point %d of %d: %s" % (seed, i, n, e))
        print("  seed %d: %d crash points of %d checked (all %d that are not data writes)"
              % (seed, len(points), n, sum(op != "W" for op in ops)))
    finally:
        T.rmtree(tmp)


def test_crash_default_threshold():
    run_crashes(51, ["--keep-last", "3"])


def test_crash_rewrite_everything():
    """--gc-threshold 0: every pack with a dead byte is rewritten."""
    run_crashes(52, ["--keep-last", "3", "--gc-threshold", "0"])


if __name__ == "__main__":
    T.main([test_crash_default_threshold, test_crash_rewrite_everything])
