#!/usr/bin/env python3
"""bench_prune.py: retention cost (issue 5). 200 checkpoints of workload W1,
then prune to the last 20; prints Markdown tables (docs/BENCHMARKS-ARCHIVE.md, "Prune").

W1 (benchlib.W1): 16 files of random data (--scale 0.125, the default: 8 MiB
each, 128 MiB; --scale 1: 64 MiB each) and a log; per interval 1% of all 4 KiB
blocks rewritten at random with new data, plus an append to the log (1 MiB x
scale). One scan checkpoint per interval.

Measured (same cache state before each, see --cache):
  prune --dry-run       selection and folding, rolled back
  prune + gc            `metamori prune --keep-last 20`: folds the 180 dropped
                        checkpoints into the survivors, frees the chunks no one
                        uses, rewrites the packs past the dead threshold
  floor                 writing the surviving delta once: the bytes gc copied
                        (the live records of the rewritten packs), written into
                        a new file and fsynced, from memory
  steady state          10 more checkpoints, then prune to the last 20 again
                        (a periodic prune drops 10)
  drop one              prune of the single oldest checkpoint of a 200-checkpoint
                        store (cost follows what is dropped, not the store)
Store size after gc against the data the kept checkpoints reference (du's
chunk records), and the ratio.

usage: bench_prune.py --metamori build/metamori [--scale 0.125] [--checkpoints 200]
                      [--keep 20] [--repeat 3] [--cache auto|cold|warm] [--work DIR]
                      [--keep-work] [--json FILE]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402


def prune(metamori, root, cache, *args):
    cache.prepare()
    t, p = B.mtm(metamori, "-C", root, "prune", "--json", *args)
    return t, json.loads(p.stdout)


def du(metamori, root):
    _, p = B.mtm(metamori, "-C", root, "du", "--json")
    return json.loads(p.stdout)


def used_plain(root):
    """Plain bytes of the blocks some block row uses (read-only, FORMAT 3.5):
    what the kept checkpoints reference, counted in blocks."""
    import sqlite3
    con = sqlite3.connect("file:%s?mode=ro" % os.path.join(root, ".metamori", "index.db"), uri=True)
    try:
        plen = dict(con.execute("SELECT id, plen FROM chunk"))
        return sum(min(B.BLOCK, plen[c] - b * B.BLOCK)
                   for c, b in con.execute("SELECT DISTINCT chunk, boff FROM block WHERE chunk != 0"))
    finally:
        con.close()


def pack_bytes(root):
    d = os.path.join(root, ".metamori", "packs")
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))


def grow(metamori, w, tree, n, times):
    for i in range(n):
        w.interval()
        t, _ = B.mtm(metamori, "-C", tree, "checkpoint", "-q")
        times.append(t)
        if (i + 1) % 25 == 0:
            B.log(f"bench: {i + 1}/{n} checkpoints")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--metamori", default=os.path.join(here, "..", "build", "metamori"))
    ap.add_argument("--scale", type=float, default=0.125,
                    help="size factor of W1 (0.125 = 16 x 8 MiB, the default; 1 = 16 x 64 MiB)")
    ap.add_argument("--checkpoints", type=int, default=200)
    ap.add_argument("--keep", type=int, default=20)
    ap.add_argument("--cache", choices=("auto", "cold", "warm"), default="auto")
    ap.add_argument("--repeat", type=int, default=3, help="prune runs (on copies) and floors; medians reported")
    ap.add_argument("--work", default=os.path.join(here, "work", "prune"))
    ap.add_argument("--keep-work", action="store_true", help="leave the work directory")
    ap.add_argument("--json", help="also write the raw figures to this file")
    a = ap.parse_args()

    metamori = os.path.abspath(a.metamori)
    if not os.access(metamori, os.X_OK):
        sys.exit(f"bench: {metamori}: not built (run make)")
    cache = B.Cache(a.cache)
    work = os.path.abspath(a.work)
    B.rmtree(work)
    os.makedirs(work)
    tree = os.path.join(work, "tree")
    w = B.W1(tree, scale=a.scale)
    B.log(f"bench: W1: {w.nfiles} x {B.human(w.file_size)}, {a.checkpoints} checkpoints, keep {a.keep}")
    w.create()
    B.mtm(metamori, "init", tree)
    ckpt_times = []
    t0, _ = B.mtm(metamori, "-C", tree, "checkpoint", "-q", "-m", "initial")
    grow(metamori, w, tree, a.checkpoints - 1, ckpt_times)
    res = {"machine": B.machine(), "df": B.df_t(work), "scale": a.scale, "cache": cache.mode,
           "file_size": w.file_size, "nfiles": w.nfiles, "checkpoints": a.checkpoints, "keep": a.keep,
           "initial_checkpoint_s": t0, "checkpoint_median_s": B.median(ckpt_times)}
    before = du(metamori, tree)
    res["before"] = {"packs": pack_bytes(tree), "packed": before["packed"], "index": before["index_bytes"],
                     "logical": before["logical"]}

    # the main figure, --repeat times on fresh copies of the same store:
    # prune to the last N, against the floor (medians)
    base = os.path.join(work, "base")
    os.rename(tree, base)
    runs = []
    for r in range(a.repeat):
        B.rmtree(tree)
        subprocess.run(["cp", "-a", base, tree], check=True)
        t_dry, dry = prune(metamori, tree, cache, "--keep-last", str(a.keep), "--dry-run")
        t_prune, st = prune(metamori, tree, cache, "--keep-last", str(a.keep))
        floor = B.floor_write(os.path.join(work, "floor.tmp"), max(st["bytes_copied"], B.BLOCK))
        runs.append({"dry_s": t_dry, "s": t_prune, "floor_s": floor, "stats": st})
        B.log(f"bench: prune to {a.keep}: {B.secs(t_prune)}, floor {B.secs(floor)}")
    after = du(metamori, tree)
    med = lambda k: B.median([x[k] for x in runs])
    st = runs[-1]["stats"]
    res["prune"] = {"runs": runs, "dry_s": med("dry_s"), "s": med("s"), "floor_s": med("floor_s"),
                    "ratio": B.median([x["s"] / x["floor_s"] for x in runs]), "stats": st,
                    "packs_after": pack_bytes(tree), "packed_after": after["packed"],
                    "index_after": after["index_bytes"], "dead_after": after["dead"],
                    "used_plain_after": used_plain(tree), "plain_after": after["plain"]}

    # steady state: 10 more, prune to the last N again
    more = []
    grow(metamori, w, tree, 10, more)
    t_s, st_s = prune(metamori, tree, cache, "--keep-last", str(a.keep))
    floor_s = B.median([B.floor_write(os.path.join(work, "floor.tmp"), max(st_s["bytes_copied"], B.BLOCK))
                        for _ in range(a.repeat)])
    after_s = du(metamori, tree)
    res["steady"] = {"s": t_s, "stats": st_s, "floor_s": floor_s, "packs_after": pack_bytes(tree),
                     "packed_after": after_s["packed"], "used_plain_after": used_plain(tree),
                     "plain_after": after_s["plain"], "index_after": after_s["index_bytes"]}

    # drop one: the oldest checkpoint (the initial, biggest one) of a copy
    copy = os.path.join(work, "copy")
    ones = []
    for r in range(a.repeat):
        B.rmtree(copy)
        subprocess.run(["cp", "-a", base, copy], check=True)
        ones.append(prune(metamori, copy, cache, "--keep-last", str(a.checkpoints - 1)))
    res["drop_one"] = {"s": B.median([t for t, _ in ones]), "stats": ones[-1][1]}

    # verify the result is sound (not timed)
    for root in (tree, copy):
        p = subprocess.run([metamori, "-C", root, "verify"], capture_output=True, text=True)
        if p.returncode:
            sys.exit(f"bench: verify failed after prune:\n{p.stdout}{p.stderr}")

    P = res["prune"]
    print(f"\n### Prune: {a.checkpoints} checkpoints of W1 ({w.nfiles} x {B.human(w.file_size)}), "
          f"prune to the last {a.keep}\n")
    print(f"Machine: {res['machine'].get('cpu', '?')}, {res['machine'].get('nproc')} cores, "
          f"{res['machine'].get('ram', '?')}; {res['df']}. Cache: {cache.describe()}. "
          f"Times: medians of {a.repeat} runs on copies of the same store (ratios per run in brackets); "
          f"checkpoints took {B.secs(res['checkpoint_median_s'])} each (median).\n")
    rows = [
        ["store before", B.human(res["before"]["packs"]) + " packs", B.human(res["before"]["index"]) + " index",
         f"{a.checkpoints} checkpoints, logical {B.human(res['before']['logical'])}"],
        ["prune --dry-run", B.secs(P["dry_s"]), "-", f"would drop {len(dry['dropped'])}, "
         f"free {B.human(dry['bytes_freed'])}, return {B.human(dry['bytes_returned'])}"],
        ["prune + gc", B.secs(P["s"]), f"{P['ratio']:.2f}x of floor ("
         + ", ".join(f"{x['s'] / x['floor_s']:.1f}" for x in P["runs"]) + ")",
         f"dropped {len(P['stats']['dropped'])}, {P['stats']['packs_rewritten']} packs rewritten, "
         f"{B.human(P['stats']['bytes_copied'])} copied, {B.human(P['stats']['bytes_returned'])} returned"],
        ["floor: write the surviving delta once + fsync", B.secs(P["floor_s"]), "1.00x",
         B.human(P["stats"]["bytes_copied"])],
        [f"steady state: +10 checkpoints, prune to {a.keep}", B.secs(res["steady"]["s"]),
         B.ratio(res["steady"]["s"], res["steady"]["floor_s"]) + " of floor",
         f"{res['steady']['stats']['packs_rewritten']} packs rewritten, "
         f"{B.human(res['steady']['stats']['bytes_copied'])} copied"],
        [f"drop the oldest of {a.checkpoints} only", B.secs(res["drop_one"]["s"]), "-",
         f"freed {B.human(res['drop_one']['stats']['bytes_freed'])}, "
         f"{res['drop_one']['stats']['packs_rewritten']} packs rewritten"],
    ]
    print(B.table(["step", "time", "ratio", "what"], rows))
    print()
    S = res["steady"]
    rows2 = [
        [f"after prune to {a.keep}", B.human(P["packs_after"]), B.human(P["packed_after"]),
         B.ratio(P["packs_after"], P["packed_after"]), B.human(P["used_plain_after"]),
         B.ratio(P["plain_after"], P["used_plain_after"]), B.human(P["index_after"])],
        ["steady state", B.human(S["packs_after"]), B.human(S["packed_after"]),
         B.ratio(S["packs_after"], S["packed_after"]), B.human(S["used_plain_after"]),
         B.ratio(S["plain_after"], S["used_plain_after"]), B.human(S["index_after"])],
    ]
    print(B.table(["store", "pack files", "chunk records", "packs / records", "used blocks (plain)",
                   "chunk plain / used blocks", "index"], rows2))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    if not a.keep_work:
        B.rmtree(work)


if __name__ == "__main__":
    main()
