#!/bin/bash
# Run a command inside User-Mode Linux: a real 6.1 kernel with device-mapper thin-pool,
# loop, overlay, veth and bridge, with the host's filesystem as its root (hostfs).
#
#   hack/dmkernel.sh [-m MEM] [-C DIR] -- CMD [ARGS...]
#
# The command runs as PID 1's child in the UML kernel, in the current directory (or DIR) and
# with a filtered copy of the environment. Its output streams to our stdout; its exit status is
# written to a file on the host (UML's own exit status does not carry it) and becomes ours.
#
# Inside, /tmp, /run and /dev/shm are fresh memory filesystems (TMPDIR=/tmp), so a test's files
# never touch the host's. A working directory under one of them is bound back to its host
# directory at the same path, so a checkout anywhere works; other host paths under them are not
# visible inside. dmkernel's own failures (no such directory, command not found, UML missing) say
# why in one line and exit 125, or 127 for a missing command, like `docker run`.
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
# the directory as given (made absolute) is where the command runs; its real path decides whether it
# lies under a filesystem the UML side mounts afresh
abs_cwd=$(cd "$cwd" 2>/dev/null && pwd) || { echo "dmkernel: cannot cd to $cwd: no such directory" >&2; exit 125; }
cwd=$abs_cwd
real_cwd=$(cd "$cwd" && pwd -P)
case "$real_cwd" in
	/tmp | /tmp/* | /run | /run/* | /dev/shm | /dev/shm/*) bind_cwd=1 ;;
	*) bind_cwd= ;;
esac

# UML keeps its control files under $HOME (it panics without one), as the shim below is kept
export HOME=${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}

uml=${PYDOCK_UML:-/usr/bin/linux.uml}
[ -x "$uml" ] || { echo "dmkernel: $uml not found (apt-get install user-mode-linux)" >&2; exit 125; }
kver=$(ls /usr/lib/uml/modules 2>/dev/null | sort -V | tail -n1)
[ -n "$kver" ] || { echo "dmkernel: no kernel modules in /usr/lib/uml/modules (apt-get install user-mode-linux)" >&2; exit 125; }
moddir=/usr/lib/uml/modules/$kver/kernel

# UML 6.1 saves only 832 bytes of a process's XSAVE state, which a host with AVX-512 or AMX refuses:
# uml-xstate.so (see its source) makes up the difference. Built once per version of its source.
shim_src=$(dirname "${BASH_SOURCE[0]}")/uml-xstate.c
shim_dir=${XDG_CACHE_HOME:-$HOME/.cache}/pydock  # the caller's own, never a shared /tmp
shim=$shim_dir/uml-xstate-$(sha256sum < "$shim_src" | cut -c1-16).so
if [ ! -e "$shim" ]; then
	mkdir -p "$shim_dir"
	gcc -shared -fPIC -O2 -o "$shim.$$" "$shim_src" -ldl \
		|| { rm -f "$shim.$$"; echo "dmkernel: cannot build $shim_src (apt-get install gcc libc6-dev)" >&2; exit 125; }
	mv -f "$shim.$$" "$shim"  # atomic: runs in parallel may build it at once
fi

# not under /tmp: the UML side mounts a fresh tmpfs there
scratch=$(mktemp -d /var/tmp/pydock-uml.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
mkdir "$scratch/cwd"  # where the UML side holds a hidden working directory while /tmp or /run is mounted over

q() { printf '%q ' "$@"; }

{
	echo '#!/bin/sh'
	echo 'export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
	# This script is PID 1: if it ever returned, the kernel would panic ("Attempted to kill init")
	# and the host would only see a crash. Every way out goes through stop: status file, halt.
	echo "status=$(q "$scratch/status")"
	echo 'stop() { sync; halt -f 2>/dev/null; busybox halt -f; echo "dmkernel: could not halt the UML kernel" >&2; }'
	echo 'fail() { echo "dmkernel: $2" >&2; echo "$1" > "$status"; stop; }'
	echo 'mount -t proc proc /proc; mount -t sysfs sys /sys'
	if [ -n "$bind_cwd" ]; then
		# a working directory under /tmp, /run or /dev/shm: hold on to it before those are mounted over
		echo "mount --bind $(q "$real_cwd") $(q "$scratch/cwd")"
	fi
	echo 'mountpoint -q /dev || mount -t devtmpfs dev /dev'
	echo 'mkdir -p /dev/pts /dev/shm; mount -t devpts devpts /dev/pts; mount -t tmpfs shm /dev/shm'
	echo 'mount -t tmpfs run /run; mount -t tmpfs -o size=75% tmp /tmp; [ -L /var/run ] || mount -t tmpfs varrun /var/run'
	if [ -n "$bind_cwd" ]; then
		echo "mkdir -p $(q "$real_cwd") && mount --bind $(q "$scratch/cwd") $(q "$real_cwd") \\"
		echo "	|| fail 125 $(q "cannot show $real_cwd inside User-Mode Linux (bind mount failed)")"
	fi
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
	echo "cd $(q "$cwd") 2>/dev/null || fail 125 $(q "cannot cd to $cwd inside User-Mode Linux")"
	echo "command -v $(q "$1") >/dev/null || fail 127 $(q "$1: command not found inside User-Mode Linux")"
	echo "$(q "$@") < /dev/null"
	echo 'echo $? > "$status"'
	echo 'stop'
} > "$scratch/init"
chmod +x "$scratch/init"

# con0 = our stdout; kernel messages quietened; stdin closed.
LD_PRELOAD=$shim${LD_PRELOAD:+:$LD_PRELOAD} "$uml" mem="$mem" rootfstype=hostfs rootflags=/ rw quiet loglevel=1 \
	init="$scratch/init" con=null con0=null,fd:1 < /dev/null 2>&1 \
	| grep --line-buffered -vE '^(Checking|Failed to initialize ubd|mmapper_init|SELinux:|Halting|reboot: System halted|Core dump limits|Kernel virtual memory|Locating|Adding|Checking environment|  ?Detected|This processor|Calibrating)' \
	| tr -d '\r' || true

if [ -s "$scratch/status" ]; then
	exit "$(cat "$scratch/status")"
fi
echo "dmkernel: the UML kernel stopped before the command finished" >&2
exit 125
