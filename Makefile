# Metamori — top-level entry points. Two commands set everything up on a fresh
# Debian machine: `make demo` and `make test`. Everything builds into build/
# (normal) and build-asan/ (AddressSanitizer + UndefinedBehaviorSanitizer).
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)

# git, tar and sqlite3 are real programs the tracking tests run under
# `metamori run`; liburing-dev lets the interposer's io_uring test run;
# libfuse3-dev and fuse3 (fusermount3) are for `metamori mount`; libaio-dev for
# the session's io_submit test (tests/session/gaps.c); attr, acl and
# libcap2-bin (setfattr, setfacl, setcap) make the files with attributes,
# ACLs and capabilities the fidelity test restores; Open MPI builds
# libmetamori_mpi and runs its tests (tests/mpi); e2fsprogs (chattr) and
# mount (mount, umount: a small tmpfs) are for the restore-safety and
# full-disk tests: Debian marks neither essential, and a minimal image (a
# container's) lacks them.
DEB_PACKAGES = build-essential cmake pkg-config libsqlite3-dev sqlite3 libzstd-dev \
               libxxhash-dev libcmocka-dev python3 rsync git tar liburing-dev \
               libfuse3-dev fuse3 libaio-dev attr acl libcap2-bin libopenmpi-dev openmpi-bin \
               time ninja-build e2fsprogs mount
# The peers `make bench` measures against (bench/, docs/BENCHMARKS.md);
# PostgreSQL for `make bench-pg`.
BENCH_PACKAGES = rsync borgbackup restic fio postgresql postgresql-contrib git

.PHONY: all deps build asan test demo bench bench-prune bench-regions bench-many bench-pg bench-million dmtcp clean torture install uninstall

# `make install [PREFIX=/usr/local] [DESTDIR=staging]`: the command, both
# libraries, the header, metamori.pc, the man page, bash completion, the
# interposer (PREFIX/lib/metamori) and the docs.
PREFIX  ?= /usr/local
DESTDIR ?=

all: build

# Installs the Debian build dependencies when any is missing (needs root; CI runs as root).
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "metamori: deps: run as root or install:$$missing" >&2; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# A new build directory is generated for Ninja when it is installed (deps
# installs ninja-build): the same compiles as CMake's Makefiles for about a
# third less CPU (66 s against 91 s a tree; docs/BENCHMARKS-ARCHIVE.md, T56).
# An existing one keeps the generator it was made with.
generator = $(if $(wildcard $(1)/CMakeCache.txt),,$(if $(shell command -v ninja 2>/dev/null),-G Ninja))

build: deps
	cmake -S . -B $(BUILD) $(call generator,$(BUILD)) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

asan: deps
	cmake -S . -B $(ASAN_BUILD) $(call generator,$(ASAN_BUILD)) -DCMAKE_BUILD_TYPE=Debug -DMETAMORI_SANITIZE=ON >/dev/null
	cmake --build $(ASAN_BUILD) -j $(JOBS)

# Under 10 minutes on 2 cores. The normal build runs every suite, the matrices
# sampled (every eighth kill point and each command's first and last two,
# every fault operation and error at each step: docs/RELIABILITY.md); the sanitizer build runs
# every suite but the repetitive long ones labelled asan-torture, which
# `make torture` runs there (tests/CMakeLists.txt, add_long_test), and samples
# the kill-point, power-cut and fault matrices more sparsely. The two trees
# build at once: each configure runs on one core (about 9 s of CPU, MPI's
# and Python's probes), and each build ends in links on one; the other
# tree's compiles fill the idle core.
test:
	@$(MAKE) --no-print-directory deps
	@$(MAKE) --no-print-directory -j 2 build asan
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS) -LE asan-torture

demo: build
	@sh demo/demo.sh $(BUILD)/metamori

bench: build
	@$(MAKE) --no-print-directory deps DEB_PACKAGES="$(BENCH_PACKAGES)"
	python3 bench/bench_scan.py --metamori $(BUILD)/metamori
	python3 bench/bench_track.py --metamori $(BUILD)/metamori

# Retention cost (issue 5): 200 checkpoints of W1 (16 x 8 MiB), prune to the last 20.
bench-prune: build
	python3 bench/bench_prune.py --metamori $(BUILD)/metamori

# Memory regions (issue 18): checkpoint time vs the floor and vs DMTCP's full
# image of the same memory (DMTCP measured when installed: `make dmtcp`).
bench-regions: build
	python3 bench/bench_regions.py --metamori $(BUILD)/metamori

