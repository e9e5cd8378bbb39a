package difftest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// What Widen adds to a generated sequence, from a random stream of its
// own (so Generate's sequences, and whatever other pools add to them,
// stay as they are):
//
//   - lower files changed in their layer while mounted (OpLowerGrow)
//     and swapped for a symlink to a file outside the layers
//     (OpLowerSwap), each followed by a change through the mount;
//   - a directory listing interleaved with changes to the directory
//     (OpListInterleaved);
//   - operations done by a second uid (Op.User), which the mount must
//     admit by the files' permissions;
//   - set-id modes: mknod of set-user-ID and set-group-ID regular files
//     (create, mkdir and chmod draw set-id modes already).
//
// Each compound op is built so that both mounts must give the same
// result where the kernel's is defined: a lower file changed under a
// mount is undefined in general (Documentation/filesystems/overlayfs.rst,
// "Changes to underlying filesystems"), but an append right after must
// land at its new end, a swap must never reach the file the symlink
// points to, and a listing must show every name that stayed throughout
// exactly once.

// The compound operation kinds Widen adds (numbered apart from Generate's).
const (
	// OpLowerGrow appends Len bytes to Path's file in the top-most lower
	// layer that has it (in place, not through the mount), then appends
	// through the mount and reads the file back.
	OpLowerGrow OpKind = extraOpBase + iota
	// OpLowerSwap replaces Path's file in the top-most lower layer that
	// has it with a symlink to a file outside the layers, runs Sub[0]
	// on Path through the mount, unlinks Path through the mount, and
	// reports whether the outside file changed (the errno of Sub[0] is
	// not compared: the kernel acts on the file it had looked up, a
	// union may refuse).
	OpLowerSwap
	// OpListInterleaved makes Count files in directory Path, reads part
	// of a listing of it, runs Sub (changes in that directory), reads the
	// rest, and checks that every name present throughout (there at the
	// end, and none the changes touched) was read exactly once.
	OpListInterleaved
	extraOpEnd
)

// extraOpBase numbers Widen's kinds apart from Generate's.
const extraOpBase OpKind = 100

var extraOpNames = [...]string{"lower-grow", "lower-swap", "list-interleaved"}

// otherUIDs are the uids (and gids) a decorated op runs as: the fixture's
// second owner, and nobody.
var otherUIDs = []int{1000, 65534}

// Widen returns ops with the operations described above woven in, drawn
// from seed; the same seed and ops always give the same result.
//
// Lower files change only on a writable stack: without an upper, nothing
// through the mount could follow the change to make the result defined.
func Widen(seed int64, ops []Op, readOnly bool) []Op {
	r := rand.New(rand.NewPCG(uint64(seed), 0x77696465))
	paths, dirs, _ := FixtureNames()
	files := slices.DeleteFunc(slices.Clone(paths), func(p string) bool { return slices.Contains(dirs, p) })
	out := make([]Op, 0, len(ops)+len(ops)/4)
	for _, op := range ops {
		if r.IntN(8) == 0 {
			out = append(out, widenExtra(r, paths, files, dirs, readOnly))
		}
		switch {
		case op.Kind == OpMknod && r.IntN(3) == 0:
			op.Mode, op.Dev = unix.S_IFREG|[]uint32{0o4755, 0o2755, 0o6750, 0o2711}[r.IntN(4)], 0
		case otherUserOK[op.Kind] && r.IntN(6) == 0:
			op.User = otherUIDs[r.IntN(len(otherUIDs))]
		}
		out = append(out, op)
	}
	for i := range out {
		out[i].Index = i
		out[i].Seed = seed
		for j := range out[i].Sub {
			out[i].Sub[j].Seed, out[i].Sub[j].Index = seed, 1000*i+j
		}
	}
	return out
}

// otherUserOK are the kinds a second uid may do (not those on the
// executor's held descriptors, nor the bulk ones).
var otherUserOK = map[OpKind]bool{
	OpCreate: true, OpWrite: true, OpAppend: true, OpTruncate: true, OpMkdir: true, OpRmdir: true,
	OpUnlink: true, OpRename: true, OpLink: true, OpSymlink: true, OpChmod: true, OpChown: true,
	OpUtimes: true, OpSetxattr: true, OpRemovexattr: true, OpMknod: true, OpReaddir: true,
	OpRead: true, OpStat: true,
}

