#!/usr/bin/env python3
"""Damaged stores (issues 2 and 4): flipped bytes in packs and in index.db,
truncated packs and index, a missing pack, extra files in .metamori.

For each: `verify --data` exits 1 and names what is damaged; a restore that
needs the damaged data refuses with one clear error line and leaves the tree
exactly as it was (in place) or writes nothing it could not complete (--to);
nothing crashes (the ASan build runs these too). Random byte flips over the
whole index.db check that no command ever crashes on a damaged index.
"""
import os
import random

import dlib
import mtmtest as T

FLIPS = int(os.environ.get("METAMORI_DAMAGE_FLIPS", "0")) or (400 if os.environ.get("METAMORI_TORTURE") else 12 if os.environ.get("MTM_SANITIZED") else 20)
STATS = {"cases": 0, "index_flips": 0, "index_flips_detected": 0, "restores_compared": 0}
S = None


def store():
    global S
    if S is None:
        S = dlib.Store()
    return S


def verify_names(root, *words):
    p = dlib.no_crash(dlib.mtm(["-C", root, "verify", "--data"]), "verify --data")
    out = p.stdout + p.stderr
    if p.returncode != 1:
        raise T.Failure("verify --data passed a damaged store:\n%s" % out)
    for w in words:
        if w not in out:
            raise T.Failure("verify --data does not name %r:\n%s" % (w, out))
    STATS["cases"] += 1
    return out


def restore_refuses(root, cid, *words):
    """In place and --to: exit 1, one error line naming the damage; tree untouched."""
    s = store()
    before = dlib.tree(root)
    # the live tree is saved first (issue 16); when the damage makes that
    # fail too, the restore is refused before anything else: the damage is
    # then named by the restore that skips the save
    p = dlib.no_crash(dlib.mtm(["-C", root, "restore", str(cid)]), "restore %d" % cid)
    if p.returncode != 1:
        raise T.Failure("restore %d from a damaged store succeeded:\n%s" % (cid, p.stdout))
    if "saving it first failed" in p.stderr:
        T.assert_same(before, dlib.tree(root), "tree after a refused save")
        p = dlib.no_crash(dlib.mtm(["-C", root, "restore", str(cid), "--discard"]), "restore %d --discard" % cid)
        if p.returncode != 1:
            raise T.Failure("restore %d --discard from a damaged store succeeded:\n%s" % (cid, p.stdout))
    for w in words:
        if w not in p.stderr:
            raise T.Failure("restore error does not name %r: %s" % (w, p.stderr))
    T.assert_same(before, dlib.tree(root), "tree after a refused restore")
    if os.path.exists(os.path.join(root, ".metamori", "intent")):
        raise T.Failure("a refused restore left an intent (the next command would retry it)")
    to = os.path.join(s.base, "to")
    T.rmtree(to)
    p = dlib.no_crash(dlib.mtm(["-C", root, "restore", str(cid), "--to", to]), "restore --to")
    if p.returncode != 1:
        raise T.Failure("restore %d --to from a damaged store succeeded" % cid)
    T.rmtree(to)


