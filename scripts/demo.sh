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

demo=${DEMO_DIR:-$(mktemp -d /tmp/ovl-demo.XXXXXX)}
mkdir -p "$demo"
cp -R examples/. "$demo/"
cd "$demo"
demo=$PWD

if [ -t 1 ]; then
	say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
	say() { printf '\n== %s\n' "$*"; }
fi

# The base tarball: static busybox, a link per applet, the directories a
# container needs (internal/busybox, the root ovl's tests use too). Made
# once per demo directory.
if [ ! -f base.tar.gz ]; then
	say "making base.tar.gz from the host's busybox-static"
	(cd "$top" && go run ./scripts/mkbase "$demo/base.tar.gz")
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

say "the same project through vagga's command line: ovl install-vagga-alias makes a vagga symlink"
mkdir -p "$demo/.bin"
"$ovl" install-vagga-alias --force "$demo/.bin" >/dev/null
PATH="$demo/.bin:$PATH"
vagga 2>&1 || true # bare vagga lists the commands (exit 127, as vagga)
vagga hello
vagga _run app ls /opt/app

say "the plain root an IDE can open"
ls -l .vagga/app
ls .vagga/app/opt/app
echo
echo "demo project: $demo (DEMO_DIR=$demo make demo reuses it; ovl clean --everything there removes the build)"
