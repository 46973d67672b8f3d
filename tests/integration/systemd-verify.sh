#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
#
# systemd-analyze verify on systemd/blkmirrord@.service and .socket.
#
# The units are copied into a private directory with ExecStart= pointing at
# a stand-in executable (verify insists that the command exists), then
# verified as instances.  systemd-analyze exits 0 on many errors it merely
# logs ("Unknown key ..., ignoring"), so any line it prints about our units
# counts as a failure too.  To prove the check can fail, broken copies
# (bad Type=, unknown key, missing command, socket naming a missing service)
# must each be rejected.
#
# Usage: systemd-verify.sh [UNIT_DIR]   (default: $SRCDIR/systemd)
# Exit: 0 pass, 1 fail, 77 skip (systemd-analyze missing).

set -u
set -o pipefail

unit_dir=${1:-${SRCDIR:-$(dirname "$0")/../..}/systemd}
if ! command -v systemd-analyze >/dev/null 2>&1; then
	echo "systemd-verify: SKIP: systemd-analyze not installed" >&2
	exit 77
fi
for u in blkmirrord@.service blkmirrord@.socket; do
	[ -f "$unit_dir/$u" ] || { echo "systemd-verify: FAIL: $unit_dir/$u missing" >&2; exit 1; }
done

tmp=$(mktemp -d /tmp/blkmirror-sdverify.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT

# verify UNIT...: succeed only if systemd-analyze exits 0 and says nothing
# about units in $tmp.  Its output goes to $tmp/out.
verify()
{
	local args=() u rc

	for u in "$@"; do
		args+=("$tmp/$u")
	done
	timeout 60 systemd-analyze verify --man=no "${args[@]}" >"$tmp/out" 2>&1
	rc=$?
	if [ $rc -ne 0 ]; then
		return 1
	fi
	if grep -E "$tmp|blkmirrord@|bad@" "$tmp/out" >/dev/null; then
		return 1
	fi
	return 0
}

# install_units: fresh copies of the real units, ExecStart= made runnable.
install_units()
{
	rm -f "$tmp"/*.service "$tmp"/*.socket
	cp "$unit_dir/blkmirrord@.service" "$unit_dir/blkmirrord@.socket" "$tmp/"
	sed -i "s|^ExecStart=/usr/sbin/blkmirrord |ExecStart=$tmp/bin/blkmirrord |" \
	    "$tmp/blkmirrord@.service"
	grep -q "^ExecStart=$tmp/bin/blkmirrord " "$tmp/blkmirrord@.service" || {
		echo "systemd-verify: FAIL: ExecStart= is not /usr/sbin/blkmirrord ..." >&2
		exit 1
	}
}

mkdir "$tmp/bin"
printf '#!/bin/sh\nexit 0\n' >"$tmp/bin/blkmirrord"
chmod 755 "$tmp/bin/blkmirrord"

install_units
if ! verify blkmirrord@r0.service blkmirrord@r0.socket; then
	echo "systemd-verify: FAIL: the units do not verify:" >&2
	cat "$tmp/out" >&2
	exit 1
fi
echo "systemd-verify: blkmirrord@r0.service and blkmirrord@r0.socket verify cleanly"

# The units promise things the daemon relies on; check they are still there.
for want in '^Type=notify$' '^RuntimeDirectory=blkmirror$' '^RuntimeDirectoryPreserve=yes$' \
    '^Restart=on-failure$' '^LimitMEMLOCK=infinity$' '-c /etc/blkmirror/%i.conf$'; do
	grep -Eq -- "$want" "$unit_dir/blkmirrord@.service" || {
		echo "systemd-verify: FAIL: blkmirrord@.service lacks $want" >&2
		exit 1
	}
done
for bad in '^PrivateDevices=(yes|true|1)' '^DevicePolicy=' '^DeviceAllow=' '^ProtectClock=(yes|true|1)'; do
	if grep -Eq -- "$bad" "$unit_dir/blkmirrord@.service"; then
		echo "systemd-verify: FAIL: blkmirrord@.service has $bad (hides block devices)" >&2
		exit 1
	fi
done

# Each broken copy must be rejected: proof that verify() can fail.
# break_case NAME UNIT SED-EXPRESSION
failures=0
break_case()
{
	install_units
	sed -i "$3" "$tmp/$2"
	if cmp -s "$tmp/$2" "$unit_dir/$2"; then
		echo "systemd-verify: FAIL: $1: the sed did not change $2" >&2
		failures=$((failures + 1))
		return
	fi
	local inst=${2/@./@r0.}
	if verify "$inst"; then
		echo "systemd-verify: FAIL: $1: a broken $2 verified cleanly" >&2
		failures=$((failures + 1))
	else
		echo "systemd-verify: $1: rejected as it must be: $(head -n 1 "$tmp/out")"
	fi
}
break_case "bad Type=" blkmirrord@.service 's/^Type=notify$/Type=notifyy/'
break_case "unknown key" blkmirrord@.service 's/^Restart=on-failure$/Restart=on-failure\nRestartt=always/'
break_case "missing command" blkmirrord@.service "s|^ExecStart=$tmp/bin/|ExecStart=$tmp/nonexistent/|"
break_case "socket without service" blkmirrord@.socket 's/^Service=.*/Service=nothere@%i.service/'
break_case "bad ListenStream=" blkmirrord@.socket 's/^ListenStream=.*/ListenStream=not-a-port:x/'
if [ $failures -ne 0 ]; then
	exit 1
fi
echo "systemd-verify: PASS"
