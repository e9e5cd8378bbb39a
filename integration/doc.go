// Package integration holds ovl's tests with real third-party clients:
// podman with ovl as its mount_program, compared with podman on kernel
// overlay and on fuse-overlayfs in the same run.
//
// They are slow and need packages a plain `make test` does not install,
// so they run in `make test-integration` (which .ci/run also runs), with
// OVL_INTEGRATION=1; without it they skip, saying how to run them. Each
// test starts what it uses (podman with a configuration and storage of
// its own in a short directory of /tmp) and removes it when it ends, every
// podman command bounded in time.
package integration
