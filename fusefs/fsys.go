package fusefs

import (
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/layer"
)

// Options tune how Serve runs a stack.
type Options struct {
	// NoPassthrough turns FUSE passthrough off even where the daemon may
	// use it (comparisons, debugging).
	NoPassthrough bool
	// StrictOpen copies a lower file up when it is opened for writing,
	// as the kernel's overlay does, instead of at its first change (a
	// write, truncate, chmod, ...). It costs an OPEN and a RELEASE round
	// trip for every open of every file, which is most of the time of
	// reading a tree (5-6x here), and buys FUSE passthrough where the
	// daemon may use it. Without it the kernel is told once that the
	// filesystem needs no opens, and an open for writing that changes
	// nothing leaves the layers as they were: no copy in the upper, and
	// the link counts of the file (a lower hard link) and of its parent
	// directories (a lower directory becomes a merged one, nlink 1) stay
	// as before until the first change. Read-only stacks never see
	// opens: there it makes no difference. StrictOpen also syncs a
	// copied-up file before linking it into place, as the kernel does,
	// where the default links it first and syncs it a moment later (see
	// the package documentation, "Copy-up and the disk").
	StrictOpen bool
	// Debug logs every FUSE request to stderr.
	Debug bool
	// Ready, if set, is called once the mount is live.
	Ready func()

	// alone is set in the daemon Mount starts, which never opens a
	// file in its own mount: go-fuse's guard against the Go runtime
	// polling such a file (a LOOKUP, OPEN, POLL, FLUSH and RELEASE
	// before the mount is reported live) is skipped there.
	alone bool
	// checked is set in that daemon too: Mount validated the spec
	// (layer.Spec.Validate, checkFeatures) before handing it over.
	checked bool
}

// Descriptors. The union keeps one descriptor per layer open for the
// life of the mount, a lookup holds one per layer it walks, and it
// caches more: directories of each layer (every layer a merged directory
// spans) and files' data. The caches are
// bounded by what RLIMIT_NOFILE leaves (raised to its hard limit at the
// start): past their bound, directories are reopened by path and files
// opened per request. A stack whose layers alone would not leave room to
// work is refused at mount, naming the limit.
const (
	// maxCachedDirFds and maxCachedDataFds bound the caches however high
	// the limit.
	maxCachedDirFds  = 4096
	maxCachedDataFds = 4096
	// reservedFds is kept free for everything else: /dev/fuse, the Go
	// runtime, descriptors opened for one request (a few each).
	reservedFds = 128
	// minCachedFds is the least room for the caches a mount needs.
	minCachedFds = 64
)

// fdBudget raises the soft RLIMIT_NOFILE to the hard one and returns how
// many descriptors the caches may keep for a stack of layers layers (and
// a work dir), or an error saying why the stack cannot be served.
func fdBudget(layers int) (int64, error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("read RLIMIT_NOFILE: %w", err)
	}
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = lim.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &raised); err == nil {
			lim = raised
		}
	}
	// The layers' roots, a lookup's copies of a directory in every layer
	// (layer.Lookup holds them all at once), the work dir, the rest.
	fixed := uint64(2*layers + 1 + reservedFds)
	if need := fixed + minCachedFds; lim.Cur < need {
		return 0, fmt.Errorf("fuse: %d layers need at least %d open files, and RLIMIT_NOFILE allows %d (hard limit %d): %w; raise the limit (ulimit -Hn, LimitNOFILE= for a service) or squash layers",
			layers, need, lim.Cur, lim.Max, unix.EMFILE)
	}
	return int64(lim.Cur - fixed), nil
}

// keepDirFd reports whether one more directory descriptor may be cached,
// and counts it if so (dirFds.Add(-1) when it is closed).
func (u *unionFS) keepDirFd() bool {
	if u.dirFds.Add(1) > u.maxDirFds {
		u.dirFds.Add(-1)
		return false
	}
	return true
}

// keepDataFd is keepDirFd for files' data descriptors (dataFds).
func (u *unionFS) keepDataFd() bool {
	if u.dataFds.Add(1) > u.maxDataFds {
		u.dataFds.Add(-1)
		return false
	}
	return true
}

// layerRoot is one layer directory of the stack.
type layerRoot struct {
	path   string
	fd     int          // O_RDONLY|O_DIRECTORY, open for the life of the mount
	format layer.Format // what the layer records (layer.ReadFormat); the upper's is the kernel's
	// idmapped: the layer is on an idmapped mount, whose owners are
	// shown as they are (idmap.go: markIDMappedLayers).
	idmapped bool
}

