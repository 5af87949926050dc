#!/bin/bash
# Build the embedded busybox image's rootfs tarball from the host's busybox-static.
#
#   hack/mkimage-busybox.sh > busybox.tar        or   hack/mkimage-busybox.sh busybox.tar
#   pydock import busybox.tar busybox            (pydock also builds it by itself on first `run busybox`)
#
# The bytes come from pydock.graph.busybox, the same builder `ImageStore.resolve("busybox")` uses,
# so this tarball and the embedded image are identical (same host busybox -> same image id).
# PYDOCK_BUSYBOX=/path/to/busybox overrides /bin/busybox (it must be statically linked).
set -euo pipefail

cd "$(dirname "$0")/.."
PY=${PYDOCK_PYTHON:-${PYDOCK_VENV:-$PWD/.venv}/bin/python}
[ -x "$PY" ] || PY=python3
exec "$PY" -m pydock.graph.busybox "$@"