func widenExtra(r *rand.Rand, paths, files, dirs []string, readOnly bool) Op {
	kind := r.IntN(3)
	if readOnly {
		kind = 2
	}
	switch kind {
	case 0:
		return Op{Kind: OpLowerGrow, Path: files[r.IntN(len(files))], Len: []int64{1, 100, 5000}[r.IntN(3)]}
	case 1:
		p := files[r.IntN(len(files))]
		subs := []Op{
			{Kind: OpChmod, Mode: 0o666}, {Kind: OpChmod, Mode: 0o4777}, {Kind: OpChown, UID: 1000, GID: 1000},
			{Kind: OpChown, UID: -1, GID: -1}, {Kind: OpUtimes, Sec: 1000000000}, {Kind: OpTruncate, Len: 1},
			{Kind: OpWrite, Len: 10}, {Kind: OpAppend, Len: 10}, {Kind: OpSetxattr, Name: "user.x", Value: "v"},
			{Kind: OpRemovexattr, Name: "user.o"}, {Kind: OpRead},
		}
		sub := subs[r.IntN(len(subs))]
		sub.Path = p
		return Op{Kind: OpLowerSwap, Path: p, Sub: []Op{sub}}
	}
	d := dirs[r.IntN(len(dirs))]
	n := r.IntN(1000)
	name := func(s string) string { return path.Join(d, fmt.Sprintf("lw%d-%s", n, s)) }
	subs := []Op{
		{Kind: OpCreate, Path: name("a"), Mode: 0o644},
		{Kind: OpCreate, Path: name("b"), Mode: 0o644},
		{Kind: OpUnlink, Path: name("a")},
		{Kind: OpRename, Path: name("b"), Path2: name("c")},
		{Kind: OpMkdir, Path: name("d"), Mode: 0o755},
	}
	// Now and then one of the directory's own names goes, or comes
	// back after going.
	var mine []string
	for _, p := range paths {
		if path.Dir(p) == d || d == "" && !strings.Contains(p, "/") {
			mine = append(mine, p)
		}
	}
	if len(mine) > 0 {
		p := mine[r.IntN(len(mine))]
		subs = append(subs, Op{Kind: OpUnlink, Path: p})
		if r.IntN(2) == 0 {
			subs = append(subs, Op{Kind: OpCreate, Path: p, Mode: 0o600})
		}
	}
	// Now and then a directory of many names, made first, half of which
	// go while it is listed (as rm -rf does: read, remove, read on): a
	// listing of it takes several requests to a FUSE daemon, and goes on
	// from an offset handed out before the directory shrank.
	op := Op{Kind: OpListInterleaved, Path: d, Sub: subs, Len: int64(n)}
	if r.IntN(3) == 0 {
		op.Count = 300
		for i := range op.Count / 2 {
			op.Sub = append(op.Sub, Op{Kind: OpUnlink, Path: path.Join(d, manyName(n, i))})
		}
	}
	return op
}

// manyName is the name of the i-th file an OpListInterleaved of number
// n makes first.
func manyName(n, i int) string { return fmt.Sprintf("lw%d-many-%03d", n, i) }

// extraString prints Widen's kinds and the uid an op runs as.
func (o Op) extraString() (string, bool) {
	switch o.Kind {
	case OpLowerGrow:
		return fmt.Sprintf("lower-grow %s by %d bytes in its layer, then append through the mount", q(o.Path), o.Len), true
	case OpLowerSwap:
		return fmt.Sprintf("lower-swap %s for a symlink out of the layers, then %s, then unlink", q(o.Path), o.Sub[0]), true
	case OpListInterleaved:
		var subs []string
		for i, s := range o.Sub {
			if i == 8 {
				subs = append(subs, fmt.Sprintf("... (%d changes in all)", len(o.Sub)))
				break
			}
			subs = append(subs, s.String())
		}
		many := ""
		if o.Count > 0 {
			many = fmt.Sprintf(" (%d files made first)", o.Count)
		}
		return fmt.Sprintf("list %s%s interleaved with: %s", q(o.Path), many, strings.Join(subs, "; ")), true
	}
	if o.User != 0 {
		u := o
		u.User = 0
		return fmt.Sprintf("as uid %d: %s", o.User, u), true
	}
	return "", false
}

