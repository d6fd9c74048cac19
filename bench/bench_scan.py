#!/usr/bin/env python3
"""bench_scan.py: scan-mode checkpoints and restores on workload W1, against
the peers (cp -a, rsync --link-dest, borg, restic) and the physical floor, in
one run. Prints Markdown tables of times and ratios (docs/BENCHMARKS.md).

W1: 16 files x 64 MiB of random data (--scale shrinks it) and a log; per
interval 1% of all 4 KiB blocks rewritten at random with new data, plus 1 MiB
appended to the log. Per interval, in the same cache state (see --cache):
  read-changed  cat of the changed files to /dev/null, one process (what a scan must
                at least read)
  scan ckpt     metamori checkpoint
  floor         the changed bytes written once into a new file and fsynced
  peers         cp -a, rsync --link-dest, borg create, restic backup, after all of
                metamori's intervals, on a second W1 from the same seed (the same
                changes; rsync's copy is compared with the tree after it: an interval
                whose rsync missed a changed file, its quick check passing it, has no
                rsync ratio)
Then: in-place restore three checkpoints back vs rewriting the differing
blocks in place (+fsync), and restore --to vs cp -a. Last, untimed: every
checkpoint restored (--to) and compared with W1 made again from its seed.

usage: bench_scan.py --metamori build/metamori [--scale 0.1] [--files 16] [--intervals 5]
                     [--cache auto|cold|warm] [--peers cp,rsync,borg,restic]
                     [--work DIR] [--keep] [--json FILE]
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--metamori", default=os.path.join(here, "..", "build", "metamori"))
    ap.add_argument("--scale", type=float, default=1.0,
                    help="size factor of W1 (1 = 16 x 64 MiB; 0.1 for a quick run)")
    ap.add_argument("--files", type=int, default=16, help="files of W1 (issue 21's scan goal: 4)")
    ap.add_argument("--intervals", type=int, default=5)
    ap.add_argument("--cache", choices=("auto", "cold", "warm"), default="auto",
                    help="cold (drop caches before each contender; default as root) or warm")
    ap.add_argument("--peers", default="cp,rsync,borg,restic")
    ap.add_argument("--work", default=os.path.join(here, "work", "scan"))
    ap.add_argument("--keep", action="store_true", help="leave the work directory")
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
    w = B.W1(tree, scale=a.scale, nfiles=a.files)
    # the peers run on a second W1 made from the same seed (the same bytes,
    # the same changes), after metamori's intervals: run between them, their
    # ~1 GiB of copies written and removed each interval doubled the next
    # checkpoint's CPU (fresh memory is dear on this VM) while the read
    # floor, which allocates nothing, did not feel it (S29)
    ptree = os.path.join(work, "peers", "tree")
    pw = B.W1(ptree, scale=a.scale, nfiles=a.files)
    os.makedirs(os.path.dirname(ptree))
    peers = B.Peers(os.path.dirname(ptree), ptree, pw.names, [p for p in a.peers.split(",") if p])
    for p in peers.missing:
        B.log(f"bench: {p} not installed: left out (apt-get install {p if p != 'borg' else 'borgbackup'})")

    B.log(f"bench: creating W1: {w.nfiles} x {B.human(w.file_size)} in {tree}")
    w.create()
    B.mtm(metamori, "init", tree)

    res = {"machine": B.machine(), "df": B.df_t(work), "versions": B.versions(),
           "scale": a.scale, "cache": cache.mode, "file_size": w.file_size,
           "nfiles": w.nfiles, "intervals": [], "initial": {}}

    # initial full checkpoint / snapshot (reported, not the point)
    cache.prepare()
    s0 = B.store_bytes(tree)
    t, _ = B.mtm(metamori, "-C", tree, "checkpoint", "-q", "-m", "initial")
    res["initial"]["metamori"] = {"s": t, "grew": B.store_bytes(tree) - s0}
    B.log(f"bench: initial checkpoint {B.secs(t)}")

    back = min(3, a.intervals)
    target_interval = a.intervals - back  # checkpoint id = interval + 1
    target_hashes = w.hashes() if target_interval == 0 else None

    for i in range(1, a.intervals + 1):
        changed = w.interval()
        row = {"interval": i, "changed": changed, "files": w.changed_files()}
        cache.prepare()
        row["read"], row["read_cpu"] = B.read_files(row["files"], cwd=tree)
        cache.prepare()
        s0 = B.store_bytes(tree)
        t, p = B.mtm(metamori, "-C", tree, "checkpoint", "-m", f"interval {i}")
        row["scan"] = t
        row["scan_cpu"] = B.LAST_CPU
        row["store_grew"] = B.store_bytes(tree) - s0
        row["scan_out"] = p.stdout.strip()
        last = B.mtm_log(metamori, tree)[-1]
        row["bytes_changed"] = last["bytes_changed"]
        row["bytes_stored"] = last["bytes_stored"]
        cache.prepare()
        row["floor"] = B.floor_write(os.path.join(work, "floor.bin"), changed)
        res["intervals"].append(row)
        B.log(f"bench: interval {i}: changed {B.human(changed)}, read {B.secs(row['read'])}, "
              f"scan ckpt {B.secs(row['scan'])}, floor {B.secs(row['floor'])}")
        if i == target_interval:
            target_hashes = w.hashes()

    # the peers, on the same changes
    if peers.which:
        pw.create()
        peers.init()
        for p in peers.which:
            cache.prepare()
            tp, grew = peers.run(p)
            res["initial"][p] = {"s": tp, "grew": grew}
        peers.next()
    for row in res["intervals"]:
        row["peers"] = {}
        if not peers.which:
            continue
        pw.interval()
        for pn in peers.which:
            cache.prepare()
            tp, grew = peers.run(pn)
            row["peers"][pn] = {"s": tp, "grew": grew, "cpu": B.LAST_CPU}
            if pn == "rsync":
                row["peers"][pn]["missed"] = peers.missed
        peers.next()
        B.log(f"bench: interval {row['interval']}: "
              + ", ".join(f"{k} {B.secs(v['s'])}" + (f" (missed {len(v['missed'])} changed files)"
                                                     if v.get("missed") else "")
                          for k, v in row["peers"].items()))
    B.rmtree(os.path.dirname(ptree))

    # in-place restore `back` checkpoints back vs the floor of rewriting the differing blocks
    target = target_interval + 1
    blocks = w.blocks_since(back)
    differing = len(blocks) * B.BLOCK
    cache.prepare()
    t, p = B.mtm(metamori, "-C", tree, "restore", str(target))
    restore = {"target": target, "back": back, "s": t, "out": p.stdout.strip(),
               "differing": differing, "log_cut": w.append * back}
    if w.hashes() != target_hashes:
        sys.exit(f"bench: restore {target}: the tree differs from checkpoint {target}")
    cache.prepare()
    restore["floor"] = B.floor_rewrite_in_place(tree, w.names, blocks,
                                                extra_files=[os.path.join(tree, "log.txt")])
    res["restore"] = restore
    B.log(f"bench: restore {target} in place {B.secs(t)}, floor {B.secs(restore['floor'])}")

    # restore --to vs cp -a (and cp -a followed by sync: restore --to fsyncs what it writes)
    dst = os.path.join(work, "restored")
    cache.prepare()
    t, p = B.mtm(metamori, "-C", tree, "restore", str(target), "--to", dst)
    to = {"s": t, "out": p.stdout.strip(), "bytes": B.tree_bytes(dst)}
    B.rmtree(dst)
    cp_dst = os.path.join(work, "cpcopy")
    os.makedirs(cp_dst)
    cache.prepare()
    to["cp"], _ = B.timed(["cp", "-a"] + w.names + [cp_dst], cwd=tree)
    B.rmtree(cp_dst)
    os.makedirs(cp_dst)
    cache.prepare()
    to["cp_sync"], _ = B.timed(["sh", "-c", 'cp -a "$@" && sync', "cp"] + w.names + [cp_dst],
                               cwd=tree)
    B.rmtree(cp_dst)
    res["restore_to"] = to
    res["store_total"] = B.store_bytes(tree)
    # every checkpoint, restored and compared (untimed)
    res["verified"] = B.verify_w1(metamori, tree, a.files, a.intervals, work, scale=a.scale)

    report(res, peers)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1, default=str)
    if not a.keep:
        B.rmtree(work)


def rsync_missed(r):
    """The changed files rsync's copy of interval r left differing from the tree."""
    return r["peers"].get("rsync", {}).get("missed") or []


