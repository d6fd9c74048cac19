#!/usr/bin/env python3
"""simulate.py STEP — a stand-in for a long-running job, used by demo.sh.

Run in the directory it works on. Each step updates a band of rows of a 2 MiB
grid in state/grid.bin in place (as a solver updating its state would), writes
a small result file out/step-NNN.csv, appends a line to log/run.log, records
the step number in state/step.txt and leaves a cache file in scratch/ (which
the demo tells Metamori to ignore).
"""
import array
import os
import random
import sys

N = 512          # the grid is N x N float64 values: 2 MiB
BAND = 16        # rows updated per step: 16 * 512 * 8 bytes = 64 KiB

step = int(sys.argv[1])
for d in ("state", "out", "log", "scratch"):
    os.makedirs(d, exist_ok=True)

grid = "state/grid.bin"
if not os.path.exists(grid):
    row = array.array("d", (x / N for x in range(N)))
    with open(grid, "wb") as f:
        for r in range(N):
            f.write(row.tobytes())

rng = random.Random(step)
first = (step * 97) % (N - BAND)
with open(grid, "r+b") as f:
    f.seek(first * N * 8)
    band = array.array("d")
    band.frombytes(f.read(BAND * N * 8))
    for i in range(len(band)):
        band[i] = 0.5 * band[i] + rng.random()
    f.seek(first * N * 8)
    f.write(band.tobytes())
mean = sum(band) / len(band)

with open("out/step-%03d.csv" % step, "w") as f:
    f.write("step,first_row,rows,mean\n%d,%d,%d,%.6f\n" % (step, first, BAND, mean))
with open("log/run.log", "a") as f:
    f.write("step %d: rows %d-%d updated, mean %.6f\n" % (step, first, first + BAND - 1, mean))
with open("state/step.txt", "w") as f:
    f.write("%d\n" % step)
with open("scratch/cache.tmp", "wb") as f:
    f.write(os.urandom(256 * 1024))
print("step %d: rows %d-%d of state/grid.bin updated, out/step-%03d.csv written" % (step, first, first + BAND - 1, step))
