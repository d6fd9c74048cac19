/*
 * test_regions.c — memory regions through the library (issue 18):
 *   test_regions DIR   (an empty directory)
 *
 * - only the changed 4 KiB blocks are stored: the store grows by at most
 *   1.5x the changed bytes per checkpoint (incompressible data, scattered
 *   blocks, packs and index), and an unchanged region adds nothing;
 * - mtm_recover(id) gives back each region exactly as it was at id, the
 *   newest with 0, a short last block and a grown or shrunk region too;
 * - a region unprotected is recorded as gone: recovering later leaves the
 *   memory alone; a length that differs is refused before anything changes;
 * - the hashes kept by the handle are not trusted across a failed or other
 *   handle's checkpoint (a second handle recovers and checkpoints right).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <sqlite3.h>
#include "metamori.h"

static int failures;
#define CHECK(cond, ...)                                                                 \
	do {                                                                                 \
		if (!(cond)) {                                                                   \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);              \
			fprintf(stderr, __VA_ARGS__);                                                \
			fprintf(stderr, " (last error: %s)\n", mtm_last_error());                    \
			failures++;                                                                  \
		}                                                                                \
	} while (0)
#define OK(call) CHECK((call) == 0, "%s", #call)

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}
static void fill_random(unsigned char *p, size_t n)
{
	for (size_t i = 0; i + 8 <= n; i += 8) {
		uint64_t v = next();
		memcpy(p + i, &v, 8);
	}
	for (size_t i = n - n % 8; i < n; i++)
		p[i] = (unsigned char)next();
}

/* Bytes the store keeps on disk: packs and index, once the WAL (reused,
 * never shrunk: its size is a high-water mark, not what a checkpoint
 * added) is folded into the index and emptied. */
static uint64_t store_bytes(const char *dir)
{
	char path[4096];
	uint64_t total = 0;
	struct stat sb;
	sqlite3 *db;
	snprintf(path, sizeof path, "%s/.metamori/index.db", dir);
	if (sqlite3_open(path, &db) != SQLITE_OK || sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL))
		fprintf(stderr, "wal checkpoint: %s\n", sqlite3_errmsg(db));
	sqlite3_close(db);
	const char *files[] = {"index.db", "index.db-wal"};
	for (int i = 0; i < 2; i++) {
		snprintf(path, sizeof path, "%s/.metamori/%s", dir, files[i]);
		if (!stat(path, &sb))
			total += (uint64_t)sb.st_size;
	}
	snprintf(path, sizeof path, "%s/.metamori/packs", dir);
	DIR *d = opendir(path);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		char p2[8192];
		snprintf(p2, sizeof p2, "%s/%s", path, de->d_name);
		if (de->d_name[0] != '.' && !stat(p2, &sb))
			total += (uint64_t)sb.st_size;
	}
	if (d)
		closedir(d);
	return total;
}

static mtm_id checkpoint(mtm_store *s, mtm_checkpoint_info *info)
{
	mtm_checkpoint_info tmp;
	if (!info)
		info = &tmp;
	int rc = mtm_checkpoint(s, NULL, info);
	CHECK(rc == 0, "checkpoint: %s", mtm_strerror(rc));
	mtm_free(info->message);
	info->message = NULL;
	return info->id;
}

