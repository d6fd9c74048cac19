#!/usr/bin/env python3
"""Prune, gc, tags and du (issue 5), end to end on seeded random histories.

Every kept checkpoint must restore exactly as its manifest from checkpoint
time (--to a fresh directory, and some in place); dropped ones are gone from
`log`; `verify --data` passes; after gc the packs are within 5% of the chunk
records the kept checkpoints reference; a dry run changes no byte of the
store; tags pin; du's "unique" is exactly what pruning that checkpoint frees.
METAMORI_TORTURE=1 runs more seeds and longer histories.
"""
import os
import random
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtmtest as T  # noqa: E402
import prunelib as P  # noqa: E402

SEEDS = range(1, 9) if P.TORTURE else range(1, 2) if P.SANITIZED else range(1, 3)
LENGTH = 40 if P.TORTURE else 18


def random_policy(rng, root, manifests):
    """Random policy arguments, and the keyword arguments of expected_keep()."""
    ids = P.ids_in_log(root)
    args, kw = [], {}
    choice = rng.random()
    if choice < 0.5 or len(ids) < 3:
        n = rng.randint(1, max(1, len(ids) // 2))
        args += ["--keep-last", str(n)]
        kw["keep_last"] = n
    if rng.random() < 0.4:
        pins = rng.sample(ids, min(len(ids), rng.randint(1, 3)))
        for cid in pins:
            args += ["--keep", str(cid)]
        kw["keep"] = pins
    if rng.random() < 0.3:
        # the histories take a few seconds: sub-second intervals split them
        every = rng.choice([0.2, 0.5, 1])
        args += ["--keep-every", "%gs" % every]
        kw["every_ns"] = int(every * 1e9)
    if rng.random() < 0.15:
        args += ["--keep-hourly", "2"]
        kw["hourly"] = 2
    if rng.random() < 0.1:
        args += ["--keep-daily", "1"]
        kw["daily"] = 1
    if not args:
        args += ["--keep-last", "2"]
        kw["keep_last"] = 2
    if rng.random() < 0.5:
        args += ["--gc-threshold", rng.choice(["0", "5", "30"])]
    return args, kw


def prune_round(h, rng, tmp, strict=False):
    """One random prune on history h, checked in every way."""
    root = h.root
    if rng.random() < 0.3:  # a tag pins a checkpoint
        ids = P.ids_in_log(root)
        T.run(["-C", root, "tag", str(rng.choice(ids)), "pin%d" % rng.randrange(3)])
    args, kw = random_policy(rng, root, h.manifests)
    before = P.ids_in_log(root)
    keep = P.expected_keep(root, **kw)
    fresh = P.statcache_current(root)
    # the dry run changes nothing, and names what the real run drops
    state = P.store_bytes(root)
    would, out = P.prune(root, args + ["--dry-run"])
    T.assert_same(state, P.store_bytes(root), "store after a dry run")
    if "would be freed" not in out or "would return" not in out:
        raise T.Failure("dry run output: %r" % out)
    if rng.random() < 0.5:
        dropped, out = P.prune(root, args)
    else:  # --json: the dry run's figures are the real run's, exactly
        dry = P.prune_json(root, args + ["--dry-run"])
        T.assert_same(state, P.store_bytes(root), "store after a dry run (--json)")
        records = P.chunk_records(root)
        real = P.prune_json(root, args)
        for k in ("dropped", "kept", "chunks_freed", "bytes_freed"):
            if dry[k] != real[k]:
                raise T.Failure("dry run %s %r, real run %r" % (k, dry[k], real[k]))
        freed = P.freed_records(records, root)
        if (real["bytes_freed"], real["chunks_freed"]) != freed:
            raise T.Failure("prune says %d bytes in %d chunks freed, the index lost %d in %d"
                            % ((real["bytes_freed"], real["chunks_freed"]) + freed))
        if real["dry_run"] or not dry["dry_run"]:
            raise T.Failure("dry_run flags: %r %r" % (dry, real))
        dropped = real["dropped"]
    if would != dropped:
        raise T.Failure("dry run would drop %s, prune dropped %s" % (would, dropped))
    after = P.ids_in_log(root)
    if set(after) != keep or set(dropped) != set(before) - keep:
        raise T.Failure("%s: kept %s, expected %s (dropped %s)" % (args, after, sorted(keep), dropped))
    P.verify_data(root)
    # the stat cache follows the versions that moved: no file is reread
    lost = fresh - P.statcache_current(root)
    if lost:
        raise T.Failure("stat cache rows no longer current after prune: %s" % sorted(lost)[:5])
    thr = float(args[args.index("--gc-threshold") + 1]) / 100 if "--gc-threshold" in args else 0.05
    sp = P.check_space(root, strict=strict, slack=max(thr, 0.05) if thr < 0.3 else 1.0, compacted=thr == 0)
    if os.environ.get("PRUNE_DEBUG"):
        print("  %s: %s" % (" ".join(args), sp))
    P.restore_check(root, h.manifests, after, tmp)
    for cid in dropped:
        del h.manifests[cid]
    return dropped


def test_random_histories():
    """Seeded random histories with branches; random policies, several rounds."""
    for seed in SEEDS:
        rng = random.Random(1000 + seed)
        tmp = T.tempdir()
        try:
            h = P.History(seed, os.path.join(tmp, "root"))
            h.grow(LENGTH)
            P.check_space(h.root)  # nothing unreferenced even before a prune
            for rnd in range(3):
                prune_round(h, rng, tmp)
                # restore some kept checkpoint in place, then go on from there
                ids = P.ids_in_log(h.root)
                h.branch_from(rng.choice(ids))
                h.grow(LENGTH // 3)
        except Exception as e:
            raise T.Failure("seed %d: %s" % (seed, e))
        finally:
            T.rmtree(tmp)


def test_no_truncation_strict_space():
    """Without truncations every stored block is inside its file: after
    pruning to the last few, the packs are within 5% of what they reference."""
    rng = random.Random(77)
    tmp = T.tempdir()
    try:
        h = P.History(77, os.path.join(tmp, "root"), truncate=False)
        h.grow(LENGTH)
        P.prune(h.root, ["--keep-last", "3"])
        P.verify_data(h.root)
        P.check_space(h.root, strict=True)
        P.restore_check(h.root, h.manifests, P.ids_in_log(h.root), tmp)
        h.grow(5, branch_p=0.5)
        prune_round(h, rng, tmp, strict=True)
    finally:
        T.rmtree(tmp)


def test_deleted_file_space_returns():
    """A deleted big file's blocks go once the checkpoints holding it go."""
    tmp = T.tempdir()
    try:
        root = os.path.join(tmp, "root")
        os.mkdir(root)
        T.init(root)
        rng = random.Random(5)
        T.write_file(os.path.join(root, "big"), rng.randbytes(3 << 20))
        T.write_file(os.path.join(root, "small"), rng.randbytes(50000))
        c1 = T.checkpoint(root)
        os.unlink(os.path.join(root, "big"))
        c2 = T.checkpoint(root)
        m2 = T.manifest(root)
        T.patch_file(os.path.join(root, "small"), 4096, b"x" * 100)
        c3 = T.checkpoint(root)
        m3 = T.manifest(root)
        du = T.run(["-C", root, "du", "--json"]).stdout
        import json
        d = {c["id"]: c for c in json.loads(du)["checkpoints"]}
        if d[c1]["unique"] < 3 << 20:
            raise T.Failure("du: checkpoint %d holds the deleted file alone, unique %d" % (c1, d[c1]["unique"]))
        dropped, out = P.prune(root, ["--keep-last", "2"])
        if dropped != [c1]:
            raise T.Failure("dropped %s" % dropped)
        import sqlite3
        con = sqlite3.connect("file:%s?mode=ro" % os.path.join(root, ".metamori", "index.db"), uri=True)
        av, free = con.execute("PRAGMA auto_vacuum").fetchone()[0], con.execute("PRAGMA freelist_count").fetchone()[0]
        con.close()
        if av != 2 or free != 0:  # the index gives its free pages back too
            raise T.Failure("index: auto_vacuum %d, %d free pages after prune" % (av, free))
        s = P.check_space(root, strict=True)
        if s["pack_bytes"] > 200000:
            raise T.Failure("packs still hold %d bytes after the 3 MiB file went" % s["pack_bytes"])
        P.restore_check(root, {c2: m2, c3: m3}, [c2, c3], tmp)
        P.verify_data(root)
    finally:
        T.rmtree(tmp)


def test_gc_compacts_partly_used_chunks():
    """A chunk of 16 blocks of which later checkpoints rewrote 13: once the
    checkpoints holding the old blocks go, gc keeps only the 3 still used;
    restore, verify --data and the independent reader (docs/tools) agree."""
    import sqlite3
    import subprocess
    tmp = T.tempdir()
    try:
        root = os.path.join(tmp, "root")
        os.mkdir(root)
        T.init(root)
        rng = random.Random(9)
        f = os.path.join(root, "f")
        T.write_file(f, rng.randbytes(16 * 4096 + 1000))  # chunk 1: 16 blocks; chunk 2: the short tail
        T.checkpoint(root)
        for b in list(range(0, 5)) + list(range(6, 12)) + [13, 14]:
            T.patch_file(f, b * 4096, rng.randbytes(4096))
        c2 = T.checkpoint(root)
        m2 = T.manifest(root)
        T.patch_file(f, 15 * 4096, rng.randbytes(100))
        c3 = T.checkpoint(root)
        m3 = T.manifest(root)
        st = P.prune_json(root, ["--keep-last", "2", "--gc-threshold", "0"])
        if st["dropped"] != [1] or st["packs_rewritten"] != 1:
            raise T.Failure("prune: %r" % st)
        con = sqlite3.connect("file:%s?mode=ro" % os.path.join(root, ".metamori", "index.db"), uri=True)
        plen = con.execute("SELECT plen FROM chunk WHERE id = 1").fetchone()
        con.close()
        if plen != (3 * 4096,):  # blocks 5, 12 and 15 of the first chunk
            raise T.Failure("first chunk after gc: plen %r, expected 3 blocks" % (plen,))
        P.check_space(root, strict=True, compacted=True)
        P.verify_data(root)
        P.restore_check(root, {c2: m2, c3: m3}, [c2, c3], tmp)
        reader = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "tools", "read_store.py")
        for cid, m in ((c2, m2), (c3, m3)):
            dst = os.path.join(tmp, "x%d" % cid)
            p = subprocess.run([sys.executable, reader, root, "extract", str(cid), dst], capture_output=True, text=True)
            if p.returncode:
                raise T.Failure("read_store extract %d: %s" % (cid, p.stderr))
            want = {k: v[:4] for k, v in m.items()}  # content, not times
            got = {k: v[:4] for k, v in T.manifest(dst).items()}
            T.assert_same(want, got, "independent reader at %d" % cid)
        # and checkpoints go on deduplicating against the compacted chunk
        T.patch_file(f, 0, rng.randbytes(4096))
        c4 = T.checkpoint(root)
        P.restore_check(root, {c4: T.manifest(root)}, [c4], tmp)
        P.verify_data(root)
    finally:
        T.rmtree(tmp)


def test_du_unique_is_what_prune_frees():
    """du's "unique" for a checkpoint equals the chunk bytes pruning it frees."""
    import json
    tmp = T.tempdir()
    try:
        for seed in (11, 12):
            rng = random.Random(seed)
            h = P.History(seed, os.path.join(tmp, "root%d" % seed))
            h.grow(12)
            for _ in range(4):
                ids = P.ids_in_log(h.root)
                head = P.head_of(h.root)
                cands = [c for c in ids if c != head]
                if not cands:
                    break
                victim = rng.choice(cands)
                du = json.loads(T.run(["-C", h.root, "du", "--json"]).stdout)
                unique = {c["id"]: c["unique"] for c in du["checkpoints"]}[victim]
                if du["packed"] != P.space(h.root)["chunk_bytes"]:
                    raise T.Failure("du packed %d != chunk records %d" % (du["packed"], P.space(h.root)["chunk_bytes"]))
                records = P.chunk_records(h.root)
                args = []
                for c in ids:
                    if c != victim:
                        args += ["--keep", str(c)]
                st = P.prune_json(h.root, args)
                if st["dropped"] != [victim]:
                    raise T.Failure("dropped %s, wanted [%d]" % (st["dropped"], victim))
                freed, _ = P.freed_records(records, h.root)
                if freed != unique or st["bytes_freed"] != unique:
                    raise T.Failure("seed %d: du said checkpoint %d holds %d bytes alone; pruning it freed %d"
                                    % (seed, victim, unique, freed))
                del h.manifests[victim]
                P.restore_check(h.root, h.manifests, P.ids_in_log(h.root), tmp)
            P.verify_data(h.root)
    finally:
        T.rmtree(tmp)


def test_du_totals():
    """du's totals agree with the index and the files."""
    import json
    tmp = T.tempdir()
    try:
        h = P.History(21, os.path.join(tmp, "root"))
        h.grow(8)
        du = json.loads(T.run(["-C", h.root, "du", "--json"]).stdout)
        s = P.space(h.root)
        cks = P.log(h.root)
        if du["logical"] != sum(c["tree_bytes"] for c in cks):
            raise T.Failure("du logical %d" % du["logical"])
        if du["packed"] != s["chunk_bytes"] or du["pack_files"] != s["pack_bytes"] or du["dead"] != s["dead"]:
            raise T.Failure("du totals %r vs %r" % (du, s))
        if [c["id"] for c in du["checkpoints"]] != [c["id"] for c in cks]:
            raise T.Failure("du lists other checkpoints than log")
        if sum(c["added"] for c in du["checkpoints"]) != sum(c["bytes_stored"] for c in cks):
            raise T.Failure("du added != log bytes_stored")
        want_dedup = du["logical"] / du["plain"] if du["plain"] else 0
        if abs(du["dedup_ratio"] - want_dedup) > 0.001:
            raise T.Failure("dedup ratio %r, expected %r" % (du["dedup_ratio"], want_dedup))
        text = T.run(["-C", h.root, "du"]).stdout
        for word in ("logical", "stored", "ratios", "dedup", "compression"):
            if word not in text:
                raise T.Failure("du output lacks %r:\n%s" % (word, text))
        # after a prune, the added bytes of the dropped ones moved to children
        total_added = sum(c["added"] for c in du["checkpoints"])
        P.prune(h.root, ["--keep-last", "2"])
        du2 = json.loads(T.run(["-C", h.root, "du", "--json"]).stdout)
        if sum(c["added"] for c in du2["checkpoints"]) != total_added:
            raise T.Failure("added bytes not carried to the children")
    finally:
        T.rmtree(tmp)


def test_tags_pin():
    tmp = T.tempdir()
    try:
        h = P.History(31, os.path.join(tmp, "root"))
        h.grow(6, branch_p=0)
        ids = P.ids_in_log(h.root)
        T.run(["-C", h.root, "tag", str(ids[1]), "release-1.0"])
        T.run(["-C", h.root, "tag", str(ids[3]), "keep_me"])
        if P.tags(h.root) != {"release-1.0": ids[1], "keep_me": ids[3]}:
            raise T.Failure("tags: %r" % P.tags(h.root))
        dropped, _ = P.prune(h.root, ["--keep-last", "1"])
        if P.ids_in_log(h.root) != [ids[1], ids[3], ids[-1]]:
            raise T.Failure("after prune: %s" % P.ids_in_log(h.root))
        # a tag is a checkpoint name everywhere
        dst = os.path.join(tmp, "r")
        T.restore(h.root, "release-1.0", to=dst)
        T.assert_same(h.manifests[ids[1]], T.manifest(dst), "restore by tag")
        T.run(["-C", h.root, "tag", "-d", "release-1.0"])
        P.prune(h.root, ["--keep", "keep_me", "--keep-last", "1"])
        if P.ids_in_log(h.root) != [ids[3], ids[-1]]:
            raise T.Failure("after untag and prune: %s" % P.ids_in_log(h.root))
        for cid in P.ids_in_log(h.root):
            T.rmtree(dst)
            T.restore(h.root, cid, to=dst)
            T.assert_same(h.manifests[cid], T.manifest(dst), "checkpoint %d" % cid)
        P.verify_data(h.root)
    finally:
        T.rmtree(tmp)


def test_in_place_restores_after_prune():
    """Kept checkpoints restore in place too, and checkpoints go on after."""
    rng = random.Random(41)
    tmp = T.tempdir()
    try:
        h = P.History(41, os.path.join(tmp, "root"))
        h.grow(12)
        P.prune(h.root, ["--keep-last", "4", "--keep", str(P.ids_in_log(h.root)[2])])
        for cid in rng.sample(P.ids_in_log(h.root), 3):
            h.branch_from(cid)  # asserts the tree equals the manifest
            h.checkpoint()
        P.prune(h.root, ["--keep-last", "3"])
        P.restore_check(h.root, h.manifests, P.ids_in_log(h.root), tmp)
        P.verify_data(h.root)
        P.check_space(h.root)
    finally:
        T.rmtree(tmp)


def test_errors():
    tmp = T.tempdir()
    try:
        root = os.path.join(tmp, "root")
        os.mkdir(root)
        T.init(root)
        T.write_file(os.path.join(root, "a"), b"a" * 5000)
        T.checkpoint(root)
        T.checkpoint(root)
        state = P.store_bytes(root)
        cases = [
            ([], "metamori: prune: no policy given (use --keep-last N, --keep-hourly N, --keep-daily N, "
                 "--keep-every DURATION or --keep ID)"),
            (["--keep", "99"], "metamori: checkpoint 99: no such checkpoint"),
            (["--keep", "0"], "metamori: checkpoint 0: no such checkpoint"),
            (["--keep", "nosuch"], "metamori: nosuch: no such checkpoint or tag"),
            (["--keep-every", "5x"], "metamori: --keep-every: needs a duration such as 90s, 15m, 6h, 2d or 1w"),
            (["--keep-every", "0"], "metamori: --keep-every: needs a duration such as 90s, 15m, 6h, 2d or 1w"),
            (["--keep-every", "-1h"], "metamori: --keep-every: needs a duration such as 90s, 15m, 6h, 2d or 1w"),
            (["--keep-every", "inf"], "metamori: --keep-every: needs a duration such as 90s, 15m, 6h, 2d or 1w"),
            (["--keep-last", "0"], "metamori: --keep-last: needs a whole number of at least 1"),
            (["--keep-last", "x"], "metamori: --keep-last: needs a whole number of at least 1"),
            (["--keep-hourly", "-2"], "metamori: --keep-hourly: needs a whole number of at least 1"),
            (["--keep-daily", ""], "metamori: --keep-daily: needs a whole number of at least 1"),
            (["--keep-last", "1", "--gc-threshold", "101"], "metamori: --gc-threshold: needs a percentage from 0 to 100"),
            # only plain decimals: strtol/strtod took blanks, signs, hex and nan
            (["--keep-last", " 1"], "metamori: --keep-last: needs a whole number of at least 1"),
            (["--keep-last", "+1"], "metamori: --keep-last: needs a whole number of at least 1"),
            (["--keep-every", " 5m"], "metamori: --keep-every: needs a duration such as 90s, 15m, 6h, 2d or 1w"),
            (["--keep-every", "0x10"], "metamori: --keep-every: needs a duration such as 90s, 15m, 6h, 2d or 1w"),
            (["--keep-every", "1e3"], "metamori: --keep-every: needs a duration such as 90s, 15m, 6h, 2d or 1w"),
            (["--keep-last", "1", "--gc-threshold", "nan"], "metamori: --gc-threshold: needs a percentage from 0 to 100"),
            (["--keep-last", "1", "--gc-threshold", " 5"], "metamori: --gc-threshold: needs a percentage from 0 to 100"),
            (["--keep", " 1"], "metamori:  1: no such checkpoint or tag"),
            (["--keep-last", "1", "extra"], "metamori: extra: unexpected argument (see 'metamori prune --help')"),
            (["--bogus"], "metamori: prune: bad option (see 'metamori prune --help')"),
        ]
        for args, msg in cases:
            p = T.run_fail(["-C", root, "prune"] + args)
            if p.stderr.strip() != msg:
                raise T.Failure("prune %s: expected %r, got %r" % (args, msg, p.stderr.strip()))
        tag_cases = [
            (["99", "x"], "metamori: checkpoint 99: no such checkpoint"),
            (["1", "12"], "metamori: tag '12': a name is 1-64 letters, digits, '-', '_' or '.', not a number and not 'head'"),
            (["1", "head"], "metamori: tag 'head': a name is 1-64 letters, digits, '-', '_' or '.', not a number and not 'head'"),
            (["1", "a/b"], "metamori: tag 'a/b': a name is 1-64 letters, digits, '-', '_' or '.', not a number and not 'head'"),
            (["-d", "nope"], "metamori: tag 'nope': no such tag"),
            (["1"], "metamori: tag: usage: metamori tag [--json] | tag [-f] ID NAME | tag -d NAME"),
        ]
        for args, msg in tag_cases:
            p = T.run_fail(["-C", root, "tag"] + args)
            if p.stderr.strip() != msg:
                raise T.Failure("tag %s: expected %r, got %r" % (args, msg, p.stderr.strip()))
        p = T.run_fail(["-C", root, "du", "x"])
        if p.stderr.strip() != "metamori: x: unexpected argument (see 'metamori du --help')":
            raise T.Failure("du x: %r" % p.stderr)
        T.assert_same(state, P.store_bytes(root), "store after refused commands")
        # a prune with nothing to drop says so and changes nothing it should not
        out = T.run(["-C", root, "prune", "--keep-last", "5"]).stdout
        if not out.startswith("nothing to drop"):
            raise T.Failure("prune with nothing to drop: %r" % out)
    finally:
        T.rmtree(tmp)


def test_busy():
    """prune is a writer: another writer holding the lock makes it fail at once."""
    import fcntl
    tmp = T.tempdir()
    try:
        root = os.path.join(tmp, "root")
        os.mkdir(root)
        T.init(root)
        T.write_file(os.path.join(root, "a"), b"a")
        T.checkpoint(root)
        T.checkpoint(root)
        with open(os.path.join(root, ".metamori", "lock"), "r+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            p = T.run_fail(["-C", root, "prune", "--keep-last", "1"])
            if "another metamori command is writing this store" not in p.stderr:
                raise T.Failure("busy: %r" % p.stderr)
        if len(P.ids_in_log(root)) != 2:
            raise T.Failure("a refused prune dropped something")
    finally:
        T.rmtree(tmp)


if __name__ == "__main__":
    T.main([test_errors, test_busy, test_tags_pin, test_deleted_file_space_returns, test_du_totals,
            test_gc_compacts_partly_used_chunks,
            test_du_unique_is_what_prune_frees, test_in_place_restores_after_prune,
            test_no_truncation_strict_space, test_random_histories])
