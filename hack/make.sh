#!/bin/bash
# Build, test and package pydock, in Docker's hack/make.sh style: one bundle per argument.
#
#   hack/make.sh dev      what running pydock needs: its system packages, .venv, pip install -e .
#   hack/make.sh test     installs what the tests use, then the whole suite: the host tier, then the
#                         device-mapper tier in User-Mode Linux
#   hack/make.sh binary   (see hack/make/binary)   hack/make.sh deb   (see hack/make/deb)
#
# Both install only what is missing (a dpkg-query check, a stamp for the pip install), so a second
# run costs well under a second before the tests. No package postinst may start a service while we
# install: see apt_install.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
SRC=$PWD
VENV=${PYDOCK_VENV:-$SRC/.venv}
PY=$VENV/bin/python

# What running pydock needs: lxc (containers are launched with lxc-start), the tools the runtime runs
# (iptables, mkfs.ext4 from e2fsprogs, mount/losetup/nsenter from util-linux, ip, ps), busybox-static
# (the embedded busybox image), xz-utils and bzip2 (compressed imports), tini (`run --init`), and the venv and compiler that
# `pip install -e .` needs (python-prctl is built from source against libcap).
RUN_PACKAGES="lxc iptables e2fsprogs util-linux busybox-static xz-utils bzip2 iproute2 procps tini python3-venv python3-dev gcc libcap-dev"
# What only the tests use: the dm-thin test kernel (user-mode-linux, for hack/dmkernel.sh), dmsetup (an
# independent device-mapper implementation the tests cross-check ours against) and Debian's own python3
# libraries the .deb depends on (its install test runs pydock on them), libc6-dev (tests/security and
# tests/hack compile static probes; hack/dmkernel.sh builds its preload shim), and the image tests'
# independent producers and consumers: podman, buildah, skopeo, runc, and docker-registry with
# apache2-utils (htpasswd); the registry's service is never started (see apt_install), and strace (holds a syscall back to open a race window deterministically). The docker CLI
# that `pydock serve` is tested with: see ensure_docker_cli.
TEST_PACKAGES="user-mode-linux tmux dmsetup python3-click python3-tabulate python3-pyroute2 python3-prctl libc6-dev podman buildah skopeo runc docker-registry apache2-utils docker-compose strace"

# policy-rc.d (Debian's invoke-rc.d/deb-systemd-invoke ask it before starting a service): while we
# install, ours answers 101 ("action forbidden") to every postinst, so docker.io's dockerd, containerd
# or lxc-net's dnsmasq are installed but never started. A policy already there is put back afterwards.
POLICY_RC_D=${PYDOCK_POLICY_RC_D:-/usr/sbin/policy-rc.d}
POLICY_SAVED=$POLICY_RC_D.pydock-saved
POLICY_MARK="# written by pydock's hack/make.sh while it installs packages; removed when it is done"
LOCK=${PYDOCK_MAKE_LOCK:-/run/lock/pydock-make.lock}

# missing_packages PKG...: those of PKG not installed, one per line.
missing_packages() {
	local installed
	installed=$(dpkg-query -W -f='${Package} ${Status}\n' "$@" 2>/dev/null | awk '$NF == "installed" { print $1 }' || true)
	local p
	for p in "$@"; do
		grep -qxF "$p" <<<"$installed" || echo "$p"
	done
}

# restore_policy: remove our policy-rc.d and put back the one we moved aside, if any. Also run before
# installing, to repair what a run killed with SIGKILL left behind. A policy that is not ours is left alone.
restore_policy() {
	if { [ -e "$POLICY_RC_D" ] || [ -L "$POLICY_RC_D" ]; } && ! grep -qsF "$POLICY_MARK" "$POLICY_RC_D"; then
		if [ -e "$POLICY_SAVED" ]; then
			echo "hack/make.sh: both $POLICY_RC_D (not ours) and $POLICY_SAVED (from an interrupted run) exist;" \
				"keep the right one and delete the other" >&2
			return 1
		fi
		return 0
	fi
	rm -f "$POLICY_RC_D"
	if [ -e "$POLICY_SAVED" ] || [ -L "$POLICY_SAVED" ]; then
		mv -f "$POLICY_SAVED" "$POLICY_RC_D"
	fi
}

