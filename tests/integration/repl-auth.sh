#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# Peer authentication and identity checks at the handshake.  Beta starts
# with a wrong secret: every connection is refused, the log names the reason
# (authentication), the nodes never connect.  Same for another resource
# name and a disk of another size.  Restarted with the right configuration,
# beta connects, syncs, and the disks end identical.

source "$SRCDIR/tests/functions.sh"
source "$SRCDIR/tests/repl-functions.sh"

repl_setup 64M
(umask 077 && echo "not the right secret" >"$TESTDIR/wrong-secret")

# refused WHAT REGEX: beta runs with a bad $CONF_beta; for 6 s the nodes
# must not connect, and both logs must name the reason (REGEX).
refused()
{
	local what=$1 regex=$2 n
	msg "== $what"
	repl_start beta
	sleep 6
	for n in alpha beta; do
		assert_eq "$(st $n connects)" 0 "$n's connects with $what"
		[ "$(st $n connection)" != connected ] || fail "$n connected with $what"
		repl_log_has "$n" "$regex" || fail "$n's log does not name the reason /$regex/ ($what)"
	done
	msg "alpha: $(grep -Eim1 -- "$regex" "$LOG_alpha")"
	msg "beta: $(grep -Eim1 -- "$regex" "$LOG_beta")"
	msg "$what: alpha logged $(wc -l <"$LOG_alpha") lines, beta $(wc -l <"$LOG_beta")"
	repl_stop beta
}

repl_start alpha

CONF=$TESTDIR/wrong-secret.conf REPL_SECRET=$TESTDIR/wrong-secret repl_conf
CONF_beta=$TESTDIR/wrong-secret.conf
refused "a wrong secret" "authentication"
assert_match "$(st alpha peer.last_error)" "authentication" "alpha's peer.last_error"

CONF=$TESTDIR/other-res.conf REPL_RES=r1 repl_conf
CONF_beta=$TESTDIR/other-res.conf
refused "another resource name" "resource"

make_disk "$TESTDIR/small.img" 48M
attach_loop "$TESTDIR/small.img"
DISK_beta=$LOOP_DEV CONF=$TESTDIR/small.conf repl_conf
CONF=$TESTDIR/small.conf repl_create_md beta
CONF_beta=$TESTDIR/small.conf
refused "a disk of another size" "size mismatch"

msg "== the right configuration"
unset CONF_beta
repl_start beta
repl_wait_connected 20
assert_ge "$(st alpha connects)" 1 "alpha's connects"
bm alpha primary --force
repl_wait_synced 60
repl_compare
msg "PASS"