# Many files (issue 21, W2): 20,000 x 16 KiB, 200 touched, 10 deleted,
# 5 renamed, 10 new per interval; scan checkpoint vs git and vs a stat walk
# plus reading the changed files.
bench-many: build
	python3 bench/bench_many.py --metamori $(BUILD)/metamori

# PostgreSQL under `metamori run --every 5` vs alone (issue 21): pgbench
# throughput, the pause per checkpoint, every checkpoint restored and checked.
# Run as root it runs postgres as the unprivileged user postgres.
bench-pg: build
	@$(MAKE) --no-print-directory deps DEB_PACKAGES="$(BENCH_PACKAGES)"
	python3 bench/bench_pg.py --metamori $(BUILD)/metamori

# Size independence (issue 21, item 4): 1,000,000 files of 4 KiB against
# 20,000 (tracked checkpoint of 1,000 touched files, session memory, status
# vs git status). Needs ~8 GB of disk and takes long: FILES=200000 for less.
FILES ?= 1000000
bench-million: build
	python3 bench/bench_million.py --metamori $(BUILD)/metamori --files $(FILES)

# DMTCP 5.0, the memory checkpointer Metamori pairs with, is not in Debian:
# built from its unchanged upstream source (../shared/vendor, README there)
# into $(BUILD)/deps, outside `make test`'s time; then the tests that need it
# run (they exit 77, skipped, whenever it is not installed).
DMTCP_TARBALL ?= $(abspath $(firstword $(wildcard ../shared/vendor/dmtcp-*.tar.gz ../../shared/vendor/dmtcp-*.tar.gz)))
DMTCP_PREFIX = $(abspath $(BUILD))/deps
dmtcp: build
	@if [ ! -x $(DMTCP_PREFIX)/bin/dmtcp_launch ]; then \
	  [ -n "$(DMTCP_TARBALL)" ] || { echo "metamori: dmtcp: no dmtcp-*.tar.gz in ../shared/vendor (set DMTCP_TARBALL)" >&2; exit 1; }; \
	  rm -rf $(DMTCP_PREFIX)/src && mkdir -p $(DMTCP_PREFIX)/src && tar xzf $(DMTCP_TARBALL) -C $(DMTCP_PREFIX)/src && \
	  cd $(DMTCP_PREFIX)/src/dmtcp-* && ./configure --prefix=$(DMTCP_PREFIX) >/dev/null && \
	  $(MAKE) -j$(JOBS) >/dev/null && $(MAKE) install >/dev/null; \
	fi
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD) -j $(JOBS)
	cd $(BUILD) && ctest --output-on-failure -L dmtcp

# The full reliability matrix (issue 4, docs/RELIABILITY.md): every kill point of
# a big scenario, 1,000+ power cuts, the whole fault matrix, 400 index flips,
# 1,000 random model histories. `make test` runs bounded versions of each.
# Then the sanitizer build's long suites, and its other suites again with
# every command leak-checked (MTM_LEAKS=all: make test reads results back
# without LeakSanitizer, tests/lib/mtmtest.py, readback_env).
TORTURE_TESTS = tests/e2e/test_model.py tests/reliability/test_crash.py tests/reliability/test_crash_tracked.py tests/reliability/powerloss.py \
                tests/reliability/test_faults.py tests/damage/test_damage.py tests/damage/test_hostile.py \
                tests/reliability/test_concurrency.py tests/reliability/test_permissions.py \
                tests/prune/test_prune.py tests/prune/test_prune_crash.py \
                tests/reliability/test_restore_kill.py tests/reliability/test_init_crash.py tests/mpi/test_mpi.py
torture: build asan
	@set -e; for t in $(TORTURE_TESTS); do echo "== $$t"; \
	  METAMORI_TORTURE=1 METAMORI=$(abspath $(BUILD))/metamori PYTHONPATH=tests/lib PYTHONDONTWRITEBYTECODE=1 \
	  python3 $$t; done
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS) -L asan-torture
	cd $(ASAN_BUILD) && MTM_LEAKS=all ctest --output-on-failure -j $(JOBS) -LE asan-torture

install: build
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD) --prefix "$(PREFIX)"

# Removes what `make install` with the same PREFIX and DESTDIR installed.
uninstall:
	@test -f $(BUILD)/install_manifest.txt || { echo "metamori: uninstall: no $(BUILD)/install_manifest.txt (run make install first)" >&2; exit 1; }
	@while read -r f; do rm -f "$$f"; done < $(BUILD)/install_manifest.txt

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
