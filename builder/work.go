package builder

import (
	"context"
	"errors"
	"io/fs"
	"os"

	"github.com/ovl-dev/ovl/internal/idmap"
	"github.com/ovl-dev/ovl/layer"
	"github.com/ovl-dev/ovl/vagga"
)

// job is one piece of the builder's work on layer contents: a file step,
// flattening, cloning a root, removing or measuring a tree. work runs it
// where the owners of those contents are mapped (mapped.go): in this
// process, or in the mapped helper, with the same code (job.run). Exactly
// one field but Progress is set; the type crosses to the helper as JSON.
type job struct {
	Flatten  *flattenJob  `json:",omitempty"`
	Clone    *cloneJob    `json:",omitempty"`
	FileStep *fileStepJob `json:",omitempty"`
	CopyMeta *cloneJob    `json:",omitempty"` // layer.CopyMetadata(Src, Dst)
	Remove   string       `json:",omitempty"` // the tree to remove
	Usage    string       `json:",omitempty"` // the tree to measure (diskUsage)
	Empty    string       `json:",omitempty"` // the directory to look into (dirEmpty)
	Mkdir    *mkdirJob    `json:",omitempty"`
	// Progress asks for the progress of long copies.
	Progress bool `json:",omitempty"`
}

// jobResult is what a job found out.
type jobResult struct {
	Bytes int64            `json:",omitempty"` // Usage
	Empty bool             `json:",omitempty"` // Empty
	Clone layer.CloneStats `json:",omitempty"` // Clone
}

// flattenJob is flattenLayers's arguments.
type flattenJob struct {
	What   string
	Lowers []string
	Dst    string
}

// mkdirJob makes the directory Path (0755), owned by UID:GID of a
// container (a persistent volume).
type mkdirJob struct {
	Path     string
	UID, GID int
	Owners   owners
}

func (j *mkdirJob) run() error {
	if err := os.Mkdir(j.Path, 0o755); err != nil {
		return err
	}
	u, g, keep, err := j.Owners.chownIDs(j.UID, j.GID)
	if err != nil || !keep {
		return err
	}
	return os.Lchown(j.Path, u, g)
}

// cloneJob names a source and a destination tree.
type cloneJob struct{ Src, Dst string }

// fileStepJob applies a file step to the layer Upper over Lowers (top
// first), reading the project in Project, giving files owners as Owners
// says, keeping overlay xattrs (whiteouts where a 0/0 device cannot be
// made) in Namespace.
type fileStepJob struct {
	Upper     string
	Lowers    []string
	Project   string
	Owners    owners
	Namespace layer.Namespace
	Step      stepMsg
}

// run does the job here.
func (j *job) run(ctx context.Context, progress progressFunc) (jobResult, error) {
	var res jobResult
	var err error
	switch {
	case j.Flatten != nil:
		err = flattenLayers(ctx, j.Flatten.What, j.Flatten.Lowers, j.Flatten.Dst, progress)
	case j.Clone != nil:
		res.Clone, err = layer.CloneTree(ctx, j.Clone.Src, j.Clone.Dst)
	case j.FileStep != nil:
		fs := j.FileStep
		w := newWriter(fs.Upper, fs.Lowers, fs.Owners, fs.Namespace)
		switch {
		case fs.Step.Base:
			if err = applyBase(w); err == nil {
				err = reproducibleTimes(fs.Upper)
			}
		case fs.Step.Finish != nil:
			if err = applyFinish(w, *fs.Step.Finish); err == nil {
				err = reproducibleTimes(fs.Upper)
			}
		default:
			err = applyFileStep(w, fs.Project, fs.Step.step(), progress)
		}
	case j.CopyMeta != nil:
		err = layer.CopyMetadata(j.CopyMeta.Src, j.CopyMeta.Dst)
	case j.Remove != "":
		err = removeAll(j.Remove)
	case j.Usage != "":
		res.Bytes = diskUsage(j.Usage)
	case j.Empty != "":
		res.Empty, err = dirEmpty(j.Empty)
	case j.Mkdir != nil:
		err = j.Mkdir.run()
	default:
		err = errors.New("empty job")
	}
	return res, err
}

// work runs j where the owners of layer contents are mapped: in the
// mapped helper for an ordinary user with subordinate ids, here
// otherwise. progress, when set, follows long copies.
func work(ctx context.Context, j job, progress progressFunc) (jobResult, error) {
	if space().mode != mappedIDs {
		return j.run(ctx, progress)
	}
	j.Progress = progress != nil
	return theHelper.do(ctx, j, progress)
}

// The jobs, as the builder calls them.

func (b *Builder) flatten(ctx context.Context, what string, lowers []string, dst string) error {
	_, err := work(ctx, job{Flatten: &flattenJob{What: what, Lowers: lowers, Dst: dst}}, b.progressFunc())
	return err
}

func cloneTree(ctx context.Context, src, dst string) (layer.CloneStats, error) {
	res, err := work(ctx, job{Clone: &cloneJob{Src: src, Dst: dst}}, nil)
	return res.Clone, err
}