# apt_install PKG...: apt-get install with no recommends, without letting any package start a service.
# Runs in a subshell whose EXIT trap restores the policy on every way out (error, Ctrl-C, SIGTERM);
# a lock keeps two concurrent runs from juggling the policy file at once.
apt_install() {
	[ "$(id -u)" = 0 ] || { echo "hack/make.sh: run as root to install $*" >&2; exit 1; }
	echo "+ apt-get install $*"
	mkdir -p "$(dirname "$LOCK")"
	(
		flock 9
		restore_policy
		trap restore_policy EXIT
		trap 'exit 129' HUP
		trap 'exit 130' INT
		trap 'exit 143' TERM
		if [ -e "$POLICY_RC_D" ] || [ -L "$POLICY_RC_D" ]; then
			mv -f "$POLICY_RC_D" "$POLICY_SAVED"
		fi
		printf '#!/bin/sh\n%s\nexit 101\n' "$POLICY_MARK" > "$POLICY_RC_D.tmp"
		chmod 755 "$POLICY_RC_D.tmp"
		mv -f "$POLICY_RC_D.tmp" "$POLICY_RC_D"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "$@" >/dev/null
	) 9>"$LOCK"
}

# ensure_packages PKG...: install those that are missing.
ensure_packages() {
	local missing
	missing=$(missing_packages "$@")
	[ -z "$missing" ] || apt_install $missing
}

# pip_install dev|test: `pip install -e .` (for test: `.[test]`) into the venv, made first if missing.
# A stamp in the venv remembers the checkout and pyproject.toml it was done for, so an unchanged
# checkout skips pip (and its download of setuptools for the isolated build); a `test` install also
# does for `dev`.
pip_install() {
	local kind=$1 want extras=
	[ "$kind" = test ] && extras="[test]"
	if [ ! -x "$PY" ]; then
		echo "+ python3 -m venv $VENV"
		python3 -m venv "$VENV"
	fi
	want="$SRC $(sha256sum <"$SRC/pyproject.toml" | cut -d' ' -f1)"
	if [ -x "$VENV/bin/pydock" ]; then
		if [ "$(cat "$VENV/.pydock-pip-test" 2>/dev/null)" = "$want" ] \
			|| { [ "$kind" = dev ] && [ "$(cat "$VENV/.pydock-pip-dev" 2>/dev/null)" = "$want" ]; }; then
			return 0
		fi
	fi
	echo "+ pip install -e .$extras"
	rm -f "$VENV/.pydock-pip-dev" "$VENV/.pydock-pip-test"
	"$PY" -m pip install -q --disable-pip-version-check -e "$SRC$extras"
	link_sources
	write_launcher
	echo "$want" >"$VENV/.pydock-pip-$kind"
}

# link_sources: site-packages/pydock/<package> -> the checkout's folder, for each package-dir entry of
# pyproject.toml, in place of setuptools' editable import hook: that hook loads pathlib, urllib and re
# into every interpreter of the venv (~12 ms of each pydock command's start-up). The links are folders,
# so new modules in the checkout are seen at once, as with the hook.
link_sources() {
	"$PY" - "$SRC" <<'PYEOF'
import os, sys, sysconfig, tomllib
src = sys.argv[1]
site = sysconfig.get_paths()["purelib"]
with open(os.path.join(src, "pyproject.toml"), "rb") as f:
    package_dir = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
top = os.path.join(site, "pydock")
os.makedirs(top, exist_ok=True)
for package, folder in package_dir.items():
    link = os.path.join(site, *package.split("."))
    if os.path.islink(link) and os.readlink(link) == os.path.join(src, folder):
        continue
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(os.path.join(src, folder), link)
for name in os.listdir(site):  # the hook's .pth: emptied, so pip still finds (and can uninstall) it
    if name.startswith("__editable__.pydock-") and name.endswith(".pth"):
        open(os.path.join(site, name), "w").close()
PYEOF
}

# write_launcher: the venv's bin/pydock in place of pip's console-script wrapper, which imports `re` (~5 ms)
# before the client runs. It runs the interpreter with -S (site: ~2 ms) and puts site-packages on sys.path
# itself, which is all the client needs; a command run in the client's own process gets site's work done
# first (client.main's late_site). A venv path with a space cannot be a #! line: pip's wrapper is kept then.
write_launcher() {
	"$PY" - "$VENV/bin/pydock" <<'PYEOF'
import os, sys, sysconfig
target = sys.argv[1]
site = sysconfig.get_paths()["purelib"]
if " " in sys.executable or "\n" in site:
    sys.exit(0)
text = (f"#!{sys.executable} -S\n"
        "# pydock's entry point, written by hack/make.sh (no `re`, no site: see write_launcher there)\n"
        "import sys\n"
        f"sys.path.append({site!r})\n"
        "from pydock.cli.client import main\n"
        "sys.exit(main(late_site=True))\n")
with open(target + ".tmp", "w") as f:
    f.write(text)
os.chmod(target + ".tmp", 0o755)
os.replace(target + ".tmp", target)
PYEOF
}

