#!/usr/bin/env python3
"""check_cli_needed.py — what loading the CLI costs every command.

Each `metamori` command starts by loading the shared libraries the
executable names (DT_NEEDED). libfuse3 is only for `metamori mount`, which
loads it when it starts (src/cli/mountfs.c): named there, it cost every
other command ~40 page faults and ~1.5 ms of CPU at its start (a `metamori
checkpoint` answered by a running session takes ~25 ms in all;
BENCHMARKS-ARCHIVE.md T41). Fails if the CLI names libfuse3 again.

Usage: check_cli_needed.py METAMORI
"""
import re
import subprocess
import sys


def needed(exe):
    out = subprocess.run(["readelf", "-dW", exe], check=True, capture_output=True, text=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def main():
    exe = sys.argv[1]
    libs = needed(exe)
    if not libs:
        print(f"FAIL {exe}: no NEEDED entries read (readelf output changed?)")
        return 1
    bad = [lib for lib in libs if lib.startswith("libfuse")]
    if bad:
        print(f"FAIL {exe} names {', '.join(bad)}: every command would load it; "
              "`metamori mount` loads it itself (dlopen)")
        return 1
    print(f"ok   {exe} names {', '.join(libs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