// unionFS is one mounted stack. Its fields are immutable after
// newUnionFS, except where a comment says otherwise.
type unionFS struct {
	spec     layer.Spec
	layers   []layerRoot // upper first (when the stack has one), then lowers top-first
	hasUpper bool        // layers[0] is the upper directory (maybe read-only)
	writable bool        // changes are allowed (hasUpper and not ReadOnly)
	workFd   int         // the work directory's scratch dir, or -1
	ns       layer.Namespace
	// wr writes whiteouts and opaque directories into the upper: 0/0
	// devices, or xattr whiteouts where the upper cannot keep those
	// (layer.ProbeWhiteouts, on the work dir at mount).
	wr       layer.Writer
	volatile bool

	// passthrough is set when the kernel and the daemon's privilege allow
	// FUSE passthrough; decided once at mount.
	passthrough bool
	// noOpen answers OPEN with ENOSYS (no Options.StrictOpen).
	noOpen bool
	// syncer syncs copied-up files after their link; nil where a copy is
	// synced before it (Options.StrictOpen) or never (volatile).
	syncer *copySyncer

	devMu sync.Mutex
	devs  map[uint64]uint64 // st_dev -> small index; protected by devMu

	// origins maps the (dev, ino) of an upper non-directory copied up
	// during this mount to the identity it had before copy-up, for as
	// long as the file has a name (forgetOrigin): a number the upper's
	// filesystem gives again to a new file must not name the old one.
	origins sync.Map // devIno -> fileIdentity

	// known maps the identity of each live non-directory node to it, to
	// tell a copied-up file from a hard link of its origin that stayed
	// in the lower layer.
	known sync.Map // fs.StableAttr -> *node

	// origin encodes overlay.origin for copy-ups (see origin.go).
	origin *originEncoder

	// renumbered maps the (dev, ino) of the upper copy of a lower hard
	// link to the node it was copied up from, which open descriptors
	// still use while the name is looked up again as a new node (see
	// copyUpLocked).
	renumbered sync.Map // devIno -> *node

	dirFds     atomic.Int64 // directory descriptors cached by nodes
	dataFds    atomic.Int64 // data descriptors cached by nodes
	maxDirFds  int64        // bounds of dirFds and dataFds (fdBudget)
	maxDataFds int64
	tmpSeq     atomic.Uint64 // names for scratch files in the work dir
	renamMu    sync.Mutex    // serialises renames against each other
	log        *slog.Logger
}

type devIno struct{ dev, ino uint64 }

// fileIdentity is what names a non-directory to the kernel: its inode
// number and the generation that tells apart one inode seen in two
// layers.
type fileIdentity struct{ ino, gen uint64 }

// fileID returns the identity of the non-directory st found as name in
// directory parent, in layer li: its origin's, when it was copied up
// during this mount. Hard links inside a lower layer are separate files
// of the union (each is copied up on its own, as without the kernel's
// index feature), so their generation also names the link.
func (u *unionFS) fileID(st *unix.Stat_t, li int, parent uint64, name string) (uint64, uint64) {
	if v, ok := u.origins.Load(devIno{st.Dev, st.Ino}); ok {
		id := v.(fileIdentity)
		return id.ino, id.gen
	}
	gen := uint64(li) + 1
	if !u.isUpper(li) && st.Nlink > 1 {
		h := fnv.New64a()
		fmt.Fprintf(h, "%d/%s", parent, name)
		gen |= h.Sum64() << 16
	}
	return u.ino(st.Dev, st.Ino), gen
}

// forgetOrigin drops the origin of the upper file st described before
// one of its names was removed or replaced, if that was its last name.
// Its data may live on for open descriptors (node.orphan), whose nodes
// keep their numbers themselves.
func (u *unionFS) forgetOrigin(st *unix.Stat_t) {
	if st.Mode&unix.S_IFMT != unix.S_IFDIR && st.Nlink <= 1 {
		u.origins.Delete(devIno{st.Dev, st.Ino})
	}
}

// workSubdir is ovl's own directory inside the Spec's Work, kept apart
// from the kernel's "work" and "index" so both can share one work dir.
const workSubdir = "ovl-fuse"

// newUnionFS opens every layer of spec and prepares the work directory,
// removing what an earlier crash left there.
func newUnionFS(spec layer.Spec, log *slog.Logger) (*unionFS, error) {
	layers := len(spec.Lowers)
	if spec.Upper != "" {
		layers++
	}
	budget, err := fdBudget(layers)
	if err != nil {
		return nil, err
	}
	u := &unionFS{spec: spec, workFd: -1, ns: spec.Namespace, volatile: spec.Options.Volatile,
		devs: map[uint64]uint64{}, log: log, origin: newOriginEncoder(),
		maxDirFds: min(maxCachedDirFds, budget*2/3), maxDataFds: min(maxCachedDataFds, budget/3)}
	if err := u.open(); err != nil {
		u.close()
		return nil, err
	}
	return u, nil
}

