#!/bin/sh
# demo.sh METAMORI — a short demonstration of Metamori (run by `make demo`).
#
# A small simulation (demo/simulate.py) runs in a temporary directory under
# `metamori run` (transparent tracking), and its job script asks for a
# checkpoint after each step. Then the tree is damaged (a result file
# deleted, the state file corrupted, permissions changed, junk created), one
# `metamori restore` brings it back, and the result is compared with SHA-256
# manifests taken at checkpoint time. Exits non-zero if any check fails.
# Runs in a few seconds and removes its temporary directory.

# manifest DIR: every directory, symlink and file (mode, mtime, SHA-256) under DIR,
# except the store and the ignored scratch/ directory.
manifest() {
	(cd "$1" && find . \( -name .metamori -o -name scratch \) -prune -o -print | LC_ALL=C sort |
		while IFS= read -r p; do
			[ "$p" = . ] && continue
			if [ -L "$p" ]; then
				printf 'link %s -> %s\n' "$p" "$(readlink "$p")"
			elif [ -d "$p" ]; then
				printf 'dir  %s %s\n' "$(stat -c '%a %y' "$p")" "$p"
			else
				printf 'file %s %s\n' "$(stat -c '%a %y' "$p")" "$(sha256sum "$p")"
			fi
		done)
}
# The job run under `metamori run` saves its manifests through this.
if [ "$1" = --manifest ] && [ $# -eq 2 ]; then
	manifest "$2"
	exit
fi

if [ $# -ne 1 ]; then
	echo "usage: sh demo/demo.sh path/to/metamori" >&2
	exit 2
fi
case "$1" in
/*) M=$1 ;;
*) M=$(pwd)/$1 ;;
esac
if [ ! -x "$M" ]; then
	echo "demo: $1: not an executable (run 'make' first)" >&2
	exit 2
fi
SIM=$(cd "$(dirname "$0")" && pwd)/simulate.py
DEMO=$(cd "$(dirname "$0")" && pwd)/demo.sh

W=$(mktemp -d "${TMPDIR:-/tmp}/metamori-demo.XXXXXX") || exit 1
trap 'rm -rf "$W"' EXIT
trap 'exit 130' INT TERM
T=$W/run            # the tracked tree
mkdir "$T" "$W/sums"
cd "$T" || exit 1
FAILED=0

section() { printf '\n=== %s ===\n' "$*"; }
note() { printf '    %s\n' "$*"; }

# show() prints a command as a user would type it, then runs it.
show() {
	line='$'
	for a in "$@"; do
		case "$a" in
		*' '*) line="$line \"$a\"" ;;
		*) line="$line $a" ;;
		esac
	done
	printf '%s\n' "$line"
}
# mtm ARGS: show and run metamori; a failure ends the demo.
mtm() {
	show metamori "$@"
	"$M" "$@"
	rc=$?
	if [ $rc -ne 0 ]; then
		echo "FAILED: metamori $* exited with status $rc"
		exit 1
	fi
}
# shell CMD: show and run a shell command line.
shell() {
	printf '$ %s\n' "$1"
	sh -c "$1" || { echo "FAILED: $1"; exit 1; }
}
simulate() {
	show simulate "$1"
	python3 "$SIM" "$1" || { echo "FAILED: the simulation failed"; exit 1; }
}

# check WHAT EXPECTED DIR: compares DIR with a manifest saved earlier.
check() {
	manifest "$3" >"$W/actual"
	if diff -u "$2" "$W/actual" >"$W/diff"; then
		echo "OK: $1 ($(wc -l <"$2") entries identical: content, mode and mtime)"
	else
		echo "FAILED: $1"
		sed 's/^/    /' "$W/diff"
		FAILED=1
	fi
}

echo "Metamori demo: $("$M" --version), working in $W"

section "1. A simulation runs four steps under metamori run; a checkpoint after each"
mtm init
shell "echo 'scratch/' > .metamoriignore"
note "(scratch/ holds a cache the job can rebuild: never record it)"
cat >"$W/job.sh" <<EOF
# the job: four steps of the simulation, a checkpoint after each
for step in 1 2 3 4; do
	python3 "$SIM" \$step || exit 1
	"$M" checkpoint -m "step \$step" || exit 1
	sh "$DEMO" --manifest "$T" >"$W/sums/\$step"
done
EOF
note "job.sh: for step in 1 2 3 4: simulate \$step; metamori checkpoint -m \"step \$step\""
echo
note "Every file call the job makes is seen by the interposer, so each checkpoint"
note "copies only the blocks written since the last one, without rescanning the tree:"
mtm run -q -- sh "$W/job.sh"
note "(after each checkpoint the job saved a SHA-256 manifest of the tree, outside it)"

section "2. The history"
mtm log
echo
note "From step 2 to step 3: a 64 KiB band of the 2 MiB state, the log, a new result"
note "file and the step counter (sizes are of the differing 4 KiB blocks):"
mtm diff 2 3

section "3. Step 5 runs, and things go wrong"
simulate 5
shell "rm out/step-002.csv"
shell "dd if=/dev/urandom of=state/grid.bin bs=4096 seek=100 count=8 conv=notrunc status=none"
shell "chmod 600 out/step-001.csv"
shell "mkdir junk && echo garbage > junk/core.1234 && echo oops > out/partial.csv"
echo
mtm status

section "4. Back to step 4, in place"
mtm restore 4
check "the tree is exactly as it was at checkpoint 4" "$W/sums/4" "$T"
if [ -f scratch/cache.tmp ]; then
	echo "OK: scratch/ (ignored) was left alone"
else
	echo "FAILED: scratch/ (ignored) was removed"
	FAILED=1
fi
mtm status

section "5. An older checkpoint into another directory; the tree is not touched"
mtm restore 2 --to "$W/step-2"
check "$W/step-2 is exactly checkpoint 2" "$W/sums/2" "$W/step-2"
check "the tree is still checkpoint 4" "$W/sums/4" "$T"

section "6. Checking the store"
mtm verify --data
shell "du -sh .metamori"
note "(the first checkpoint holds the tree compressed; each later one only its changed blocks)"

section "7. Complete state: memory and files in one checkpoint"
MP=$(dirname "$M")/tests/region/memprog
if [ ! -x "$MP" ]; then
	echo "FAILED: $MP: not built (run 'make' first)"
	exit 1
fi
note "memprog (tests/region/memprog.c) keeps a 4 MiB grid and its step in memory,"
note "registered with mtm_protect, and writes journal.txt, data.bin and state.txt;"
note "each of its checkpoints (every 5 steps) saves the files and the changed blocks"
note "of its memory together. It is killed with SIGKILL at step 23, then started"
note "again: mtm_recover puts files and memory back as at step 20 and it goes on."
mkdir "$W/app" "$W/ref"
printf '$ MEMPROG_DIE=23:f memprog app 40 5\n'
(MEMPROG_DIE=23:f exec "$MP" "$W/app" 40 5) 2>/dev/null
note "(killed: status $?; app/state.txt says step $(cat "$W/app/state.txt"), the memory is gone)"
printf '$ metamori -C app log | tail -2\n'
"$M" -C "$W/app" log | tail -2
printf '$ memprog app 40 5\n'
"$MP" "$W/app" 40 5 | sed 's/^/    /'
"$MP" "$W/ref" 40 5 >/dev/null
# contents DIR: SHA-256 of every file but the store (the two runs' mtimes differ)
contents() { (cd "$1" && find . -name .metamori -prune -o -type f -print | LC_ALL=C sort | xargs sha256sum); }
contents "$W/ref" >"$W/sums/ref"
contents "$W/app" >"$W/actual"
if diff -u "$W/sums/ref" "$W/actual" >"$W/diff"; then
	echo "OK: killed and restarted, it ends exactly as a run never killed: same files, same memory digest (result.txt)"
else
	echo "FAILED: the restarted run differs from the uninterrupted one"
	sed 's/^/    /' "$W/diff"
	FAILED=1
fi

# Only where DMTCP is installed (`make dmtcp` builds it into build/deps).
B=$(dirname "$M")
DP=$B/tests/dmtcp/dmtprog
if [ -x "$B/deps/bin/dmtcp_launch" ] && [ -f "$B/libmetamori-dmtcp.so" ] && [ -x "$DP" ]; then
	section "8. A program that knows nothing of checkpoints: DMTCP + Metamori"
	note "dmtprog (tests/dmtcp/dmtprog.c) keeps a 4 MiB grid in memory and writes three files."
	note "Under 'metamori run --dmtcp', one 'metamori checkpoint' pairs DMTCP's image of its"
	note "memory with a file checkpoint made at DMTCP's barrier. Killed at step 13, it is"
	note "restarted from the pair made at step 10: files and memory agree again."
	mkdir "$W/dm" "$W/dmref" "$W/dmctl"
	"$M" -C "$W/dm" init >/dev/null
	printf '$ metamori run --dmtcp -- dmtprog dm 30 &\n'
	DMTCP_QUIET=2 DMTPROG_CTL=$W/dmctl DMTPROG_PAUSE=10 DMTPROG_DIE=13 "$M" -C "$W/dm" run -q --dmtcp -- "$DP" "$W/dm" 30 \
		>/dev/null 2>&1 &
	RUN=$!
	i=0
	while [ ! -e "$W/dmctl/ready.10" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
	printf '$ metamori checkpoint    # at step 10\n'
	"$M" -C "$W/dm" checkpoint | sed 's/^/    /'
	touch "$W/dmctl/go.10"
	wait $RUN
	note "(killed: status $?; dm/state.txt says step $(cat "$W/dm/state.txt"))"
	printf '$ metamori restart\n'
	DMTCP_QUIET=2 "$M" -C "$W/dm" restart -q | sed 's/^/    /'
	"$DP" "$W/dmref" 30 >/dev/null
	contents "$W/dmref" >"$W/sums/dmref"
	contents "$W/dm" >"$W/actual"
	if diff -u "$W/sums/dmref" "$W/actual" >"$W/diff"; then
		echo "OK: restarted from the paired checkpoint, it ends exactly as a run never killed"
	else
		echo "FAILED: the restarted run differs from the uninterrupted one"
		sed 's/^/    /' "$W/diff"
		FAILED=1
	fi
fi

echo
if [ $FAILED -ne 0 ]; then
	echo "demo: FAILED"
	exit 1
fi
echo "demo: all checks passed"
