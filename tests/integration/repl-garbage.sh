#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# Hostile input on the replication ports.  While the nodes mirror a write
# workload, connections from inside the other node's namespace send random
# bytes, a frame header announcing an oversize body (valid check), and a
# header with a bad check, to both ports (data and meta) of both nodes.
# The daemons stay up and answer status, the existing link stays (or comes
# back), the workload completes, and the disks end identical.

source "$SRCDIR/tests/functions.sh"
source "$SRCDIR/tests/repl-functions.sh"
requires fio

repl_up 64M

repl_fio_bg alpha --rw=randwrite --bs=4k --offset=8M --size=16M --iodepth=4 \
    --time_based --runtime=15 --rate_iops=200 --randseed=8
for target in beta alpha; do
	from=$(_repl_other "$target")
	ns=NS_$from
	ip=IP_$target
	for port in "$REPL_DATA_PORT" $((REPL_DATA_PORT + 1)); do
		for kind in random oversize badcheck; do
			out=$(timeout 20 ip netns exec "${!ns}" python3 \
			    "$SRCDIR/tests/integration/repl_tool.py" garbage "${!ip}" \
			    "$port" "$kind" 2>&1) ||
			    fail "sending $kind to $target:$port failed: $out"
			msg "$out"
			for n in alpha beta; do
				pid=PID_$n
				pid_alive "${!pid}" || fail "$n died after $kind on $target:$port"
			done
			st "$target" role >/dev/null
		done
	done
done
# The garbage connections were dropped and said why.
for n in alpha beta; do
	repl_log_has "$n" "bad frame header|malformed|handshake|oversize" ||
	    fail "$n's log has no line about the bad input"
done
repl_fio_wait
repl_wait_synced 60
assert_eq "$(st alpha role)/$(st beta role)" "primary/secondary" "roles after the garbage"
msg "connects: alpha $(st alpha connects), beta $(st beta connects)"
repl_compare
msg "PASS"