// asUser runs fn with effective uid and gid id and no supplementary
// groups, on a thread of its own that is discarded afterwards (the ids
// of a Linux thread are its own; Go's setuid would change every thread).
func asUser(id int, fn func() (string, error)) (string, error) {
	type res struct {
		out string
		err error
	}
	c := make(chan res, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		for _, call := range [][4]uintptr{
			{unix.SYS_SETGROUPS, 0, 0, 0},
			{unix.SYS_SETRESGID, ^uintptr(0), uintptr(id), ^uintptr(0)},
			{unix.SYS_SETRESUID, ^uintptr(0), uintptr(id), ^uintptr(0)},
		} {
			if _, _, e := unix.RawSyscall(call[0], call[1], call[2], call[3]); e != 0 {
				// In a user namespace with one uid, there is no other.
				c <- res{"no other uid here", nil}
				return
			}
		}
		out, err := fn()
		c <- res{out, err}
	}()
	r := <-c
	return r.out, r.err
}

// runExtra runs Widen's compound kinds.
func (x *Executor) runExtra(op Op) (string, error) {
	switch op.Kind {
	case OpLowerGrow:
		return x.lowerGrow(op)
	case OpLowerSwap:
		return x.lowerSwap(op)
	case OpListInterleaved:
		return x.listInterleaved(op)
	}
	return "", fmt.Errorf("difftest: unknown op %v", op.Kind)
}

// lowerFile returns where p is in the top-most lower layer that has it,
// if that is a regular file with one link (the other names of a hard
// link would show the change too, and the mount may have cached those)
// reached without a symlink.
func (x *Executor) lowerFile(p string) (string, bool) {
	for _, l := range x.Lowers {
		root, err := unix.Open(l, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return "", false
		}
		fd, err := unix.Openat2(root, p, &unix.OpenHow{Flags: uint64(unix.O_PATH | unix.O_CLOEXEC | unix.O_NOFOLLOW),
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS})
		unix.Close(root)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return "", false
		}
		var st unix.Stat_t
		err = unix.Fstat(fd, &st)
		unix.Close(fd)
		if err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 1 {
			return "", false
		}
		return filepath.Join(l, p), true
	}
	return "", false
}

func (x *Executor) lowerGrow(op Op) (string, error) {
	lp, ok := x.lowerFile(op.Path)
	if !ok {
		return "no lower file", nil
	}
	f, err := os.OpenFile(lp, os.O_WRONLY|os.O_APPEND|unix.O_NOFOLLOW, 0)
	if err == nil {
		_, err = f.Write(op.Data())
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return "", fmt.Errorf("difftest: grow %s in its layer: %w", op.Path, err)
	}
	if err := x.withFile(op.Path, unix.O_WRONLY|unix.O_APPEND, func(fd int) error {
		_, err := unix.Write(fd, []byte("+"))
		return err
	}); err != nil {
		return "", err
	}
	var out string
	err = x.withFile(op.Path, unix.O_RDONLY, func(fd int) error {
		var err error
		out, err = readAll(fd)
		return err
	})
	return out, err
}

