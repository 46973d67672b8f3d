/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * One logger for blkmirror (after HAST's pjdlog): syslog levels plus a debug
 * level, a "[resource] (role)" prefix on every line, an errno variant, and
 * die() with sysexits(3) codes.  Lines go to stderr (foreground, systemd's
 * journal picks them up) or to syslog (daemonized).
 */
#ifndef BLKMIRROR_LOG_H
#define BLKMIRROR_LOG_H

#include <stdarg.h>
#include <syslog.h>
#include <sysexits.h>

enum log_target {
	LOG_TO_STDERR,		/* foreground or under systemd */
	LOG_TO_SYSLOG,		/* daemonized */
};

/* Where lines go and the most verbose level printed (LOG_DEBUG for -v). */
void log_init(enum log_target target, int max_level);
/* Set the "[resource] (role)" prefix; either may be NULL. */
void log_set_prefix(const char *resource, const char *role);
int log_get_level(void);

void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* As log_msg, with ": strerror(-err)" appended; err is a negative errno. */
void log_errno(int level, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Log at LOG_CRIT and exit with the sysexits code. */
void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
void die_errno(int code, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4), noreturn));

#define log_err(...)     log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...)    log_msg(LOG_WARNING, __VA_ARGS__)
#define log_notice(...)  log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_info(...)    log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) \
	do { if (log_get_level() >= LOG_DEBUG) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
