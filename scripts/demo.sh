#!/bin/sh
# demo.sh is what `make demo` runs: it builds ovl's example project
# (examples/) with ovl and runs its commands, printing the backend used.
# It works on a fresh Debian machine as root after scripts/deps.sh, and as
# an ordinary user where user namespaces are allowed.
#
# The project is copied to a scratch directory ($DEMO_DIR, default a new
# temporary one) so the tree stays clean; run it twice with the same
# DEMO_DIR to see a cached rebuild.
set -eu
cd "$(dirname "$0")/.."
top=$PWD
ovl=${OVL:-$top/bin/ovl}
[ -x "$ovl" ] || go build -o "$top/bin/ovl" ./cmd/ovl

busybox=$(command -v busybox || true)
case "$busybox" in
"") echo "demo: busybox not found: apt-get install busybox-static (scripts/deps.sh does)" >&2; exit 1 ;;
esac

demo=${DEMO_DIR:-$(mktemp -d /tmp/ovl-demo.XXXXXX)}
mkdir -p "$demo"
cp -R examples/. "$demo/"
cd "$demo"

if [ -t 1 ]; then
	say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
	say() { printf '\n== %s\n' "$*"; }
fi

# The base tarball: static busybox, a link per applet, the directories a
# container needs. Made once per demo directory.
if [ ! -f base.tar.gz ]; then
	say "making base.tar.gz from $busybox"
	rootfs=$(mktemp -d)
	mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/proc" "$rootfs/sys" "$rootfs/dev" \
		"$rootfs/tmp" "$rootfs/run" "$rootfs/root" "$rootfs/work" "$rootfs/opt" "$rootfs/var/cache"
	chmod 1777 "$rootfs/tmp"
	cp "$busybox" "$rootfs/bin/busybox"
	for a in sh ls cat echo mkdir rm touch cp mv ln chmod true false sleep test grep id env pwd; do
		ln -s busybox "$rootfs/bin/$a"
	done
	printf 'root:x:0:0:root:/root:/bin/sh\n' >"$rootfs/etc/passwd"
	printf 'root:x:0:\n' >"$rootfs/etc/group"
	echo "package cache" >"$rootfs/var/cache/index"
	tar -C "$rootfs" --owner=0 --group=0 --numeric-owner -czf base.tar.gz .
	rm -rf "$rootfs"
fi

say "ovl check: which backend this machine gives $(id -un)"
"$ovl" check || true

say "ovl build app (base first: app is built on it with !Container)"
"$ovl" build app

say "ovl build app again: every step cached"
"$ovl" build app

say "ovl exec hello"
"$ovl" exec hello

say "ovl exec snapshot, twice: the !Snapshot volume starts from the built contents each time"
"$ovl" exec snapshot
"$ovl" exec snapshot

say "ovl exec scratch: write-mode transient-hard-link-copy"
"$ovl" exec scratch
say "and the container still has /opt/app:"
"$ovl" exec hello

say "the plain root an IDE can open"
ls -l .vagga/app
ls .vagga/app/opt/app
echo
echo "demo project: $demo (DEMO_DIR=$demo make demo reuses it; ovl clean --everything there removes the build)"
