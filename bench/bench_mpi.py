#!/usr/bin/env python3
"""bench_mpi.py: the cost of the coordinated checkpoint (issue 19).

Compiles bench/bench_mpi.c with mpicc against the build's libmetamori_mpi
and runs it under mpirun for each rank count: two trees (two simulated
nodes), each rank rewriting 64 KiB per iteration. Compares, per iteration
on rank 0:
  one   MPI_Barrier + one store's mtm_checkpoint (rank 0's) + MPI_Barrier
  each  MPI_Barrier + each tree's store checkpointed by its first rank (two
        single-store checkpoints at once, no commit) + MPI_Barrier
  mpi   mtm_mpi_checkpoint (both stores checkpointed, two phases, tags)
Prints a table (median and p90, ms). A benchmark, not a test: nothing is
asserted. Usage: bench_mpi.py --build build [--ranks 4,8] [--iters 30]
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--ranks", default="4,8")
    ap.add_argument("--iters", type=int, default=30)
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    work = tempfile.mkdtemp(prefix="mtm-bench-mpi-")
    exe = os.path.join(work, "bench_mpi")
    subprocess.run(["mpicc", "-O2", "-o", exe, os.path.join(HERE, "bench_mpi.c"), "-I", os.path.join(HERE, "..", "include"),
                    "-L", build, "-Wl,-rpath," + build, "-lmetamori_mpi", "-lmetamori"], check=True)
    rows = []
    for n in [int(x) for x in a.ranks.split(",")]:
        trees = [os.path.join(work, "A%d" % n), os.path.join(work, "B%d" % n)]
        for t in trees:
            os.mkdir(t)
            subprocess.run([os.path.join(build, "metamori"), "init"], cwd=t, check=True, capture_output=True)
        p = subprocess.run(["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(n), exe] + trees +
                           [str(a.iters)], capture_output=True, text=True,
                           env=dict(os.environ, OMPI_MCA_btl="self,vader"))
        if p.returncode:
            sys.exit("bench_mpi failed: " + p.stderr[-2000:])
        for line in p.stdout.split("\n"):
            f = line.split()
            if len(f) == 4:
                rows.append((f[0], int(f[1]), float(f[2]), float(f[3])))
    print("| ranks | barrier + 1 store's checkpoint | barrier + each node's store | mtm_mpi_checkpoint, 2 stores "
          "| mpi / 1 store | mpi / each |")
    print("|---|---|---|---|---|---|")
    for n in sorted({r[1] for r in rows}):
        one, each, mpi = [[r for r in rows if r[1] == n and r[0] == m][0] for m in ("one", "each", "mpi")]
        print("| %d | %.2f / %.2f ms | %.2f / %.2f ms | %.2f / %.2f ms | %.2fx | %.2fx |"
              % (n, one[2], one[3], each[2], each[3], mpi[2], mpi[3], mpi[2] / one[2], mpi[2] / each[2]))
    print("(median / p90 of %d iterations on rank 0)" % a.iters)
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