#define BIG (16u << 20)

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: test_regions DIR\n");
		return 2;
	}
	const char *dir = argv[1];
	mtm_store *s;
	if (mtm_init(&s, dir)) {
		fprintf(stderr, "init: %s\n", mtm_last_error());
		return 2;
	}
	unsigned char *big = malloc(BIG), *copy1 = malloc(BIG), *copy2 = malloc(BIG);
	unsigned char small[10000], small1[10000];
	fill_random(big, BIG);
	fill_random(small, sizeof small);
	memcpy(copy1, big, BIG);
	memcpy(small1, small, sizeof small);
	OK(mtm_protect(s, "big", big, BIG));
	OK(mtm_protect(s, "small", small, sizeof small)); /* a short last block */

	/* 1: everything is new */
	mtm_checkpoint_info ci;
	mtm_id c1 = checkpoint(s, &ci);
	CHECK(ci.regions == 2 && ci.region_bytes == BIG + sizeof small, "regions %llu bytes %llu",
	      (unsigned long long)ci.regions, (unsigned long long)ci.region_bytes);
	CHECK(ci.region_bytes_changed == BIG + sizeof small, "changed %llu", (unsigned long long)ci.region_bytes_changed);

	/* 2: nothing changed: nothing stored */
	checkpoint(s, &ci);
	CHECK(ci.region_bytes_changed == 0 && ci.bytes_stored == 0, "unchanged: changed %llu stored %llu",
	      (unsigned long long)ci.region_bytes_changed, (unsigned long long)ci.bytes_stored);

	/* 3..7: scattered changes; growth per checkpoint <= 1.5x the changed bytes */
	for (int round = 0; round < 5; round++) {
		int nblk = 64 << round % 3; /* 64, 128, 256 blocks */
		for (int k = 0; k < nblk; k++) {
			size_t b = (size_t)(next() % (BIG / 4096));
			fill_random(big + b * 4096 + next() % 4000, 64); /* a few bytes of the block */
		}
		uint64_t before = store_bytes(dir);
		checkpoint(s, &ci);
		uint64_t grown = store_bytes(dir) - before;
		CHECK(ci.region_bytes_changed > 0 && ci.region_bytes_changed <= (uint64_t)nblk * 4096,
		      "round %d: changed %llu for %d blocks", round, (unsigned long long)ci.region_bytes_changed, nblk);
		CHECK(ci.bytes_stored <= ci.region_bytes_changed * 3 / 2, "round %d: stored %llu for %llu changed", round,
		      (unsigned long long)ci.bytes_stored, (unsigned long long)ci.region_bytes_changed);
		CHECK(grown <= ci.region_bytes_changed * 3 / 2, "round %d: store grew %llu for %llu changed", round,
		      (unsigned long long)grown, (unsigned long long)ci.region_bytes_changed);
		printf("round %d: %llu bytes changed, %llu stored, store grew %llu (%.2fx)\n", round,
		       (unsigned long long)ci.region_bytes_changed, (unsigned long long)ci.bytes_stored,
		       (unsigned long long)grown, (double)grown / (double)ci.region_bytes_changed);
	}
	memcpy(copy2, big, BIG);
	small[9999] ^= 1; /* the short last block alone */
	mtm_id c8 = checkpoint(s, &ci);
	CHECK(ci.region_bytes_changed == 10000 - 8192, "short block changed %llu", (unsigned long long)ci.region_bytes_changed);

	/* recover 1, then the newest, then 1 again: exact bytes each time */
	mtm_id got;
	fill_random(big, BIG);
	OK(mtm_recover(s, c1, &got));
	CHECK(got == c1 && !memcmp(big, copy1, BIG) && !memcmp(small, small1, sizeof small), "recover 1");
	OK(mtm_recover(s, 0, &got));
	CHECK(got == c8 && !memcmp(big, copy2, BIG) && small[9999] == (small1[9999] ^ 1), "recover newest (%lld)",
	      (long long)got);

	/* a checkpoint after recovering 1 branches from it and stores only what differs from 1 */
	OK(mtm_recover(s, c1, &got));
	big[5] ^= 0xff;
	mtm_id c9 = checkpoint(s, &ci);
	CHECK(ci.parent == c1 && ci.region_bytes_changed == 4096, "after recover: parent %lld changed %llu",
	      (long long)ci.parent, (unsigned long long)ci.region_bytes_changed);

	/* another handle (a restarted program) recovers c9 without the first one's hashes */
	mtm_store *s2;
	OK(mtm_open(&s2, dir));
	unsigned char *big2 = calloc(1, BIG), small2[10000] = {0};
	OK(mtm_protect(s2, "big", big2, BIG));
	OK(mtm_protect(s2, "small", small2, sizeof small2));
	OK(mtm_recover(s2, c9, &got));
	CHECK(got == c9 && !memcmp(big2, big, BIG) && !memcmp(small2, small1, sizeof small2), "second handle");
	/* its checkpoint after the first handle's next one: hashes from the index */
	big[100000] ^= 1;
	checkpoint(s, &ci);
	big2[200000] ^= 1;
	mtm_id c11 = checkpoint(s2, &ci);
	CHECK(ci.region_bytes_changed == 2 * 4096, "other handle's parent: changed %llu",
	      (unsigned long long)ci.region_bytes_changed);
	fill_random(big, BIG);
	OK(mtm_recover(s, c11, &got));
	CHECK(!memcmp(big, big2, BIG), "recover the other handle's checkpoint");
	mtm_close(s2);
	free(big2);

	/* a length that differs is refused, nothing changed */
	unsigned char shorter[5000];
	memset(shorter, 7, sizeof shorter);
	OK(mtm_protect(s, "small", shorter, sizeof shorter));
	memcpy(copy1, big, BIG);
	int rc = mtm_recover(s, c8, &got);
	CHECK(rc == MTM_EINVAL && !strcmp(mtm_last_error(),
	                                  "recover: region small: 10000 bytes at checkpoint 8, 5000 registered"),
	      "size mismatch: %d", rc);
	CHECK(!memcmp(big, copy1, BIG) && shorter[0] == 7, "nothing changed on a refused recover");

	/* a resized region is stored at its new size and recovered so */
	mtm_id c12 = checkpoint(s, &ci);
	shorter[0] = 0;
	OK(mtm_recover(s, c12, &got));
	CHECK(shorter[0] == 7 && shorter[4999] == 7, "resized region recovered");

	/* unprotected: later checkpoints do not hold it; recovering them leaves the memory alone */
	OK(mtm_unprotect(s, "small"));
	CHECK(mtm_unprotect(s, "small") == MTM_EINVAL, "unprotect twice");
	mtm_id c13 = checkpoint(s, &ci);
	CHECK(ci.regions == 1, "regions after unprotect %llu", (unsigned long long)ci.regions);
	OK(mtm_protect(s, "small", small, sizeof small));
	memset(small, 3, sizeof small);
	OK(mtm_recover(s, c13, &got));
	CHECK(small[0] == 3 && small[9999] == 3, "a region the checkpoint lacks is left alone");
	OK(mtm_recover(s, c8, &got));
	CHECK(!memcmp(small, small1, 9999), "but an older checkpoint still has it");

	CHECK(mtm_protect(s, "", small, 1) == MTM_EINVAL, "empty name");
	CHECK(mtm_protect(s, "x", NULL, 1) == MTM_EINVAL, "NULL memory");
	CHECK(mtm_recover(s, 999, &got) == MTM_ENOCKPT, "unknown checkpoint");
	mtm_close(s);
	free(big);
	free(copy1);
	free(copy2);
	if (failures)
		fprintf(stderr, "%d failure(s)\n", failures);
	return failures ? 1 : 0;
}
