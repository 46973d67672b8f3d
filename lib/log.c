/* SPDX-License-Identifier: BSD-2-Clause */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static enum log_target log_target = LOG_TO_STDERR;
static int log_level = LOG_INFO;
static char log_prefix[160];

static const char *const level_names[] = {
	[LOG_EMERG] = "emerg", [LOG_ALERT] = "alert", [LOG_CRIT] = "crit",
	[LOG_ERR] = "error", [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
	[LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

void
log_init(enum log_target target, int max_level)
{
	log_target = target;
	log_level = max_level;
	if (target == LOG_TO_SYSLOG)
		openlog("blkmirrord", LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

int
log_get_level(void)
{
	return log_level;
}

void
log_set_prefix(const char *resource, const char *role)
{
	int n = 0;

	log_prefix[0] = '\0';
	if (resource != NULL)
		n = snprintf(log_prefix, sizeof(log_prefix), "[%s] ", resource);
	if (role != NULL && n >= 0 && (size_t)n < sizeof(log_prefix))
		snprintf(log_prefix + n, sizeof(log_prefix) - (size_t)n, "(%s) ", role);
}

static void
log_vmsg(int level, int err, const char *fmt, va_list ap)
{
	char line[1024];
	int n;

	if (level > log_level)
		return;
	n = vsnprintf(line, sizeof(line), fmt, ap);
	if (err != 0 && n >= 0 && (size_t)n < sizeof(line))
		snprintf(line + n, sizeof(line) - (size_t)n, ": %s", strerror(-err));
	if (log_target == LOG_TO_SYSLOG) {
		syslog(level, "%s%s", log_prefix, line);
		return;
	}
	/* "<N>" lets journald pick the priority off stderr (SyslogLevelPrefix). */
	fprintf(stderr, "<%d>%s%s: %s\n", level, log_prefix,
	    level_names[level & 7], line);
}

void
log_msg(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, 0, fmt, ap);
	va_end(ap);
}

void
log_errno(int level, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, err, fmt, ap);
	va_end(ap);
}

void
die(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOG_CRIT, 0, fmt, ap);
	va_end(ap);
	exit(code);
}

void
die_errno(int code, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOG_CRIT, err, fmt, ap);
	va_end(ap);
	exit(code);
}