func (x *Executor) lowerSwap(op Op) (string, error) {
	lp, ok := x.lowerFile(op.Path)
	if !ok {
		return "no lower file", nil
	}
	if err := os.MkdirAll(x.Outside, 0o755); err != nil {
		return "", err
	}
	outside := filepath.Join(x.Outside, fmt.Sprintf("secret-%d", op.Index))
	if err := os.WriteFile(outside, []byte("outside the layers"), 0o600); err != nil {
		return "", err
	}
	if err := unix.Setxattr(outside, "user.o", []byte("outside"), 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
		return "", err
	}
	before, err := fileState(outside)
	if err != nil {
		return "", err
	}
	// The lower file moves out of the layer rather than going: an inode
	// number freed there could be given to a new upper file, which the
	// kernel's overlay never sees (it holds the lower file it looked up)
	// and a union that numbers a copy after its origin would.
	if err := os.Rename(lp, outside+".was"); err != nil {
		return "", err
	}
	if err := os.Symlink(outside, lp); err != nil {
		return "", err
	}
	x.run(op.Sub[0])
	x.run(Op{Kind: OpUnlink, Path: op.Path})
	after, err := fileState(outside)
	if err != nil {
		return "", err
	}
	if after != before {
		return fmt.Sprintf("the file outside the layers changed: %s -> %s", before, after), nil
	}
	return "the file outside the layers untouched", nil
}

// fileState is what lowerSwap compares of the file outside the layers:
// everything a change would show, ctime included.
func fileState(p string) (string, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return "", err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	x := make([]byte, 64)
	n, _ := unix.Getxattr(p, "user.o", x)
	return fmt.Sprintf("mode %o owner %d:%d ctime %d.%d content %q xattr %q", st.Mode, st.Uid, st.Gid,
		st.Ctim.Sec, st.Ctim.Nsec, b, x[:max(n, 0)]), nil
}

func (x *Executor) listInterleaved(op Op) (string, error) {
	list := func() ([]string, error) {
		var names []string
		err := x.withFile(op.Path, unix.O_RDONLY|unix.O_DIRECTORY, func(fd int) error {
			ents, err := readDirents(fd)
			for _, e := range ents {
				names = append(names, e.name)
			}
			return err
		})
		return names, err
	}
	dfd, err := x.open(op.Path, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return "", err
	}
	for i := range op.Count {
		fd, err := unix.Openat(dfd, manyName(int(op.Len), i), unix.O_CREAT|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
		if err != nil {
			unix.Close(dfd)
			return "", err
		}
		unix.Close(fd)
	}
	unix.Close(dfd)
	fd, err := x.open(op.Path, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	seen := map[string]int{}
	// A small buffer: a few names per getdents, so the listing goes on
	// from an offset the mount handed out before the changes.
	buf := make([]byte, 128)
	read := func(atLeast int) error {
		for n := 0; atLeast < 0 || n < atLeast; {
			m, err := unix.Getdents(fd, buf)
			if err != nil || m == 0 {
				return err
			}
			ParseDirents(buf[:m], func(name string, _ uint64, _ byte) {
				seen[name]++
				n++
			})
		}
		return nil
	}
	// Half of the names, as far as the changes leave them (no listing
	// first: a mount may serve a second one from what it cached).
	if err := read(op.Count/2 + 4); err != nil {
		return "", fmt.Errorf("first part: %w", err)
	}
	// The changes' results, each with how many times it came in a row.
	var subs []string
	last, times := "", 0
	for i, s := range op.Sub {
		res := x.Run(s).String()
		if i > 0 && res != last {
			subs = append(subs, fmt.Sprintf("%s x%d", last, times))
			times = 0
		}
		last = res
		times++
	}
	if times > 0 {
		subs = append(subs, fmt.Sprintf("%s x%d", last, times))
	}
	if err := read(-1); err != nil {
		return "", fmt.Errorf("after %d names and the changes: %w", len(seen), err)
	}
	after, err := list()
	if err != nil {
		return "", err
	}
	// Present throughout: there after the changes, and none of them.
	touched := map[string]bool{}
	for _, s := range op.Sub {
		touched[path.Base(s.Path)], touched[path.Base(s.Path2)] = true, true
	}
	var wrong []string
	for _, n := range after {
		if !touched[n] && seen[n] != 1 {
			wrong = append(wrong, fmt.Sprintf("%s read %d times", n, seen[n]))
		}
	}
	sort.Strings(wrong)
	verdict := "every name present throughout read once"
	if len(wrong) > 0 {
		verdict = strings.Join(wrong, ", ")
	}
	return strings.Join(subs, ", ") + "; " + verdict, nil
}
