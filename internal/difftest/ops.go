package difftest

import (
	"fmt"
	"math/rand/v2"
	"path"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// OpKind names one kind of file operation.
type OpKind int

// The operations Generate draws from.
const (
	OpCreate OpKind = iota
	OpWrite
	OpAppend
	OpTruncate
	OpMkdir
	OpRmdir
	OpUnlink
	OpRename
	OpLink
	OpSymlink
	OpChmod
	OpChown
	OpUtimes
	OpSetxattr
	OpRemovexattr
	OpMknod
	OpReaddir
	OpRead
	OpStat
	OpOpen    // open Path into descriptor slot Slot, kept across ops
	OpFdRead  // read a slot's file from offset 0 to the end
	OpFdWrite // pwrite through a slot
	OpFdStat  // fstat a slot
	OpClose   // close a slot
	OpPopulate
	OpRmTree
	opCount
)

// slots is how many descriptors a sequence may hold open at once.
const slots = 4

var opNames = [...]string{"create", "write", "append", "truncate", "mkdir", "rmdir", "unlink", "rename",
	"link", "symlink", "chmod", "chown", "utimes", "setxattr", "removexattr", "mknod", "readdir", "read", "lstat",
	"open", "fd-read", "fd-write", "fstat", "close", "populate", "rm-rf"}

func (k OpKind) String() string {
	if k >= extraOpBase {
		return extraOpNames[k-extraOpBase]
	}
	return opNames[k]
}

// opWeights is how often Generate picks each kind (out of their sum).
var opWeights = [opCount]int{
	OpCreate: 8, OpWrite: 8, OpAppend: 5, OpTruncate: 5, OpMkdir: 6, OpRmdir: 5, OpUnlink: 7,
	OpRename: 12, OpLink: 5, OpSymlink: 4, OpChmod: 5, OpChown: 4, OpUtimes: 4, OpSetxattr: 5,
	OpRemovexattr: 3, OpMknod: 3, OpReaddir: 6, OpRead: 5, OpStat: 6,
	OpOpen: 4, OpFdRead: 3, OpFdWrite: 3, OpFdStat: 2, OpClose: 2, OpPopulate: 1, OpRmTree: 2,
}

// Op is one file operation on paths relative to the mount's root.
type Op struct {
	Kind  OpKind
	Path  string
	Path2 string // rename and link destination
	// Target is a symlink's content.
	Target string
	// Off and Len place a write; Len is a truncate's size too. The data
	// written is OpData(seed, index).
	Off, Len int64
	Mode     uint32 // create, mkdir, chmod; mknod: with the file type
	Dev      uint64 // mknod of a device
	UID, GID int    // chown; -1 leaves it
	// Flags are open(2) flags for create (O_EXCL, O_TRUNC), renameat2
	// flags for rename, and xattr flags for setxattr.
	Flags     int
	Name      string // xattr name
	Value     string // xattr value
	Sec, Nsec int64  // utimes: mtime; atime is one day earlier
	Slot      int    // descriptor slot of open, fd-read, fd-write, fstat, close
	Count     int    // files populate creates
	Seed      int64
	Index     int
	// User, when not 0, is the uid (and gid) the op runs as (Widen).
	User int
	// Sub are the operations a compound op of Widen runs.
	Sub []Op
}

// Data is what a write or append writes: Len bytes, the same for the same
// seed and op index.
func (o Op) Data() []byte {
	r := rand.New(rand.NewPCG(uint64(o.Seed), uint64(o.Index)))
	b := make([]byte, o.Len)
	for i := range b {
		b[i] = 'a' + byte(r.IntN(26))
	}
	return b
}

// String prints o as one line, with paths quoted and very long names
// shortened.
func (o Op) String() string {
	if s, ok := o.extraString(); ok {
		return s
	}
	switch o.Kind {
	case OpCreate:
		return fmt.Sprintf("create %s mode=%#o flags=%s", q(o.Path), o.Mode, openFlagString(o.Flags))
	case OpWrite:
		return fmt.Sprintf("write %s off=%d len=%d", q(o.Path), o.Off, o.Len)
	case OpAppend:
		return fmt.Sprintf("append %s len=%d", q(o.Path), o.Len)
	case OpTruncate:
		return fmt.Sprintf("truncate %s size=%d", q(o.Path), o.Len)
	case OpMkdir:
		return fmt.Sprintf("mkdir %s mode=%#o", q(o.Path), o.Mode)
	case OpMknod:
		return fmt.Sprintf("mknod %s %s mode=%#o dev=%d:%d", q(o.Path), typeName(o.Mode), o.Mode&0o7777, unix.Major(o.Dev), unix.Minor(o.Dev))
	case OpOpen:
		return fmt.Sprintf("open %s flags=%s -> fd slot %d", q(o.Path), openFlagString(o.Flags), o.Slot)
	case OpFdRead, OpFdStat, OpClose:
		return fmt.Sprintf("%s fd slot %d", o.Kind, o.Slot)
	case OpFdWrite:
		return fmt.Sprintf("pwrite fd slot %d off=%d len=%d", o.Slot, o.Off, o.Len)
	case OpPopulate:
		return fmt.Sprintf("populate %s with %d files and a subdirectory", q(o.Path), o.Count)
	case OpRmdir, OpUnlink, OpReaddir, OpRead, OpStat, OpRmTree:
		return fmt.Sprintf("%s %s", o.Kind, q(o.Path))
	case OpRename:
		return fmt.Sprintf("rename %s -> %s flags=%s", q(o.Path), q(o.Path2), renameFlagString(o.Flags))
	case OpLink:
		return fmt.Sprintf("link %s -> new name %s", q(o.Path), q(o.Path2))
	case OpSymlink:
		return fmt.Sprintf("symlink %s -> %s", q(o.Path), q(o.Target))
	case OpChmod:
		return fmt.Sprintf("chmod %s %#o", q(o.Path), o.Mode)
	case OpChown:
		return fmt.Sprintf("lchown %s %d:%d", q(o.Path), o.UID, o.GID)
	case OpUtimes:
		return fmt.Sprintf("lutimes %s mtime=%d.%09d", q(o.Path), o.Sec, o.Nsec)
	case OpSetxattr:
		v := fmt.Sprintf("%q", o.Value)
		if len(o.Value) > 20 {
			v = fmt.Sprintf("(%d bytes)", len(o.Value))
		}
		return fmt.Sprintf("lsetxattr %s %s=%s flags=%s", q(o.Path), o.Name, v, xattrFlagString(o.Flags))
	case OpRemovexattr:
		return fmt.Sprintf("lremovexattr %s %s", q(o.Path), o.Name)
	}
	return fmt.Sprintf("op%d %s", int(o.Kind), q(o.Path))
}

// q quotes a path for String, shortening components longer than 40
// bytes to their length.
func q(p string) string {
	parts := strings.Split(p, "/")
	for i, c := range parts {
		if len(c) > 40 {
			parts[i] = fmt.Sprintf("%s...(%d bytes)", c[:4], len(c))
		}
	}
	return fmt.Sprintf("%q", strings.Join(parts, "/"))
}

func openFlagString(f int) string {
	var s []string
	switch f & unix.O_ACCMODE {
	case unix.O_WRONLY:
		s = append(s, "O_WRONLY")
	case unix.O_RDWR:
		s = append(s, "O_RDWR")
	}
	if f&unix.O_APPEND != 0 {
		s = append(s, "O_APPEND")
	}
	if f&unix.O_CREAT != 0 {
		s = append(s, "O_CREAT")
	}
	if f&unix.O_EXCL != 0 {
		s = append(s, "O_EXCL")
	}
	if f&unix.O_TRUNC != 0 {
		s = append(s, "O_TRUNC")
	}
	if len(s) == 0 {
		return "0"
	}
	return strings.Join(s, "|")
}

func xattrFlagString(f int) string {
	switch f {
	case unix.XATTR_CREATE:
		return "CREATE"
	case unix.XATTR_REPLACE:
		return "REPLACE"
	}
	return "0"
}

func renameFlagString(f int) string {
	switch f {
	case unix.RENAME_NOREPLACE:
		return "NOREPLACE"
	case unix.RENAME_EXCHANGE:
		return "EXCHANGE"
	}
	return "0"
}

// generator draws operations over a rough model of the tree: the names
// that probably exist (updated as if every operation succeeded) and fresh
// names. The model is only a bias: an op on a missing name is a fine test.
type generator struct {
	r     *rand.Rand
	seed  int64
	paths []string // names that probably exist
	dirs  []string // directories among them; "" is the root
	// ghosts are names that existed in a lower layer, hidden by a whiteout
	// or an opaque directory.
	ghosts []string
	fresh  int
}

// Generate returns n operations drawn from seed over the fixture's names
// (FixtureNames) and names the sequence itself creates. The same seed
// always gives the same sequence.
func Generate(seed int64, n int) []Op {
	paths, dirs, ghosts := FixtureNames()
	g := &generator{r: rand.New(rand.NewPCG(uint64(seed), 0x6f766c)), seed: seed, paths: paths, dirs: dirs, ghosts: ghosts}
	total := 0
	for _, w := range opWeights {
		total += w
	}
	ops := make([]Op, 0, n)
	for i := range n {
		pick := g.r.IntN(total)
		k := OpKind(0)
		for ; pick >= opWeights[k]; k++ {
			pick -= opWeights[k]
		}
		op := g.op(k)
		op.Kind, op.Seed, op.Index = k, seed, i
		ops = append(ops, op)
	}
	return ops
}

// WriteAfterWriteOpens returns ops with a one-byte write right after
// each open for writing: through the descriptor after an open, by name
// after a create (which opens an existing file for writing too)
// (Config.CopyUpAtFirstChange).
func WriteAfterWriteOpens(ops []Op) []Op {
	out := make([]Op, 0, len(ops))
	for _, op := range ops {
		op.Index = len(out)
		out = append(out, op)
		switch {
		case op.Kind == OpOpen && op.Flags&unix.O_ACCMODE != unix.O_RDONLY:
			out = append(out, Op{Kind: OpFdWrite, Seed: op.Seed, Index: len(out), Slot: op.Slot, Off: 0, Len: 1})
		case op.Kind == OpCreate:
			out = append(out, Op{Kind: OpWrite, Seed: op.Seed, Index: len(out), Path: op.Path, Off: 0, Len: 1, User: op.User})
		}
	}
	return out
}

func (g *generator) op(k OpKind) Op {
	r := g.r
	switch k {
	case OpCreate:
		flags := []int{0, unix.O_EXCL, unix.O_TRUNC}[r.IntN(3)]
		p := g.newName()
		if r.IntN(4) == 0 {
			p = g.existing()
		}
		g.add(p, false)
		return Op{Path: p, Mode: g.mode(), Flags: flags}
	case OpWrite:
		offs := []int64{0, 1, 7, 4095, 4096, 65536, 69999, 100000}
		lens := []int64{1, 10, 100, 4096, 5000}
		return Op{Path: g.file(), Off: offs[r.IntN(len(offs))], Len: lens[r.IntN(len(lens))]}
	case OpAppend:
		return Op{Path: g.file(), Len: []int64{1, 17, 4096}[r.IntN(3)]}
	case OpTruncate:
		return Op{Path: g.file(), Len: []int64{0, 1, 100, 4096, 70001}[r.IntN(5)]}
	case OpMkdir:
		p := g.newName()
		if r.IntN(5) == 0 {
			p = g.existing()
		}
		g.add(p, true)
		return Op{Path: p, Mode: []uint32{0o755, 0o700, 0o777, 0o1777, 0o2755}[r.IntN(5)]}
	case OpRmdir:
		p := g.dir()
		if r.IntN(4) == 0 {
			p = g.existing()
		}
		g.remove(p)
		return Op{Path: p}
	case OpUnlink:
		p := g.file()
		g.remove(p)
		return Op{Path: p}
	case OpRename:
		src := g.existing()
		if r.IntN(3) == 0 {
			src = g.dir()
		}
		var dst string
		switch r.IntN(5) {
		case 0, 1:
			dst = g.existing() // over an existing name
		case 2:
			dst = path.Join(g.dir(), path.Base(src)) // same name, other dir
		default:
			dst = g.newName()
		}
		flags := 0
		switch r.IntN(10) {
		case 0:
			flags = unix.RENAME_NOREPLACE
		case 1:
			flags = unix.RENAME_EXCHANGE
		}
		g.remove(src)
		g.add(dst, slices.Contains(g.dirs, src))
		return Op{Path: src, Path2: dst, Flags: flags}
	case OpLink:
		src := g.file()
		dst := g.newName()
		if r.IntN(5) == 0 {
			dst = g.existing()
		}
		g.add(dst, false)
		return Op{Path: src, Path2: dst}
	case OpSymlink:
		p := g.newName()
		if r.IntN(6) == 0 {
			p = g.existing()
		}
		targets := []string{g.existing(), "../" + g.existing(), "/" + g.existing(), "nowhere", "/etc/passwd", "../../../../etc", ""}
		g.add(p, false)
		return Op{Path: p, Target: targets[r.IntN(len(targets))]}
	case OpChmod:
		return Op{Path: g.existing(), Mode: g.mode()}
	case OpChown:
		ids := []int{-1, 0, 1000, 65534, 4242}
		return Op{Path: g.existing(), UID: ids[r.IntN(len(ids))], GID: ids[r.IntN(len(ids))]}
	case OpUtimes:
		return Op{Path: g.existing(), Sec: 978307200 + r.Int64N(400000000), Nsec: r.Int64N(1e9)}
	case OpSetxattr:
		names := []string{"user.a", "user.b", "user.t0", "user.t1", "user.t2", "user.overlay.opaque", "trusted.overlay.opaque"}
		n := names[r.IntN(len(names))]
		if strings.Contains(n, "overlay") && r.IntN(8) != 0 {
			n = "user.t3" // keep the overlay names rare (about 4%)
		}
		flags := []int{0, 0, 0, unix.XATTR_CREATE, unix.XATTR_REPLACE}[r.IntN(5)]
		vals := []string{"y", "v1", "", strings.Repeat("x", 300)}
		return Op{Path: g.existing(), Name: n, Value: vals[r.IntN(len(vals))], Flags: flags}
	case OpRemovexattr:
		names := []string{"user.a", "user.b", "user.d", "user.m", "user.top", "user.t0", "user.t1"}
		return Op{Path: g.existing(), Name: names[r.IntN(len(names))]}
	case OpMknod:
		p := g.newName()
		g.add(p, false)
		// Mostly fifos; sockets; devices, which need privilege; and
		// now and then a 0/0 character device, a whiteout's twin.
		op := Op{Path: p, Mode: unix.S_IFIFO | 0o644}
		switch n := r.IntN(20); {
		case n < 3:
			op.Mode = unix.S_IFSOCK | 0o755
		case n < 5:
			op.Mode, op.Dev = unix.S_IFCHR|0o666, unix.Mkdev(1, 3)
		case n < 6:
			op.Mode = unix.S_IFCHR | 0o600
		}
		return op
	case OpReaddir:
		p := g.dir()
		if r.IntN(6) == 0 {
			p = g.existing()
		}
		return Op{Path: p}
	case OpRead:
		return Op{Path: g.file()}
	case OpStat:
		return Op{Path: g.existing()}
	case OpOpen:
		op := Op{Slot: r.IntN(slots), Path: g.file()}
		switch r.IntN(5) {
		case 0, 1:
			op.Flags = unix.O_RDONLY
		case 2:
			op.Flags = unix.O_RDWR
		case 3:
			op.Flags = unix.O_WRONLY | unix.O_APPEND
		case 4:
			op.Flags, op.Mode, op.Path = unix.O_RDWR|unix.O_CREAT, 0o644, g.newName()
			g.add(op.Path, false)
		}
		return op
	case OpFdRead, OpFdStat, OpClose:
		return Op{Slot: r.IntN(slots)}
	case OpFdWrite:
		return Op{Slot: r.IntN(slots), Off: []int64{0, 5, 4096, 70000}[r.IntN(4)], Len: []int64{1, 100, 5000}[r.IntN(3)]}
	case OpPopulate:
		p := g.dir()
		for i := range 3 {
			g.add(path.Join(p, fmt.Sprintf("p%03d", i)), false)
		}
		g.add(path.Join(p, "pdir"), true)
		return Op{Path: p, Count: []int{20, 60, 150}[r.IntN(3)], Len: 64}
	case OpRmTree:
		p := g.dir()
		if p == "" && r.IntN(4) != 0 {
			p = g.dir() // emptying the whole tree: now and then
		}
		if p == "" {
			g.paths = nil
			g.dirs = []string{""}
		} else {
			g.remove(p)
		}
		return Op{Path: p}
	}
	panic("difftest: unknown op kind")
}

// existing picks a name that probably exists; now and then one that
// does not, or one that a lower layer has but the merged tree hides.
func (g *generator) existing() string {
	switch g.r.IntN(12) {
	case 0:
		return g.newName()
	case 1:
		return g.ghosts[g.r.IntN(len(g.ghosts))]
	case 2:
		if g.r.IntN(3) == 0 {
			return g.whName() // whnames.go
		}
	}
	if len(g.paths) == 0 {
		return g.newName()
	}
	return g.paths[g.r.IntN(len(g.paths))]
}

// file picks a name that probably is not a directory, most of the time.
func (g *generator) file() string {
	for range 4 {
		p := g.existing()
		if !slices.Contains(g.dirs, p) {
			return p
		}
	}
	return g.existing()
}

func (g *generator) dir() string {
	d := g.dirs[g.r.IntN(len(g.dirs))]
	if g.r.IntN(25) == 0 {
		return g.whDir(d) // whnames.go
	}
	return d
}

// newName is a name not used before in a probable directory; now and then
// one too long for NAME_MAX, or one inside a file (ENOTDIR).
func (g *generator) newName() string {
	g.fresh++
	base := fmt.Sprintf("n%d", g.fresh)
	switch g.r.IntN(40) {
	case 0:
		base = strings.Repeat("L", 256) // ENAMETOOLONG
	case 1:
		base = strings.Repeat("M", 255) // just fits
	case 2:
		return path.Join(g.existing(), base)
	case 3, 4, 5, 6:
		// Re-create a deleted or hidden name: over a whiteout, in a
		// directory that may have been removed and made again.
		return g.ghosts[g.r.IntN(len(g.ghosts))]
	case 7, 8:
		return g.whName() // whnames.go
	}
	return path.Join(g.dir(), base)
}

func (g *generator) mode() uint32 {
	modes := []uint32{0o644, 0o600, 0o755, 0o700, 0o444, 0o000, 0o1777, 0o2755, 0o4755, 0o640}
	return modes[g.r.IntN(len(modes))]
}

func (g *generator) add(p string, dir bool) {
	g.ghosts = slices.DeleteFunc(g.ghosts, func(q string) bool { return q == p })
	if !slices.Contains(g.paths, p) {
		g.paths = append(g.paths, p)
	}
	if dir && !slices.Contains(g.dirs, p) {
		g.dirs = append(g.dirs, p)
	}
}

// remove drops p and what is under it from the model, keeping the root;
// the names become ghosts, to be used and re-created later.
func (g *generator) remove(p string) {
	if p == "" {
		return
	}
	under := func(q string) bool { return q == p || strings.HasPrefix(q, p+"/") }
	for _, q := range g.paths {
		if under(q) && !slices.Contains(g.ghosts, q) {
			g.ghosts = append(g.ghosts, q)
		}
	}
	g.paths = slices.DeleteFunc(g.paths, under)
	g.dirs = slices.DeleteFunc(g.dirs, under)
	if len(g.dirs) == 0 {
		g.dirs = []string{""}
	}
}
