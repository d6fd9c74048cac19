/* cmd_log.c — metamori log [--json]: checkpoints as a tree. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"

const char usage_log[] =
	"usage: metamori log [--json]\n\n"
	"List checkpoints, oldest first, as a tree: a checkpoint made after\n"
	"restoring an earlier one starts a branch, drawn indented under its parent.\n"
	"'*' marks the head (what the tree was last recorded as or restored to).\n\n"
	"  --json    one JSON array, for scripts\n";

typedef struct {
	mtm_checkpoint_info *v;
	size_t n;
	mtm_id head;
	size_t *first_child, *next_sibling; /* indexes; n = none */
} tree;

static size_t index_of(const tree *t, mtm_id id)
{
	size_t lo = 0, hi = t->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (t->v[mid].id == id)
			return mid;
		if (t->v[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return t->n;
}

static void print_line(const tree *t, size_t i, int depth)
{
	const mtm_checkpoint_info *c = &t->v[i];
	char when[32], chg[32];
	printf("%c ", c->id == t->head ? '*' : ' ');
	for (int d = 0; d < depth; d++)
		printf("| ");
	printf("%-4lld %s  +%llu ~%llu -%llu  %9s", (long long)c->id, human_time(when, sizeof when, c->time_ns),
	       (unsigned long long)c->files_added, (unsigned long long)c->files_changed,
	       (unsigned long long)c->files_removed, human_size(chg, sizeof chg, c->bytes_changed));
	if (depth && c->parent && i && t->v[i - 1].id != c->parent)
		printf("  (from %lld)", (long long)c->parent);
	if (c->message && *c->message)
		printf("  %s", c->message);
	printf("\n");
}

/* Depth-first, iteratively (histories can be long): a chain continues at the
 * same depth; further children of a checkpoint are branches, one deeper. */
static void print_tree(const tree *t, size_t root)
{
	size_t *stack = malloc((t->n + 1) * sizeof *stack);
	int *depth = malloc((t->n + 1) * sizeof *depth);
	size_t sp = 0;
	stack[sp] = root;
	depth[sp++] = 0;
	while (sp) {
		size_t i = stack[--sp];
		int d = depth[sp];
		print_line(t, i, d);
		/* children in id order: the first continues this line, the rest branch */
		size_t kids[2] = {t->n, t->n}, k = t->first_child[i];
		size_t nk = 0;
		for (size_t c = k; c != t->n; c = t->next_sibling[c])
			nk++;
		size_t *list = malloc((nk ? nk : 1) * sizeof *list), m = 0;
		for (size_t c = k; c != t->n; c = t->next_sibling[c])
			list[m++] = c;
		(void)kids;
		/* push so that the continuing child (first) is printed after the branches */
		if (nk) {
			stack[sp] = list[0];
			depth[sp++] = d;
			for (size_t j = nk; j-- > 1;) {
				stack[sp] = list[j];
				depth[sp++] = d + 1;
			}
		}
		free(list);
	}
	free(stack);
	free(depth);
}

int cmd_log(int argc, char **argv)
{
	int json = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			json = 1;
		else
			return cli_error(argv[i], "unexpected argument (see 'metamori log --help')");
	}
	mtm_store *s;
	if (cli_open(&s))
		return 1;
	tree t = {0};
	int rc = mtm_log(s, &t.v, &t.n);
	if (!rc)
		rc = mtm_head(s, &t.head);
	if (rc) {
		rc = cli_fail(rc);
		mtm_close(s);
		return rc;
	}
	if (json) {
		printf("[");
		for (size_t i = 0; i < t.n; i++) {
			const mtm_checkpoint_info *c = &t.v[i];
			printf("%s\n  {\"id\": %lld, \"parent\": %lld, \"time_ns\": %lld, \"message\": ", i ? "," : "",
			       (long long)c->id, (long long)c->parent, (long long)c->time_ns);
			json_string(c->message);
			printf(", \"head\": %s, \"files_added\": %llu, \"files_changed\": %llu, \"files_removed\": %llu,"
			       " \"bytes_changed\": %llu, \"bytes_stored\": %llu, \"entries\": %llu, \"tree_bytes\": %llu}",
			       c->id == t.head ? "true" : "false", (unsigned long long)c->files_added,
			       (unsigned long long)c->files_changed, (unsigned long long)c->files_removed,
			       (unsigned long long)c->bytes_changed, (unsigned long long)c->bytes_stored,
			       (unsigned long long)c->entries, (unsigned long long)c->tree_bytes);
		}
		printf("%s]\n", t.n ? "\n" : "");
	} else if (!t.n) {
		printf("no checkpoints yet\n");
	} else {
		t.first_child = malloc(t.n * sizeof(size_t));
		t.next_sibling = malloc(t.n * sizeof(size_t));
		for (size_t i = 0; i < t.n; i++)
			t.first_child[i] = t.next_sibling[i] = t.n;
		/* link children in id order (walk backwards, prepend) */
		for (size_t i = t.n; i-- > 0;) {
			size_t p = t.v[i].parent ? index_of(&t, t.v[i].parent) : t.n;
			if (p != t.n) {
				t.next_sibling[i] = t.first_child[p];
				t.first_child[p] = i;
			}
		}
		for (size_t i = 0; i < t.n; i++)
			if (!t.v[i].parent || index_of(&t, t.v[i].parent) == t.n)
				print_tree(&t, i);
		free(t.first_child);
		free(t.next_sibling);
	}
	mtm_log_free(t.v, t.n);
	mtm_close(s);
	return 0;
}
