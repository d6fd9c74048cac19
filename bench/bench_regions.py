#!/usr/bin/env python3
"""Memory-region checkpoints (issue 18), in one run:

  - Metamori: MIB of incompressible memory registered with mtm_protect; a
    first checkpoint, then rounds that rewrite PCT% of its 4 KiB blocks at
    random, each followed by mtm_checkpoint() (hash every block, store the
    changed ones, fsync, commit) -- bench/region_writer.c;
  - the floor: the same changed bytes written once with pwrite + fsync;
  - DMTCP: the full image of a process holding the same memory
    (`dmtcp_command --bcheckpoint`, image uncompressed, then fsynced), when
    DMTCP is installed (`make dmtcp` builds it into build/deps).

usage: bench_regions.py --metamori build/metamori [--mib 256] [--pct 1,10] [--rounds 3]
"""
import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)


def build_writer(work, build):
    exe = os.path.join(work, "region_writer")
    lib = os.path.join(build, "libmetamori.a")
    p = subprocess.run(["cc", "-O2", "-I", os.path.join(SRC, "include"), "-o", exe,
                        os.path.join(HERE, "region_writer.c"), lib, "-lsqlite3", "-lzstd", "-lxxhash", "-lpthread"],
                       stderr=subprocess.PIPE, text=True)
    if p.returncode:
        sys.exit("bench: cc region_writer.c: " + p.stderr.strip())
    return exe


def find_dmtcp(build):
    for d in (os.path.join(build, "deps", "bin"),) + tuple(os.environ.get("PATH", "").split(":")):
        if os.access(os.path.join(d, "dmtcp_launch"), os.X_OK):
            return d
    return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dmtcp_image(dbin, writer, mib, work):
    """Seconds for DMTCP's checkpoint of the process, the same plus fsync of the image, and its size."""
    ck = os.path.join(work, "dmtcp-ckpt")
    os.makedirs(ck, exist_ok=True)
    port = str(free_port())
    env = dict(os.environ, DMTCP_GZIP="0")
    p = subprocess.Popen([os.path.join(dbin, "dmtcp_launch"), "--new-coordinator", "-p", port, "--ckptdir", ck,
                          "--no-gzip", writer, "hold", str(mib)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        if p.stdout.readline().strip() != "ready":
            return None
        t0 = time.perf_counter()
        c = subprocess.run([os.path.join(dbin, "dmtcp_command"), "-p", port, "--bcheckpoint"],
                           capture_output=True, text=True)
        t1 = time.perf_counter()
        if c.returncode:
            print("bench: dmtcp_command failed: " + c.stderr.strip(), file=sys.stderr)
            return None
        images = [os.path.join(ck, f) for f in os.listdir(ck) if f.endswith(".dmtcp")]
        for f in images:
            fd = os.open(f, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
        t2 = time.perf_counter()
        size = sum(os.path.getsize(f) for f in images)
        return t1 - t0, t2 - t0, size
    finally:
        subprocess.run([os.path.join(dbin, "dmtcp_command"), "-p", port, "--quit"], capture_output=True)
        p.kill()
        p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--metamori", required=True)
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--pct", default="1,10")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    build = os.path.dirname(os.path.abspath(a.metamori))
    work = tempfile.mkdtemp(prefix="mtm-bench-regions-", dir=os.environ.get("BENCH_DIR"))
    try:
        writer = build_writer(work, build)
        print(f"memory regions: {a.mib} MiB of random bytes, {a.rounds} rounds per change rate")
        print(f"{'changed':>9} {'mtm ckpt':>10} {'floor':>9} {'ckpt/floor':>10} {'stored/changed':>14}")
        for pct in [float(x) for x in a.pct.split(",")]:
            tree = os.path.join(work, f"tree-{pct}")
            os.makedirs(tree)
            p = subprocess.run([writer, "metamori", tree, str(a.mib), str(pct), str(a.rounds)],
                               capture_output=True, text=True)
            if p.returncode:
                sys.exit("bench: region_writer: " + p.stderr.strip())
            for line in p.stdout.splitlines():
                f = line.split()
                if f[0] == "first":
                    print(f"{'all':>9} {float(f[4]):>8.0f}ms {'':>9} {'':>10} {int(f[6]) / int(f[2]):>14.2f}"
                          f"   (first checkpoint: {int(f[2]) >> 20} MiB)")
                    continue
                changed, ck, fl, stored = int(f[3]), float(f[5]), float(f[7]), int(f[9])
                print(f"{pct:>8g}% {ck:>8.1f}ms {fl:>7.1f}ms {ck / fl if fl else 0:>10.2f} {stored / changed:>14.3f}")
            shutil.rmtree(tree)
        dbin = find_dmtcp(build)
        if not dbin:
            print("DMTCP: not installed (make dmtcp): its full image not measured")
            return
        r = dmtcp_image(dbin, writer, a.mib, work)
        if not r:
            print("DMTCP: the checkpoint failed")
            return
        t, tsync, size = r
        print(f"DMTCP full image of the same process: {size / 2**20:.0f} MiB in {t * 1e3:.0f} ms"
              f" ({tsync * 1e3:.0f} ms with the image fsynced), uncompressed")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
