/* dmtcp_pair.c — the CLI's side of DMTCP pairing (see dmtcp_pair.h, src/dmtcp/plugin.c). */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "cli/dmtcp_pair.h"

#define PLUGIN_NAME "libmetamori-dmtcp.so"
#define ARG_PORT_FILE 5 /* the argv layout of dmtcp_argv_free */
#define ARG_IMAGES_DIR 7
#define ARG_REST 8
#define RESULT_WAIT_MS 30000 /* after dmtcp_command returned: how long the plugin may take to say */

/* The directory of the running executable (build dir, or an install's bin). */
static int exe_dir(char *buf, size_t len)
{
	ssize_t n = readlink("/proc/self/exe", buf, len - 1);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	char *slash = strrchr(buf, '/');
	if (!slash)
		return -1;
	*slash = 0;
	return 0;
}

/* A DMTCP program (dmtcp_launch, dmtcp_restart, dmtcp_command):
 * $METAMORI_DMTCP_BIN, else build/deps/bin beside a build's metamori (`make
 * dmtcp`), else PATH. */
static char *find_tool(const char *name)
{
	char dir[PATH_MAX], *p = NULL;
	const char *env = getenv("METAMORI_DMTCP_BIN");
	if (env && *env) {
		if (asprintf(&p, "%s/%s", env, name) >= 0 && !access(p, X_OK))
			return p;
		free(p);
		return NULL;
	}
	if (!exe_dir(dir, sizeof dir)) {
		if (asprintf(&p, "%s/deps/bin/%s", dir, name) >= 0 && !access(p, X_OK))
			return p;
		free(p);
	}
	const char *path = getenv("PATH");
	for (const char *s = path ? path : "/usr/bin:/bin"; *s;) {
		const char *e = strchr(s, ':');
		size_t n = e ? (size_t)(e - s) : strlen(s);
		if (n && asprintf(&p, "%.*s/%s", (int)n, s, name) >= 0) {
			if (!access(p, X_OK))
				return p;
			free(p);
		}
		s += n + (e ? 1 : 0);
	}
	return NULL;
}

/* The plugin: $METAMORI_DMTCP_PLUGIN, else beside the executable (build
 * dir) or in an install's lib/metamori. */
static char *find_plugin(void)
{
	const char *env = getenv("METAMORI_DMTCP_PLUGIN");
	if (env && *env)
		return access(env, R_OK) ? NULL : realpath(env, NULL);
	char dir[PATH_MAX], p[PATH_MAX + 64];
	if (exe_dir(dir, sizeof dir))
		return NULL;
	const char *cands[] = {"%s/" PLUGIN_NAME, "%s/../lib/metamori/" PLUGIN_NAME};
	for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++) {
		snprintf(p, sizeof p, cands[i], dir);
		if (!access(p, R_OK))
			return realpath(p, NULL);
	}
	return NULL;
}

static char *need_tool(const char *cmd, const char *name)
{
	char *p = find_tool(name);
	if (!p) {
		char why[256];
		snprintf(why, sizeof why, "%s not found (install DMTCP: 'make dmtcp' builds it; or set METAMORI_DMTCP_BIN)",
		         name);
		cli_error(cmd, why);
	}
	return p;
}

static char *path_in(const char *root, const char *rel)
{
	char *p;
	return asprintf(&p, "%s/%s", root, rel) < 0 ? NULL : p;
}

/* The options every DMTCP start of ours shares: a coordinator of its own on
 * a free port, which the session's directory names. */
static size_t common_args(char **v, size_t k, const char *root)
{
	v[k++] = "--new-coordinator";
	v[k++] = "--coord-port";
	v[k++] = "0";
	v[k++] = "--port-file";
	v[k++] = path_in(root, DMTCP_PORT_FILE);
	v[k++] = "--ckptdir";
	v[k++] = path_in(root, DMTCP_IMAGES_DIR);
	assert(k == ARG_REST && !strcmp(v[ARG_PORT_FILE - 1], "--port-file") && !strcmp(v[ARG_IMAGES_DIR - 1], "--ckptdir"));
	return k;
}