def test_flipped_byte_in_pack_data():
    s = store()
    for where in ("data", "header", "check", "hash"):
        root = s.copy("flip-" + where)
        cid, pack, off, clen, plen = s.chunks(root)[2]
        at = {"data": off + 40 + clen // 2, "header": off + 9, "check": off + 33, "hash": off + 20}[where]
        dlib.flip(os.path.join(root, ".metamori/packs/%08d.pack" % pack), at)
        verify_names(root, "pack %d offset %d" % (pack, off))
        restore_refuses(root, 1, "pack %d offset %d" % (pack, off))


def test_flipped_pack_magic():
    s = store()
    root = s.copy("magic")
    dlib.flip(os.path.join(root, ".metamori/packs/00000001.pack"), 3)
    verify_names(root, "packs/00000001.pack: bad pack header")


def test_truncated_pack():
    s = store()
    root = s.copy("trunc-pack")
    p = os.path.join(root, ".metamori/packs/00000001.pack")
    os.truncate(p, os.path.getsize(p) // 2)
    verify_names(root, "packs/00000001.pack: truncated")
    restore_refuses(root, 1)


def test_missing_pack():
    s = store()
    root = s.copy("missing-pack")
    os.unlink(os.path.join(root, ".metamori/packs/00000001.pack"))
    verify_names(root, "packs/00000001.pack: pack file is missing")
    restore_refuses(root, 1, "pack file is missing")


def test_extra_files():
    s = store()
    root = s.copy("extra")
    T.write_file(os.path.join(root, ".metamori/stray"), b"x")
    T.write_file(os.path.join(root, ".metamori/packs/notes.txt"), b"x")
    verify_names(root, "stray: unexpected file in the store", "packs/notes.txt: unexpected file in the store")
    # an extra file is no reason to refuse a restore: the data is all there
    to = os.path.join(s.base, "extra-to")
    T.rmtree(to)
    T.restore(root, 1, to=to)
    T.assert_same(s.manifests[1], dlib.tree(to), "restore with a stray file in the store")
    T.rmtree(to)


def test_truncated_index():
    s = store()
    for frac in (0, 1, 2, 3):
        root = s.copy("trunc-index-%d" % frac)
        p = os.path.join(root, ".metamori/index.db")
        size = os.path.getsize(p)
        os.truncate(p, [0, 100, size // 2, size - 4096][frac])
        before = dlib.tree(root)
        for args in (["verify", "--data"], ["log"], ["status"], ["restore", "1"], ["checkpoint"], ["diff", "1", "2"]):
            p2 = dlib.no_crash(dlib.mtm(["-C", root] + args), " ".join(args) + " on a truncated index")
            if args[0] == "verify" and p2.returncode != 1:
                raise T.Failure("verify passed a truncated index (%d)" % frac)
        T.assert_same(before, dlib.tree(root), "tree after commands on a truncated index")
        STATS["cases"] += 1


def test_index_header_damage():
    s = store()
    root = s.copy("index-header")
    dlib.flip(os.path.join(root, ".metamori/index.db"), 0, 0xff)  # "SQLite format 3"
    p = dlib.no_crash(dlib.mtm(["-C", root, "verify"]), "verify")
    if p.returncode != 1 or "index.db" not in p.stderr:
        raise T.Failure("verify on a broken index header: %r" % p.stderr)
    restore_refuses(root, 1)


def test_index_btree_page_damage():
    """A flipped page-type byte of every B-tree page in turn: integrity_check
    (or reading) must catch it, and a restore must refuse or be exact."""
    s = store()
    page = 4096
    size = os.path.getsize(os.path.join(s.pristine, ".metamori/index.db"))
    caught = 0
    for pg in range(1, size // page):
        root = s.copy("page")
        dlib.flip(os.path.join(root, ".metamori/index.db"), pg * page, 0x55)
        p = dlib.no_crash(dlib.mtm(["-C", root, "verify"]), "verify (page %d)" % pg)
        caught += p.returncode == 1
        judge_restore(root, "page %d" % pg)
    if caught == 0:
        raise T.Failure("no damaged B-tree page was detected")
    STATS["cases"] += 1
    print("  %d of %d damaged pages detected by verify" % (caught, size // page - 1))


def judge_restore(root, what):
    """On a store that may be damaged: a restore to each checkpoint either
    refuses (tree untouched) or produces the checkpoint: the same paths,
    kinds, file content and symlink targets. Modes and times are not
    compared: the callers damage the index, and a flipped mode or mtime is
    a value no check can see (docs/RELIABILITY.md)."""
    s = store()
    for cid in sorted(s.manifests):
        to = os.path.join(s.base, "judge-to")
        T.rmtree(to)
        p = dlib.no_crash(dlib.mtm(["-C", root, "restore", str(cid), "--to", to]), "%s: restore --to" % what)
        if p.returncode == 0:
            judge_same(s.manifests[cid], dlib.tree(to), "%s: restore %d --to" % (what, cid))
        T.rmtree(to)
    before = dlib.tree(root)
    p = dlib.no_crash(dlib.mtm(["-C", root, "restore", "1"]), "%s: restore 1" % what)
    if p.returncode == 0:
        judge_same(s.manifests[1], dlib.tree(root), "%s: restore 1 in place" % what)
    else:
        after = dlib.tree(root)
        if after != before and not os.path.exists(os.path.join(root, ".metamori", "intent")):
            T.assert_same(before, after, "%s: tree changed by a failed restore" % what)


def content_of(tree):
    """path -> kind, size, sha256 (files) or target (symlinks): what a restore
    must get right whatever metadata value a damaged index holds."""
    out = {}
    for k, v in tree.items():
        out[k] = (v[0], v[2], v[3]) if v[0] == "f" else v[:2] if v[0] == "l" else (v[0],)
    return out


def judge_same(expected, actual, what):
    T.assert_same(content_of(expected), content_of(actual), what)
    STATS["restores_compared"] += 1


def test_judge_restore_catches_a_wrong_restore():
    """The judge must fail a restore that succeeds with the wrong content:
    a metamori that damages the file after every successful restore."""
    s = store()
    root = s.copy("judge-self")
    wrapper = os.path.join(s.base, "lying-metamori")
    T.write_file(wrapper, ("#!/bin/sh\n\"%s\" \"$@\" || exit $?\n"
                           "for a; do last=$a; done\n"
                           "case \"$*\" in *restore*--to*) printf x >> \"$last/a.txt\";; "
                           "*restore*) printf x >> \"%s/a.txt\";; esac\n" % (T.METAMORI, root)).encode(), mode=0o755)
    honest = T.METAMORI
    T.METAMORI = wrapper
    try:
        judge_restore(root, "lying restore")
    except T.Failure as e:
        if "a.txt" not in str(e):
            raise T.Failure("the judge failed the lying restore for another reason: %s" % e)
        return
    finally:
        T.METAMORI = honest
    raise T.Failure("judge_restore passed a restore that wrote the wrong content")


def test_random_index_flips():
    s = store()
    rng = random.Random(9)
    path = os.path.join(s.pristine, ".metamori/index.db")
    size = os.path.getsize(path)
    for i in range(FLIPS):
        root = s.copy("rflip")
        off = rng.randrange(size)
        dlib.flip(os.path.join(root, ".metamori/index.db"), off, 1 << rng.randrange(8))
        what = "index.db byte %d flipped" % off
        p = dlib.no_crash(dlib.mtm(["-C", root, "verify", "--data"]), what + ": verify")
        STATS["index_flips"] += 1
        STATS["index_flips_detected"] += p.returncode == 1
        for args in (["log"], ["status"], ["diff", "1", "3"], ["du"]):
            dlib.no_crash(dlib.mtm(["-C", root] + args), what + ": " + args[0])
        judge_restore(root, what)
        dlib.no_crash(dlib.mtm(["-C", root, "checkpoint", "-q"]), what + ": checkpoint")


if __name__ == "__main__":
    try:
        T.main([test_judge_restore_catches_a_wrong_restore, test_flipped_byte_in_pack_data, test_flipped_pack_magic, test_truncated_pack, test_missing_pack,
                test_extra_files, test_truncated_index, test_index_header_damage, test_index_btree_page_damage,
                test_random_index_flips])
    finally:
        print("damage: %(cases)d damage cases; %(index_flips)d random index flips, %(index_flips_detected)d "
              "detected by verify (the rest hit bytes no check can see, e.g. free space or an mtime); "
              "%(restores_compared)d successful restores compared with their checkpoint" % STATS)
        if S:
            S.cleanup()
