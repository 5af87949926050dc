#!/bin/bash
# Build, test and package pydock, in Docker's hack/make.sh style: one bundle per argument.
#
#   hack/make.sh dev      install the system packages pydock needs, create .venv, pip install -e .[test]
#   hack/make.sh test     the whole suite: the host tier, then the device-mapper tier in User-Mode Linux
#   hack/make.sh binary   (see hack/make/binary)   hack/make.sh deb   (see hack/make/deb)
set -euo pipefail

cd "$(dirname "$0")/.."
SRC=$PWD
VENV=${PYDOCK_VENV:-$SRC/.venv}
PY=$VENV/bin/python

# Debian packages: runtime (lxc iptables e2fsprogs util-linux busybox-static xz-utils bzip2),
# the dm-thin test kernel (user-mode-linux), python-prctl's build (libcap-dev), and dmsetup,
# an independent device-mapper implementation the tests cross-check ours against, and Debian's
# own python3 libraries the .deb depends on (its install test runs pydock on them).
DEB_PACKAGES="lxc iptables e2fsprogs util-linux busybox-static user-mode-linux libcap-dev xz-utils bzip2 dmsetup iproute2 procps python3-venv python3-dev gcc python3-click python3-tabulate python3-pyroute2 python3-prctl"

bundle_dev() {
	local missing=()
	for p in $DEB_PACKAGES; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		echo "+ apt-get install ${missing[*]}"
		[ "$(id -u)" = 0 ] || { echo "hack/make.sh dev: run as root to install ${missing[*]}" >&2; exit 1; }
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	fi
	# `pydock serve` is tested with the real docker CLI; Debian's docker.io brings one (its daemon
	# is not started).
	if ! command -v docker >/dev/null; then
		echo "+ apt-get install docker.io (for the docker CLI)"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null
	fi
	if [ ! -x "$PY" ]; then
		echo "+ python3 -m venv $VENV"
		python3 -m venv "$VENV"
	fi
	echo "+ pip install -e .[test]"
	"$PY" -m pip install -q --disable-pip-version-check -e "$SRC[test]"
}

bundle_test() {
	[ -x "$PY" ] || bundle_dev
	local status=0
	echo "=== host tier: pytest -m 'not dm' ==="
	export PYDOCK_STRICT_SKIPS=1 PYDOCK_LEAKCHECK=1
	"$PY" -m pytest -v -m "not dm" ${TESTFLAGS:-} tests || status=$?
	echo "=== device-mapper tier: pytest -m dm, inside User-Mode Linux ==="
	PYDOCK_REQUIRE_DM=1 hack/dmkernel.sh -m "${PYDOCK_UML_MEM:-4G}" -- "$PY" -m pytest -v -m dm -p no:cacheprovider ${TESTFLAGS:-} tests || status=$((status ? status : $?))
	return $status
}

if [ $# -eq 0 ]; then
	echo "usage: $0 BUNDLE... (dev test binary deb)" >&2
	exit 2
fi
for b in "$@"; do
	if [ -x "hack/make/$b" ]; then
		"hack/make/$b"
	elif declare -F "bundle_$b" >/dev/null; then
		"bundle_$b"
	else
		echo "hack/make.sh: unknown bundle $b" >&2
		exit 2
	fi
done
