#!/bin/sh
# deps.sh installs what ovl's demo, tests and benchmarks need on a fresh
# Debian machine: Go modules, and the Debian packages named below. It is
# idempotent and fast when everything is already there.
set -eu

PKGS="fuse3 fuse-overlayfs unionfs-fuse busybox-static attr util-linux uidmap"
[ "${1:-}" = "bench" ] && PKGS="$PKGS fio docker-registry podman runc"
[ "${1:-}" = "integration" ] && PKGS="$PKGS podman runc skopeo"

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: missing Debian packages:$missing; install them as root (apt-get install$missing)" >&2
	else
		echo "deps: installing$missing" >&2
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq >/dev/null
		apt-get install -y -qq $missing >/dev/null
	fi
fi

# Ordinary users need /dev/fuse to mount FUSE in a user namespace; stock
# distributions make it 0666, some minimal images 0600.
if [ "$(id -u)" -eq 0 ] && [ -c /dev/fuse ]; then
	chmod 0666 /dev/fuse
fi

go mod download