/* Layout (common_args): [0] the tool, [5] the port file, [7] the images'
 * directory (all ours), then for dmtcp_launch: "--no-gzip",
 * "--with-plugin", [10] the plugin (ours), the caller's argv; for
 * dmtcp_restart: the images (ours). */
void dmtcp_argv_free(char **v)
{
	if (!v)
		return;
	free(v[0]);
	free(v[ARG_PORT_FILE]);
	free(v[ARG_IMAGES_DIR]);
	if (v[ARG_REST] && !strcmp(v[ARG_REST], "--no-gzip"))
		free(v[ARG_REST + 2]);
	else
		for (size_t i = ARG_REST; v[i]; i++)
			free(v[i]);
	free(v);
}

char **dmtcp_launch_argv(const char *root, char **argv)
{
	char *launch = need_tool("run", "dmtcp_launch"), *plugin = find_plugin(), self[PATH_MAX];
	if (!launch)
		return NULL;
	if (!plugin) {
		free(launch);
		cli_error("run", PLUGIN_NAME " not found next to the metamori executable (set METAMORI_DMTCP_PLUGIN)");
		return NULL;
	}
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	char *images = path_in(root, DMTCP_IMAGES_DIR);
	if (n <= 0 || !images || (mkdir(images, 0700) && errno != EEXIST)) {
		cli_error("run", "--dmtcp: cannot prepare " DMTCP_IMAGES_DIR);
		free(images);
		free(launch);
		free(plugin);
		return NULL;
	}
	free(images);
	self[n] = 0;
	setenv("METAMORI_DMTCP_TREE", root, 1);
	setenv("METAMORI_DMTCP_CLI", self, 1);
	size_t argc = 0;
	while (argv[argc])
		argc++;
	char **v = calloc(argc + 16, sizeof *v);
	if (!v) {
		free(launch);
		free(plugin);
		return NULL;
	}
	size_t k = 0;
	v[k++] = launch;
	k = common_args(v, k, root);
	v[k++] = "--no-gzip"; /* the image is written at the barrier: gzip would lengthen it */
	v[k++] = "--with-plugin";
	v[k++] = plugin;
	for (size_t i = 0; i < argc; i++)
		v[k++] = argv[i];
	return v;
}

static int is_image(const struct dirent *d)
{
	size_t n = strlen(d->d_name);
	return n > 6 && !strcmp(d->d_name + n - 6, ".dmtcp");
}

static int is_subdir(const struct dirent *d)
{
	return d->d_name[0] != '.' && d->d_type == DT_DIR;
}

char **dmtcp_restart_argv(const char *root, mtm_id id)
{
	char *restart = need_tool("restart", "dmtcp_restart"), dir[PATH_MAX];
	if (!restart)
		return NULL;
	snprintf(dir, sizeof dir, "%s/%s/%lld", root, DMTCP_IMAGES_DIR, (long long)id);
	struct dirent **list;
	int n = scandir(dir, &list, is_image, alphasort);
	if (n == 0) {
		/* DMTCP's unique-ckpt plugin, when enabled, puts them one level down */
		free(list);
		n = scandir(dir, &list, is_subdir, alphasort);
		if (n == 1) {
			size_t len = strlen(dir);
			snprintf(dir + len, sizeof dir - len, "/%s", list[0]->d_name);
			free(list[0]);
			free(list);
			n = scandir(dir, &list, is_image, alphasort);
		} else if (n > 0) {
			for (int i = 0; i < n; i++)
				free(list[i]);
			free(list);
			n = 0;
			list = NULL;
		}
	}
	if (n <= 0) {
		char why[PATH_MAX + 64];
		snprintf(why, sizeof why, "checkpoint %lld: no DMTCP image in %s", (long long)id, dir);
		cli_error("restart", why);
		free(restart);
		if (n == 0)
			free(list);
		return NULL;
	}
	char **v = calloc((size_t)n + 16, sizeof *v);
	size_t k = 0;
	if (v) {
		v[k++] = restart;
		k = common_args(v, k, root);
		for (int i = 0; i < n; i++)
			v[k++] = path_in(dir, list[i]->d_name);
	}
	for (int i = 0; i < n; i++)
		free(list[i]);
	free(list);
	return v;
}