// open opens every layer of u.spec and prepares the work directory; on
// an error the caller closes what it opened.
func (u *unionFS) open() error {
	spec := u.spec
	openLayer := func(p string, unrecorded layer.Format) error {
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open layer %s: %w", p, err)
		}
		u.layers = append(u.layers, layerRoot{path: p, fd: fd})
		f, err := layer.ReadFormat(fd)
		if err != nil {
			return fmt.Errorf("layer %s: %w", p, err)
		}
		if f == layer.KernelFormat {
			f = unrecorded
		}
		u.layers[len(u.layers)-1].format = f
		return nil
	}
	if spec.Upper != "" {
		u.hasUpper = true
		u.writable = !spec.ReadOnly
		if err := openLayer(spec.Upper, layer.KernelFormat); err != nil {
			return err
		}
		// Refused now, with its name, rather than at every change.
		if err := unix.Faccessat(u.layers[0].fd, ".", unix.W_OK|unix.X_OK, unix.AT_EACCESS); u.writable && err != nil {
			return fmt.Errorf("upper %s: not writable by uid %d: %w", spec.Upper, os.Geteuid(), err)
		}
	}
	if u.hasUpper && u.layers[0].format != layer.KernelFormat {
		return fmt.Errorf("upper %s records the %s format, and changes are written in the kernel's: give an upper of its own", spec.Upper, u.layers[0].format)
	}
	for _, l := range spec.Lowers {
		if err := openLayer(l, spec.LowerFormat); err != nil {
			return err
		}
	}
	if err := u.markIDMappedLayers(); err != nil {
		return err
	}
	// Number the layers' devices bottom-up now, not in the order files
	// happen to be seen, so inode numbers are the same at every mount.
	for i := len(u.layers) - 1; i >= 0; i-- {
		var st unix.Stat_t
		if unix.Fstat(u.layers[i].fd, &st) == nil {
			u.ino(st.Dev, st.Ino)
		}
	}
	if u.writable {
		if err := u.prepareWork(); err != nil {
			return err
		}
		u.initUUID()
		u.wr = layer.Writer{NS: u.ns}
		var why string
		var err error
		if u.wr.Whiteouts, why, err = layer.ProbeWhiteouts(u.workFd); err != nil {
			return fmt.Errorf("work dir %s: %w", spec.Work, err)
		}
		if why != "" {
			u.log.Debug("fusefs: writing xattr whiteouts", "upper", spec.Upper, "why", why)
		}
		if u.wr.Whiteouts == layer.DeviceWhiteouts {
			u.wr.Shared = layer.NewSharedWhiteout(u.workFd, sharedWhiteoutName)
		}
	}
	return nil
}

// prepareWork makes Work/ovl-fuse empty: whatever is in it is a copy-up
// or a deletion that a crash interrupted, never visible in the tree.
func (u *unionFS) prepareWork() error {
	dir := filepath.Join(u.spec.Work, workSubdir)
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("clean stale work dir %s: %w", dir, err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("work dir %s: %w", dir, err)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("work dir %s: %w", dir, err)
	}
	u.workFd = fd
	// What is built here must not inherit a default ACL of Work (the
	// kernel strips its work dir's too: fs/overlayfs/super.c
	// ovl_workdir_create).
	for _, acl := range []string{"system.posix_acl_default", "system.posix_acl_access"} {
		if err := unix.Fremovexattr(fd, acl); err != nil && !errors.Is(err, unix.ENODATA) && !errors.Is(err, unix.EOPNOTSUPP) {
			return fmt.Errorf("work dir %s: remove %s: %w", dir, acl, err)
		}
	}
	return nil
}

func (u *unionFS) close() {
	if u.syncer != nil {
		u.syncer.close()
	}
	for _, l := range u.layers {
		unix.Close(l.fd)
	}
	u.layers = nil
	if u.workFd >= 0 {
		unix.Close(u.workFd)
		u.workFd = -1
	}
}

// sharedWhiteoutName is the work dir entry every device whiteout links
// to (layer.SharedWhiteout); tmpName's names start with "#".
const sharedWhiteoutName = "whiteout"

// tmpName returns a fresh name for a scratch entry in the work dir.
func (u *unionFS) tmpName() string {
	return fmt.Sprintf("#%x", u.tmpSeq.Add(1))
}

// ino maps the (dev, ino) of a layer file to the inode number the union
// shows: unique across layers, identical for one file seen twice.
func (u *unionFS) ino(dev, ino uint64) uint64 {
	u.devMu.Lock()
	idx, ok := u.devs[dev]
	if !ok {
		idx = uint64(len(u.devs) + 1)
		u.devs[dev] = idx
	}
	u.devMu.Unlock()
	if ino < 1<<48 && idx < 1<<14 {
		return idx<<48 | ino
	}
	// Inode numbers too big to tag: mix, keeping clear of the tagged range.
	h := (ino ^ idx*0x9e3779b97f4a7c15) * 0xbf58476d1ce4e5b9
	return (h | 1<<62) &^ (1 << 63)
}

// freeGen returns the generation for a non-directory with identity id
// found in layer li: id.Gen, unless a live node of that identity was
// copied up meanwhile (the lower copy is then another file, as a hard
// link broken by copy-up is in the kernel's overlay), in which case the
// next generation free for it.
func (u *unionFS) freeGen(id fs.StableAttr, li int) uint64 {
	for k := uint64(0); k < 1<<16; k++ {
		probe := id
		probe.Gen = id.Gen + k<<8
		v, ok := u.known.Load(probe)
		if !ok || v.(*node).topLayer() == li {
			return probe.Gen
		}
	}
	return id.Gen
}

// isUpper reports whether layer index li is the upper directory.
func (u *unionFS) isUpper(li int) bool { return u.hasUpper && li == 0 }
