/* dmtcp_pair.h — the CLI's side of DMTCP pairing (issue 18): where DMTCP and
 * Metamori's plugin are, how `run --dmtcp` and `restart` start them, and how
 * `metamori checkpoint` asks a DMTCP session for a paired checkpoint. The
 * plugin's side is src/dmtcp/plugin.c. */
#ifndef MTM_CLI_DMTCP_H
#define MTM_CLI_DMTCP_H
#include "cli/cli.h"

/* ROOT/.metamori/session/dmtcp.port: written by the session's coordinator,
 * removed with the session's other files when it ends. */
#define DMTCP_PORT_FILE ".metamori/session/dmtcp.port"
/* ROOT/.metamori/dmtcp/ID/: the images paired with checkpoint ID (tag dmtcp-ID) */
#define DMTCP_IMAGES_DIR ".metamori/dmtcp"
#define DMTCP_TAG_PREFIX "dmtcp-"

/* argv for `metamori run --dmtcp -- argv`: dmtcp_launch with a new
 * coordinator on a free port and the plugin, the plugin's variables set in
 * our environment (the program inherits it). NULL after printing an error
 * (cmd is "run"). Free with dmtcp_argv_free. */
char **dmtcp_launch_argv(const char *root, char **argv);
/* argv for `metamori restart`: dmtcp_restart of the images of checkpoint id. */
char **dmtcp_restart_argv(const char *root, mtm_id id);
void dmtcp_argv_free(char **v);

/* `metamori checkpoint` in dir: -1 if no DMTCP session runs on its tree (the
 * caller checkpoints as usual); else asks DMTCP for a checkpoint (the plugin
 * makes the file checkpoint at its barrier) and returns 0 with *id, or 1
 * after printing why the pair failed. */
int dmtcp_checkpoint(const char *dir, const char *message, mtm_id *id, char *root_out, size_t root_len);
#endif