# ensure_docker_cli: the docker CLI the `pydock serve` tests drive: the one on PATH, else the client
# binary alone, taken out of Debian's docker.io package into the venv. Installing docker.io itself would
# enable dockerd and containerd at boot on a systemd machine, a daemon the user never asked for.
ensure_docker_cli() {
	command -v docker >/dev/null && return 0
	[ -x "$VENV/bin/docker" ] && return 0
	echo "+ docker CLI from Debian's docker.io into $VENV/bin (the package itself is not installed)"
	local tmp
	tmp=$(mktemp -d)
	if ! (cd "$tmp" && apt-get download -qq docker.io >/dev/null 2>&1); then
		apt-get update -qq
		(cd "$tmp" && apt-get download -qq docker.io >/dev/null)
	fi
	dpkg-deb --fsys-tarfile "$tmp"/docker.io_*.deb | tar -x -C "$tmp" ./usr/bin/docker
	install -m 755 "$tmp/usr/bin/docker" "$VENV/bin/docker"
	rm -rf "$tmp"
}

bundle_dev() {
	ensure_packages $RUN_PACKAGES
	pip_install dev
}

# summarize_tier NAME LOG STATUS: the tier's failed and erroring tests and its pytest result line
summarize_tier() {
	local plain
	plain=$(sed 's/\x1b\[[0-9;]*m//g' "$2")  # without the colours pytest may add
	echo "$1 tier: exit $3"
	grep -E '^(FAILED|ERROR) ' <<<"$plain" || true
	grep -E '^=+ .*(passed|failed|error).* in [0-9.]+s' <<<"$plain" | tail -n 1 || true
}

bundle_test() {
	ensure_packages $RUN_PACKAGES $TEST_PACKAGES
	pip_install test
	ensure_docker_cli
	export PATH="$PATH:$VENV/bin"  # the docker CLI, when it had to be put there
	local status=0 dm_status=0 dm_log dm_pid host_log
	export PYDOCK_STRICT_SKIPS=1 PYDOCK_LEAKCHECK=1
	# the two tiers share nothing but the checkout (UML is its own kernel: its mounts, devices, links
	# and processes are not the host's), so the device-mapper tier runs beside the host tier, on the
	# other core, with a temporary directory of its own; its output follows the host tier's
	dm_log=$(mktemp /tmp/pydock-dm-tier.XXXXXX)
	host_log=$(mktemp /tmp/pydock-host-tier.XXXXXX)
	PYDOCK_REQUIRE_DM=1 hack/dmkernel.sh -m "${PYDOCK_UML_MEM:-4G}" -- "$PY" -m pytest -v -m dm -p no:cacheprovider \
		--basetemp="$dm_log.tmp" ${TESTFLAGS:-} tests >"$dm_log" 2>&1 &
	dm_pid=$!
	trap 'kill "$dm_pid" 2>/dev/null; wait "$dm_pid" 2>/dev/null; rm -rf "$dm_log" "$dm_log.tmp" "$host_log"; exit 130' INT TERM
	echo "=== host tier: pytest -m 'not dm' ==="
	"$PY" -m pytest -v -m "not dm" ${TESTFLAGS:-} tests 2>&1 | tee "$host_log" || status=$?
	wait "$dm_pid" || dm_status=$?
	trap - INT TERM
	echo "=== device-mapper tier: pytest -m dm, inside User-Mode Linux ==="
	cat "$dm_log"
	# a log is read from its end: repeat each tier's failures and result there, so a red run says why
	echo "=== summary ==="
	summarize_tier host "$host_log" "$status"
	summarize_tier device-mapper "$dm_log" "$dm_status"
	rm -rf "$dm_log" "$dm_log.tmp" "$host_log"
	return $((status ? status : dm_status))
}

# sourced (by tests/hack): define the functions only
[ "${BASH_SOURCE[0]}" = "$0" ] || return 0

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
