#!/usr/bin/env python3
"""w2_wal.py — which index pages a W2 tracked checkpoint writes (issue 21).

W2 (20,000 files of 16 KiB) under `metamori run` with bench/track_writer.c,
as w2_phases.py runs it; after each `metamori checkpoint` (200 files, one
4 KiB block rewritten in each) the store's index.db and index.db-wal are
copied, and the WAL's frames of the current generation (its header's
salts) are counted per transaction and mapped to the table or index that
owns each page (SQLite's dbstat over the copy, the WAL applied). Prints,
per build, the median frames a checkpoint's commit wrote, by table.

  python3 bench/w2_wal.py --work /tmp/w2w --checkpoints 6 A=old/metamori B=build/metamori
"""
import argparse
import collections
import os
import shutil
import sqlite3
import statistics
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402
import bench_track as T  # noqa: E402
from w2_phases import N_FILES, w2_store  # noqa: E402

TOUCHED = 200


def wal_commits(path):
    """The current generation's transactions: a list of lists of page numbers."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 32:
        return []
    magic, ver, psz, seq, salt1, salt2 = struct.unpack(">IIIIII", data[:24])
    txs, cur, off = [], [], 32
    while off + 24 + psz <= len(data):
        pgno, commit, s1, s2 = struct.unpack(">IIII", data[off:off + 16])
        if (s1, s2) != (salt1, salt2):
            break
        cur.append(pgno)
        if commit:
            txs.append(cur)
            cur = []
        off += 24 + psz
    return txs


def owners(dbdir):
    con = sqlite3.connect(f"file:{os.path.join(dbdir, 'index.db')}?mode=ro", uri=True)
    m = {pg: name for name, pg in con.execute("SELECT name, pageno FROM dbstat")}
    con.close()
    return m


def run_once(metamori, work, n, gap, idle):
    tree = w2_store(metamori, work)
    writer = T.build_writer(work)
    ses = T.Session(metamori, tree, work, writer, [0, 0, 0, 11, N_FILES], "w2")
    subprocess.run([metamori, "-C", tree, "checkpoint", "-q"], check=True, capture_output=True)
    store = os.path.join(tree, ".metamori")
    snap = os.path.join(work, "snap")
    out = []
    for i in range(n):
        time.sleep(idle)
        ses.ask(f"touch {TOUCHED} {N_FILES}")
        time.sleep(gap)
        p = subprocess.run([metamori, "-C", tree, "checkpoint", "-m", f"w2 {i}"], capture_output=True, text=True)
        if p.returncode:
            ses.quit()
            sys.exit(f"w2_wal: {p.stderr.strip()}")
        B.rmtree(snap)
        os.makedirs(snap)
        for name in ("index.db-wal", "index.db"):  # the WAL first: a copy into index.db after it is harmless
            shutil.copyfile(os.path.join(store, name), os.path.join(snap, name))
        txs = wal_commits(os.path.join(snap, "index.db-wal"))
        own = owners(snap)
        # the checkpoint's commit: the largest transaction of the generation
        tx = max(txs, key=len) if txs else []
        per = collections.Counter(own.get(pg, "(free/new)") for pg in set(tx))
        per["(frames)"] = len(tx)
        per["(distinct)"] = len(set(tx))
        per["(transactions)"] = len(txs)
        out.append(per)
    ses.quit()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", required=True)
    ap.add_argument("--checkpoints", type=int, default=6)
    ap.add_argument("--warm", type=int, default=1)
    ap.add_argument("--gap", type=float, default=0.03)
    ap.add_argument("--idle", type=float, default=1.0, help="seconds before each touch (the idle WAL copy runs)")
    ap.add_argument("builds", nargs="+", help="NAME=PATH/TO/metamori")
    a = ap.parse_args()
    for name, path in (b.split("=", 1) for b in a.builds):
        load = os.getloadavg()[0]
        rows = run_once(os.path.abspath(path), os.path.join(a.work, name), a.checkpoints, a.gap, a.idle)[a.warm:]
        keys = sorted({k for r in rows for k in r}, key=lambda k: -statistics.median(r.get(k, 0) for r in rows))
        print(f"{name} (load {load:.1f}): " + ", ".join(f"{k} {statistics.median(r.get(k, 0) for r in rows):g}"
                                                      for k in keys), flush=True)


if __name__ == "__main__":
    main()