def report(res, peers):
    m = res["machine"]
    out = []
    out.append(f"## Scan mode, workload W1 (scale {res['scale']}: {res['nfiles']} x "
               f"{B.human(res['file_size'])} + log), {len(res['intervals'])} intervals")
    out.append("")
    out.append(f"Run {m['date']} on {m['nproc']} CPUs ({m.get('cpu', '?')}), {m.get('ram', '?')} RAM, "
               f"kernel {m['kernel']}, load average {m.get('load')} at the start and {B.loadavg()} at the end; `df -T`: `{res['df']}`.")
    out.append(f"Cache: {B.Cache.describe(type('c', (), {'mode': res['cache']})())}.")
    out.append("Peers: " + "; ".join(f"{k}: {v}" for k, v in res["versions"].items()) + ".")
    out.append("")
    ini = res["initial"]
    out.append("Initial full checkpoint/snapshot: " + ", ".join(
        f"{k} {B.secs(v['s'])} (+{B.human(v['grew'])})" for k, v in ini.items()) + ".")
    out.append("")
    pn = [p for p in B.Peers.ALL if p in peers.which]
    hdr = ["int", "changed", "read-changed", "scan ckpt", "scan/read", "store grew", "grew/changed",
           "floor"] + pn + ["rsync/scan" if "rsync" in pn else None]
    hdr = [h for h in hdr if h]
    rows = []
    for r in res["intervals"]:
        row = [r["interval"], B.human(r["changed"]), B.secs(r["read"]), B.secs(r["scan"]),
               B.ratio(r["scan"], r["read"]), B.human(r["store_grew"]),
               B.ratio(r["store_grew"], r["changed"]), B.secs(r["floor"])]
        row += [B.secs(r["peers"][p]["s"]) for p in pn]
        if "rsync" in pn:
            row.append(f"missed ({len(rsync_missed(r))} files)" if rsync_missed(r)
                       else B.ratio(r["peers"]["rsync"]["s"], r["scan"]))
        rows.append(row)
    out.append(B.table(hdr, rows))
    out.append("")
    ivs = res["intervals"]
    med = lambda f: B.median([f(r) for r in ivs])  # noqa: E731
    scan_read = med(lambda r: r["scan"] / r["read"])
    grew = med(lambda r: r["store_grew"] / r["changed"])
    out.append("Medians over the intervals, and the goals (docs/DESIGN.md):")
    out.append("")
    g = []
    g.append(["scan ckpt / read-changed", f"{scan_read:.2f}x", "<= 1.5x", B.goal(scan_read, "<=", 1.5)])
    g.append(["store growth / changed bytes", f"{grew:.3f}x", "<= 1.1x", B.goal(grew, "<=", 1.1)])
    # an interval whose rsync missed a changed file (its quick check) has no
    # rsync figure: rsync did not do the work
    rsync_ok = [r for r in ivs if not rsync_missed(r)]
    rmed = lambda f: B.median([f(r) for r in rsync_ok])  # noqa: E731
    if "rsync" in pn:
        rs = rmed(lambda r: r["peers"]["rsync"]["s"] / r["scan"])
        g.append(["rsync --link-dest / scan ckpt", "-" if rs is None else f"{rs:.2f}x", ">= 3x",
                  B.goal(rs, ">=", 3)])
    # CPU seconds (user + sys) of the same commands: what a loaded machine's
    # wait for a CPU does not inflate (the disk's waits are not in it)
    if all(r.get("scan_cpu") and r.get("read_cpu") for r in ivs):
        c = med(lambda r: r["scan_cpu"] / r["read_cpu"])
        g.append(["CPU: scan ckpt / read-changed", f"{c:.2f}x", "", ""])
        if "rsync" in pn and rsync_ok and all(r["peers"]["rsync"].get("cpu") for r in rsync_ok):
            c = rmed(lambda r: r["peers"]["rsync"]["cpu"] / r["scan_cpu"])
            g.append(["CPU: rsync --link-dest / scan ckpt", f"{c:.2f}x", "", ""])
    for p in pn:
        if p == "rsync":
            continue
        x = med(lambda r: r["peers"][p]["s"] / r["scan"])
        g.append([f"{p} / scan ckpt", f"{x:.2f}x", "", ""])
    fl = med(lambda r: r["scan"] / r["floor"])
    g.append(["scan ckpt / floor (write changed + fsync)", f"{fl:.1f}x", "(tracked mode: <= 2x)", ""])
    for p in pn:
        x = (rmed if p == "rsync" else med)(lambda r: r["peers"][p]["grew"] / r["changed"])
        g.append([f"{p} storage growth / changed bytes", "-" if x is None else f"{x:.1f}x", "", ""])
    rs = res["restore"]
    x = rs["s"] / rs["floor"]
    g.append([f"in-place restore {rs['back']} back / floor", f"{x:.2f}x", "<= 3x", B.goal(x, "<=", 3)])
    to = res["restore_to"]
    g.append(["restore --to / cp -a", f"{to['s'] / to['cp']:.2f}x", "~1x", ""])
    g.append(["restore --to / (cp -a; sync)", f"{to['s'] / to['cp_sync']:.2f}x", "", ""])
    out.append(B.table(["measure", "value", "goal", ""], g))
    out.append("")
    missed = [r for r in ivs if rsync_missed(r)]
    if missed:
        out.append("rsync missed changed files in interval(s) "
                   + ", ".join(f"{r['interval']} ({', '.join(rsync_missed(r))})" for r in missed)
                   + ": its copy differed from the tree (its quick check, size and mtime, passed "
                   "files rewritten in place within the same second at the same size). Those "
                   "intervals are left out of the rsync ratios; "
                   f"{len(rsync_ok)} of {len(ivs)} intervals count.")
        out.append("")
    out.append(f"In-place restore to checkpoint {rs['target']} ({rs['back']} back): {B.secs(rs['s'])} "
               f"(`{rs['out']}`); floor: rewrite the {B.human(rs['differing'])} of differing blocks in "
               f"place and fsync each file: {B.secs(rs['floor'])} (the log is also cut by "
               f"{B.human(rs['log_cut'])}).")
    out.append(f"restore --to (a new directory, {B.human(to['bytes'])}): {B.secs(to['s'])}; "
               f"cp -a of the same files: {B.secs(to['cp'])}; cp -a then sync: {B.secs(to['cp_sync'])}.")
    out.append(f"Every checkpoint restored (--to) and compared with W1 made again from its seed: "
               f"{res['verified']} of {len(res['intervals']) + 1}.")
    out.append(f"Store after the run: {B.human(res['store_total'])} "
               f"(the tree: {B.human(res['nfiles'] * res['file_size'])} + log).")
    print("\n".join(out))


if __name__ == "__main__":
    main()
