package userns

import (
	"bufio"
	"bytes"
	"os"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// capSet is this process's capabilities, read once: ovl never changes
// its own (it starts new processes for that).
type capSet struct {
	effective uint64
	bounding  uint64
	ok        bool // capget answered
}

var caps = sync.OnceValue(func() capSet {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return capSet{}
	}
	s := capSet{ok: true, effective: uint64(data[0].Effective) | uint64(data[1].Effective)<<32}
	for c := 0; c < 64; c++ {
		if n, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0); err == nil && n == 1 {
			s.bounding |= 1 << c
		}
	}
	return s
})

// HasCap reports whether this process holds capability c (unix.CAP_*)
// in its effective set, that is over its own user namespace.
func HasCap(c int) bool { return caps().effective&(1<<uint(c)) != 0 }

// InBounding reports whether capability c is in this process's bounding
// set: whether a set-user-ID-root program it runs (fusermount3) can gain
// it. A container's bounding set is its capability list.
func InBounding(c int) bool { return caps().bounding&(1<<uint(c)) != 0 }

// CanMount reports whether this process may mount (kernel overlay, FUSE,
// tmpfs, proc) in a mount namespace of its own without making a new user
// namespace: CAP_SYS_ADMIN in its effective set. Root in a default Docker
// or podman container lacks it: for mounting it is an ordinary user, and
// ovl mounts inside a user namespace for it as for any other user.
func CanMount() bool { return HasCap(unix.CAP_SYS_ADMIN) }

// Confinement says what, besides the capabilities, may refuse this
// process a mount or a namespace: a seccomp filter, no_new_privs (which
// voids a set-user-ID helper such as fusermount3), and the container
// manager it runs under, if any ("podman", "docker", "container").
type Confinement struct {
	Seccomp    bool   `json:"seccomp"`
	NoNewPrivs bool   `json:"no_new_privs"`
	Container  string `json:"container,omitempty"`
}

// Confined returns this process's Confinement, read once.
func Confined() Confinement { return confined() }

var confined = sync.OnceValue(func() Confinement {
	var c Confinement
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), ":")
			v = strings.TrimSpace(v)
			switch k {
			case "Seccomp":
				c.Seccomp = v != "" && v != "0"
			case "NoNewPrivs":
				c.NoNewPrivs = v == "1"
			}
		}
	}
	c.Container = containerManager()
	return c
})

// containerManager names the container manager this process runs under,
// from the marker files podman and docker leave in a container's root
// and the "container" variable systemd's convention asks them to set
// (it is in pid 1's environment; ovl's own may be cleaned).
func containerManager() string {
	if _, err := os.Stat("/run/.containerenv"); err == nil {
		return "podman"
	}
	if _, err := os.Stat("/.dockerenv"); err == nil {
		return "docker"
	}
	if v := os.Getenv("container"); v != "" {
		return v
	}
	return ""
}
