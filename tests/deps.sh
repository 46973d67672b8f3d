# SPDX-License-Identifier: BSD-2-Clause
# shellcheck shell=bash
#
# The Debian 12 packages blkmirror needs to build, test and demo, and a
# function that installs the missing ones.  Sourced by tests/run and
# utils/blkmirror-demo.

BLKMIRROR_PACKAGES=(
	# build
	meson ninja-build pkg-config gcc clang libclang-rt-14-dev
	liburing-dev libaio-dev libinih-dev libcunit1-dev libjson-c-dev
	libsystemd-dev libxxhash-dev libssl-dev
	# tests, demo, bench
	nbdkit qemu-utils libnbd-bin fio nftables fuse3 e2fsprogs util-linux
	iproute2 python3 systemd
)

# deps_missing: print the packages of BLKMIRROR_PACKAGES not installed.
deps_missing()
{
	local p
	for p in "${BLKMIRROR_PACKAGES[@]}"; do
		if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != \
		    "install ok installed" ]; then
			echo "$p"
		fi
	done
}

# deps_install: install what is missing (apt-get, needs root); returns
# non-zero on failure.  Does nothing when everything is there.
deps_install()
{
	local missing
	if ! command -v dpkg-query >/dev/null; then
		echo "deps: not a Debian system; install the equivalents of:" \
		    "${BLKMIRROR_PACKAGES[*]}" >&2
		return 0
	fi
	missing=$(deps_missing)
	if [ -z "$missing" ]; then
		echo "deps: all ${#BLKMIRROR_PACKAGES[@]} packages present"
		return 0
	fi
	echo "deps: installing:" $missing
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: missing packages and not root; run with sudo" >&2
		return 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q || return 1
	# shellcheck disable=SC2086
	apt-get install -y -q --no-install-recommends $missing || return 1
	missing=$(deps_missing)
	if [ -n "$missing" ]; then
		echo "deps: still missing after apt-get:" $missing >&2
		return 1
	fi
}
