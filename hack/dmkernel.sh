#!/bin/bash
# Run a command inside User-Mode Linux: a real 6.1 kernel with device-mapper thin-pool,
# loop, overlay, veth and bridge, with the host's filesystem as its root (hostfs).
#
#   hack/dmkernel.sh [-m MEM] [-C DIR] -- CMD [ARGS...]
#
# The command runs as PID 1's child in the UML kernel, with the current directory and
# a filtered copy of the environment. Its output streams to our stdout; its exit status is
# written to a file on the host (UML's own exit status does not carry it) and becomes ours.
set -euo pipefail

mem=2G
cwd=$PWD
while [ $# -gt 0 ]; do
	case "$1" in
		-m) mem=$2; shift 2 ;;
		-C) cwd=$2; shift 2 ;;
		--) shift; break ;;
		*) break ;;
	esac
done
[ $# -gt 0 ] || { echo "usage: $0 [-m MEM] [-C DIR] -- CMD [ARGS...]" >&2; exit 2; }

uml=${PYDOCK_UML:-/usr/bin/linux.uml}
[ -x "$uml" ] || { echo "dmkernel: $uml not found (apt-get install user-mode-linux)" >&2; exit 125; }
kver=$(ls /usr/lib/uml/modules | sort -V | tail -n1)
moddir=/usr/lib/uml/modules/$kver/kernel

# not under /tmp: the UML side mounts a fresh tmpfs there
scratch=$(mktemp -d /var/tmp/pydock-uml.XXXXXX)
trap 'rm -rf "$scratch"' EXIT

q() { printf '%q ' "$@"; }

{
	echo '#!/bin/sh'
	echo 'export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
	echo 'mount -t proc proc /proc; mount -t sysfs sys /sys'
	echo 'mountpoint -q /dev || mount -t devtmpfs dev /dev'
	echo 'mkdir -p /dev/pts /dev/shm; mount -t devpts devpts /dev/pts; mount -t tmpfs shm /dev/shm'
	echo 'mount -t tmpfs run /run; mount -t tmpfs -o size=75% tmp /tmp; mount -t tmpfs varrun /var/run 2>/dev/null'
	echo 'mount -t cgroup2 cgroup2 /sys/fs/cgroup'
	echo 'echo "+cpu +memory +pids" > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null'
	# modules and everything they depend on (modules.dep order), so the kernel has dm-thin,
	# overlay, veth, bridge and the netfilter pieces iptables needs
	loaded=" "
	load() {
		local rel=kernel/$1 deps d
		case "$loaded" in *" $rel "*) return ;; esac
		deps=$(sed -n "s|^$rel: ||p" "$moddir/../modules.dep")
		for d in $deps; do load "${d#kernel/}"; done
		loaded="$loaded$rel "
		echo "busybox insmod $moddir/${rel#kernel/} 2>/dev/null"
	}
	for m in drivers/block/loop.ko drivers/md/dm-thin-pool.ko fs/overlayfs/overlay.ko \
		drivers/net/veth.ko net/bridge/bridge.ko net/bridge/br_netfilter.ko \
		net/ipv4/netfilter/iptable_filter.ko net/ipv4/netfilter/iptable_nat.ko \
		net/netfilter/xt_MASQUERADE.ko net/netfilter/xt_nat.ko net/netfilter/xt_conntrack.ko \
		net/netfilter/xt_addrtype.ko net/netfilter/xt_tcpudp.ko net/netfilter/xt_comment.ko \
		net/netfilter/xt_physdev.ko; do
		[ -f "$moddir/$m" ] && load "$m"
	done
	# this kernel has ip_tables but not every nf_tables chain type: use legacy iptables in here
	echo 'for t in iptables iptables-save iptables-restore; do [ -e /usr/sbin/$t-legacy ] && mount --bind /usr/sbin/$t-legacy /usr/sbin/$t; done'
	echo 'ip link set lo up'
	echo 'hostname pydock-uml'
	# the environment of the caller, minus what belongs to this terminal or this kernel
	env -0 | while IFS= read -r -d '' kv; do
		k=${kv%%=*}; v=${kv#*=}
		case "$k" in
			PATH|HOME|LANG|LC_*|TERM|CI|VIRTUAL_ENV|PYTHON*|PYTEST*|PYDOCK*) echo "export $k=$(q "$v")" ;;
		esac
	done
	echo 'export TMPDIR=/tmp DM_DISABLE_UDEV=1 PYDOCK_IN_UML=1'
	echo "cd $(q "$cwd") || exit 1"
	echo "$(q "$@") < /dev/null"
	echo "echo \$? > $(q "$scratch/status")"
	echo 'sync'
	echo 'halt -f'
} > "$scratch/init"
chmod +x "$scratch/init"

# con0 = our stdout; kernel messages quietened; stdin closed.
"$uml" mem="$mem" rootfstype=hostfs rootflags=/ rw quiet loglevel=1 \
	init="$scratch/init" con=null con0=null,fd:1 < /dev/null 2>&1 \
	| grep --line-buffered -vE '^(Checking|Failed to initialize ubd|mmapper_init|SELinux:|Halting|reboot: System halted|Core dump limits|Kernel virtual memory|Locating|Adding|Checking environment|  ?Detected|This processor|Calibrating)' \
	| tr -d '\r' || true

if [ -s "$scratch/status" ]; then
	exit "$(cat "$scratch/status")"
fi
echo "dmkernel: the UML kernel stopped before the command finished" >&2
exit 125