func copyMetadata(src, dst string) error {
	_, err := work(context.Background(), job{CopyMeta: &cloneJob{Src: src, Dst: dst}}, nil)
	return err
}

// removeTree removes the tree p, as removeAll does where its owners are
// mapped.
func removeTree(p string) error {
	_, err := work(context.Background(), job{Remove: p}, nil)
	return err
}

// treeUsage is diskUsage where the owners of p are mapped.
func treeUsage(p string) int64 {
	res, _ := work(context.Background(), job{Usage: p}, nil)
	return res.Bytes
}

// treeEmpty is dirEmpty where the owners of p are mapped.
func treeEmpty(p string) (bool, error) {
	res, err := work(context.Background(), job{Empty: p}, nil)
	return res.Empty, err
}

// stepMsg carries a file step to the helper. vagga's step types leave
// their host paths out of their JSON (a step's key hashes it as
// written), so the host path travels beside the step.
type stepMsg struct {
	Text      *vagga.TextStep      `json:",omitempty"`
	Copy      *vagga.CopyStep      `json:",omitempty"`
	Remove    *vagga.RemoveStep    `json:",omitempty"`
	EnsureDir *vagga.EnsureDirStep `json:",omitempty"`
	EmptyDir  *vagga.EmptyDirStep  `json:",omitempty"`
	Tar       *vagga.TarStep       `json:",omitempty"`
	CacheDirs *vagga.CacheDirsStep `json:",omitempty"`
	Build     *vagga.BuildStep     `json:",omitempty"`
	// HostPath is Copy's HostSource, Tar's HostFile, or the root of
	// Build's container.
	HostPath string `json:",omitempty"`
	// Base and Finish are the layers under and over a container's steps
	// (finish.go); they are not steps of vagga.yaml.
	Base   bool        `json:",omitempty"`
	Finish *finishSpec `json:",omitempty"`
}

// newStepMsg wraps the file step s; ok is false for a step that changes
// no file (!Env, !Depends, !Container).
func newStepMsg(s vagga.Step) (m stepMsg, ok bool) {
	switch s := s.(type) {
	case *vagga.TextStep:
		m.Text = s
	case *vagga.CopyStep:
		m.Copy, m.HostPath = s, s.HostSource
	case *vagga.RemoveStep:
		m.Remove = s
	case *vagga.EnsureDirStep:
		m.EnsureDir = s
	case *vagga.EmptyDirStep:
		m.EmptyDir = s
	case *vagga.TarStep:
		m.Tar, m.HostPath = s, s.HostFile
	case *vagga.CacheDirsStep:
		m.CacheDirs = s
	case *vagga.BuildStep:
		m.Build, m.HostPath = s, s.HostRoot
	default:
		return m, false
	}
	return m, true
}

// step returns the step m carries, with its host path.
func (m stepMsg) step() vagga.Step {
	switch {
	case m.Text != nil:
		return m.Text
	case m.Copy != nil:
		m.Copy.HostSource = m.HostPath
		return m.Copy
	case m.Remove != nil:
		return m.Remove
	case m.EnsureDir != nil:
		return m.EnsureDir
	case m.EmptyDir != nil:
		return m.EmptyDir
	case m.Tar != nil:
		m.Tar.HostFile = m.HostPath
		return m.Tar
	case m.CacheDirs != nil:
		return m.CacheDirs
	case m.Build != nil:
		m.Build.HostRoot = m.HostPath
		return m.Build
	}
	return nil
}

// jobError is an error of a job done in the helper, as it crosses back:
// its message, and which of the sentinels below it matched, so that
// errors.Is answers on this side as it did on the other.
type jobError struct {
	Msg string
	Is  []string `json:",omitempty"`
}

// jobSentinels are the errors callers of jobs test for.
var jobSentinels = map[string]error{
	"path": ErrPath, "outside-project": ErrOutsideProject, "unmapped": idmap.ErrUnmapped,
	"not-exist": fs.ErrNotExist, "exist": fs.ErrExist, "permission": fs.ErrPermission,
	"canceled": context.Canceled,
}

func newJobError(err error) *jobError {
	if err == nil {
		return nil
	}
	e := &jobError{Msg: err.Error()}
	for name, s := range jobSentinels {
		if errors.Is(err, s) {
			e.Is = append(e.Is, name)
		}
	}
	return e
}

// err returns the error e stands for, or nil.
func (e *jobError) err() error {
	if e == nil {
		return nil
	}
	r := &remoteError{msg: e.Msg}
	for _, name := range e.Is {
		if s, ok := jobSentinels[name]; ok {
			r.is = append(r.is, s)
		}
	}
	return r
}

// remoteError is an error the helper reported.
type remoteError struct {
	msg string
	is  []error
}

func (e *remoteError) Error() string   { return e.msg }
func (e *remoteError) Unwrap() []error { return e.is }