/* The tree dir belongs to: the nearest directory up from it with .metamori. */
static int find_root(const char *dir, char *root, size_t len)
{
	char p[PATH_MAX];
	if (!realpath(dir, p))
		return -1;
	for (;;) {
		char m[PATH_MAX + 16];
		struct stat st;
		snprintf(m, sizeof m, "%s/.metamori", p);
		if (!stat(m, &st) && S_ISDIR(st.st_mode)) {
			snprintf(root, len, "%s", p);
			return 0;
		}
		char *slash = strrchr(p, '/');
		if (!slash || slash == p)
			return -1;
		*slash = 0;
	}
}

/* A session lives while it holds its lock (docs/SESSION.md). */
static int session_alive(const char *root)
{
	char p[PATH_MAX + 64];
	snprintf(p, sizeof p, "%s/.metamori/session/lock", root);
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	int alive = flock(fd, LOCK_SH | LOCK_NB) && errno == EWOULDBLOCK;
	close(fd);
	return alive;
}

static int read_small(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = 0;
	return 0;
}

static int write_small(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	size_t n = strlen(text);
	int ok = write(fd, text, n) == (ssize_t)n;
	return close(fd) || !ok ? -1 : 0;
}

/* Runs argv with DMTCP's and the interposer's variables removed (a
 * dmtcp_command started from inside the computation must not join it);
 * returns its exit status, or -1. */
static int run_tool(char *const argv[])
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		unsetenv("LD_PRELOAD");
		int fd = open("/dev/null", O_WRONLY);
		if (fd >= 0)
			dup2(fd, 1); /* its own report; ours follows */
		execv(argv[0], argv);
		_exit(127);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int dmtcp_checkpoint(const char *dir, const char *message, mtm_id *id, char *root, size_t root_len)
{
	char portfile[PATH_MAX + 64], port[32], last[PATH_MAX + 64], msgfile[PATH_MAX + 64];
	if (getenv("METAMORI_DMTCP_BARRIER") || find_root(dir, root, root_len))
		return -1; /* the plugin's own request, or not a tree: as usual */
	snprintf(portfile, sizeof portfile, "%s/%s", root, DMTCP_PORT_FILE);
	if (read_small(portfile, port, sizeof port) || !session_alive(root))
		return -1;
	port[strcspn(port, "\n")] = 0;
	snprintf(last, sizeof last, "%s/%s/last", root, DMTCP_IMAGES_DIR);
	snprintf(msgfile, sizeof msgfile, "%s/%s/message", root, DMTCP_IMAGES_DIR);
	unlink(last);
	if (message && write_small(msgfile, message))
		return cli_error("checkpoint", "cannot hand the message to the DMTCP plugin");
	char *cmd = need_tool("checkpoint", "dmtcp_command");
	if (!cmd)
		return 1;
	char *argv[] = {cmd, "--coord-port", port, "--bcheckpoint", NULL};
	int rc = run_tool(argv);
	free(cmd);
	if (rc != 0) {
		char why[128];
		snprintf(why, sizeof why, "dmtcp_command --bcheckpoint failed (coordinator port %s)", port);
		return cli_error(root, why);
	}
	/* the plugin says how the pair went once the image is complete */
	char res[700];
	struct timespec ms = {0, 1000000};
	for (int waited = 0; read_small(last, res, sizeof res); waited++) {
		if (waited >= RESULT_WAIT_MS) {
			return cli_error(root, "DMTCP made a checkpoint but Metamori's plugin never said how its file "
			                       "checkpoint went (is the program running under 'metamori run --dmtcp'?)");
		}
		nanosleep(&ms, NULL);
	}
	res[strcspn(res, "\n")] = 0;
	if (!strncmp(res, "ok ", 3)) {
		*id = strtoll(res + 3, NULL, 10);
		return 0;
	}
	fprintf(stderr, "metamori: checkpoint: %s: the file checkpoint at DMTCP's barrier failed, so the pair did "
	                "(its image will not restart): %s\n",
	        root, !strncmp(res, "failed ", 7) ? res + 7 : res);
	return 1;
}
