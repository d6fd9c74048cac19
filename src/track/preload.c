/* preload.c — placeholder until the interposer lands; see protocol.h. */
