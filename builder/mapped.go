package builder

// Owners of layer contents, and where the builder works on them.
//
// A step of an ordinary user's build that gives a file to another owner
// (`chown 100:101 /var/lib/pg && chmod 700 /var/lib/pg`, as every
// database image does) runs in a user namespace with the user's
// subordinate ids mapped (runner, internal/idmap), so the file is stored
// as one of those ids. The user itself cannot read, copy, chown or remove
// such files. Root of a user namespace where they are mapped can. So,
// for such a user, the builder does all its work on layer contents (file
// steps, flattening, cloning roots, squashing, removing layers: the jobs
// of work.go) in a helper process in a namespace with every subordinate
// id mapped (idmap.Full: the user is 0, its subordinate ids 1, 2, … as a
// container with the default uids numbers them), started once per
// process and fed jobs on a pipe; a flattened root then keeps every
// owner, mode and set-id bit a step set, and `ovl clean` removes it all.
// Root, and users without subordinate ids, do the same jobs in process.
// The helper has no more power than the user: it reaches only files the
// user or its subordinate ids own, or that everyone may.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/idmap"
	"github.com/ovl-dev/ovl/internal/reexec"
	"github.com/ovl-dev/ovl/vagga"
)

// idMode is how this process relates to the owners of layer contents.
type idMode int

const (
	// hostIDs: root. The owners a container sets are the ids on disk.
	hostIDs idMode = iota
	// mappedIDs: an ordinary user with subordinate ids. Owners are
	// subordinate ids on disk; the work is done in the mapped helper.
	mappedIDs
	// ownIDs: an ordinary user without subordinate ids. Every file is
	// the user's own; owners a container sets are lost.
	ownIDs
)

// idSpace is the process's idMode, decided once.
type idSpace struct {
	mode idMode
	full *idmap.Map // mappedIDs: the helper's map
	why  error      // ownIDs: why the user's ids cannot be mapped
}

var (
	spaceOnce sync.Once
	theSpace  idSpace
)

// space returns the process's idSpace.
func space() idSpace {
	spaceOnce.Do(func() {
		if os.Geteuid() == 0 {
			return
		}
		full, err := idmap.Full()
		if err != nil {
			theSpace = idSpace{mode: ownIDs, why: err}
			return
		}
		theSpace = idSpace{mode: mappedIDs, full: full}
	})
	return theSpace
}

// owners says what a file step does with the owner it gives a file,
// written in the container's ids: chown to them (root), to the ids they
// have in the helper's namespace (mapped), or keep the builder's own
// (own ids: the owners are lost, as idmap.Warn said at the build's start).
type owners struct {
	Mode      idMode
	Container *idmap.Map `json:",omitempty"` // mappedIDs: the container's map
	Helper    *idmap.Map `json:",omitempty"` // mappedIDs: the chowning process's map
}

// ownersOf returns the owners of container c's file steps. Too few
// subordinate ids for the container's uids or gids is an error.
func ownersOf(c *vagga.Container) (owners, error) {
	sp := space()
	switch sp.mode {
	case mappedIDs:
		m, err := idmap.ForContainer(c.UIDs, c.GIDs)
		if err != nil {
			return owners{}, fmt.Errorf("container %q: %w", c.Name, err)
		}
		return owners{Mode: mappedIDs, Container: m, Helper: sp.full}, nil
	}
	return owners{Mode: sp.mode}, nil
}

// fullOwners are the owners of work shared by every container (the base
// layer): numbered as a container with the default uids and gids.
func fullOwners() owners {
	sp := space()
	if sp.mode == mappedIDs {
		return owners{Mode: mappedIDs, Container: sp.full, Helper: sp.full}
	}
	return owners{Mode: sp.mode}
}

// chownIDs returns the ids to chown a file to so that the container sees
// it owned by uid:gid, and false when owners are not kept (ownIDs).
func (o owners) chownIDs(uid, gid int) (int, int, bool, error) {
	switch o.Mode {
	case hostIDs:
		return uid, gid, true, nil
	case mappedIDs:
		u, g, err := o.Container.Translate(o.Helper, uint32(uid), uint32(gid))
		return int(u), int(g), err == nil, err
	}
	return 0, 0, false, nil
}

// fromLocal returns the container's ids of the ids uid and gid this
// process sees (a file of the project or of a built root whose owner a
// copy keeps): the same for root; translated from the helper's numbering
// to the container's for a mapped user, with ids the container does not
// map becoming 65535, vagga's "nobody"; 0 (the user) for own ids.
func (o owners) fromLocal(uid, gid int) (int, int) {
	switch o.Mode {
	case hostIDs:
		return uid, gid
	case mappedIDs:
		u, g, err := o.Helper.Translate(o.Container, uint32(uid), uint32(gid))
		if err != nil {
			return 65535, 65535
		}
		return int(u), int(g)
	}
	return 0, 0
}

// The mapped helper.

// helperEntry is the re-exec entry of the mapped helper.
const helperEntry = "ovl-build-mapped"

func init() { reexec.Register(helperEntry, helperMain) }

// helperMsg is one message of the helper: the start of a long copy, its
// progress, or the end of the job.
type helperMsg struct {
	Start  *progressStart `json:",omitempty"`
	Add    int64          `json:",omitempty"`
	Done   bool           `json:",omitempty"`
	Result jobResult      `json:",omitempty"`
	Err    *jobError      `json:",omitempty"`
}

// progressStart is the start of a long copy, as Options.Progress gets it.
type progressStart struct {
	What  string
	Total int64
}

// mappedHelper is the client side of the helper process: one per
// process, started at the first job, doing one job at a time.
type mappedHelper struct {
	mu   sync.Mutex
	cmd  *exec.Cmd
	jobs *os.File       // write end of the job pipe
	msgs chan helperMsg // from the helper; closed when it ends
}

var theHelper mappedHelper

// do runs j in the helper, forwarding its progress, and returns its
// result. Cancelling ctx kills the helper; the next job starts another.
func (h *mappedHelper) do(ctx context.Context, j job, progress progressFunc) (jobResult, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cmd == nil {
		if err := h.start(); err != nil {
			return jobResult{}, err
		}
	}
	if err := json.NewEncoder(h.jobs).Encode(j); err != nil {
		h.stop()
		return jobResult{}, fmt.Errorf("send a job to the build helper: %w", err)
	}
	var p Progress = noProgress{}
	defer func() { p.Done() }()
	for {
		select {
		case <-ctx.Done():
			h.stop()
			return jobResult{}, ctx.Err()
		case m, ok := <-h.msgs:
			switch {
			case !ok:
				h.stop()
				return jobResult{}, errors.New("the build helper ended during a job")
			case m.Start != nil:
				p.Done()
				p = startProgress(progress, m.Start.What, m.Start.Total)
			case m.Add != 0:
				p.Add(m.Add)
			case m.Done:
				return m.Result, m.Err.err()
			}
		}
	}
}

// start starts the helper in a user namespace with every subordinate id
// of the user mapped.
func (h *mappedHelper) start() error {
	full := space().full
	jobsR, jobsW, err := os.Pipe()
	if err != nil {
		return err
	}
	msgsR, msgsW, err := os.Pipe()
	if err != nil {
		jobsR.Close()
		jobsW.Close()
		return err
	}
	cmd := reexec.Command(helperEntry)
	cmd.ExtraFiles = []*os.File{jobsR, msgsW}
	cmd.Stderr = os.Stderr
	err = idmap.Start(cmd, full)
	jobsR.Close()
	msgsW.Close()
	if err != nil {
		jobsW.Close()
		msgsR.Close()
		return fmt.Errorf("start the build helper in a user namespace with your subordinate ids (%s): %w", full, err)
	}
	msgs := make(chan helperMsg)
	go func() {
		defer close(msgs)
		defer msgsR.Close()
		dec := json.NewDecoder(msgsR)
		for {
			var m helperMsg
			if dec.Decode(&m) != nil {
				return
			}
			msgs <- m
		}
	}()
	h.cmd, h.jobs, h.msgs = cmd, jobsW, msgs
	return nil
}

// stop kills the helper and waits for it.
func (h *mappedHelper) stop() {
	h.jobs.Close()
	h.cmd.Process.Kill()
	for range h.msgs {
	}
	h.cmd.Wait()
	h.cmd, h.jobs, h.msgs = nil, nil, nil
}

// Descriptors of the helper: jobs in, messages out.
const (
	helperJobsFD = 3
	helperMsgsFD = 4
)

// helperMain is the helper process: root of a user namespace with the
// user's subordinate ids mapped, doing the jobs it reads one at a time.
// It ends when the job pipe does: when the builder's process ends,
// however it ends.
func helperMain() {
	idmap.Mapped(helperEntry)
	unix.CloseOnExec(helperJobsFD) // not for the xz or zstd a !Tar runs
	unix.CloseOnExec(helperMsgsFD)
	jobs := make(chan job)
	go func() {
		dec := json.NewDecoder(os.NewFile(helperJobsFD, "jobs"))
		for {
			var j job
			if err := dec.Decode(&j); err != nil {
				os.Exit(0) // the builder is gone: so is its job
			}
			jobs <- j
		}
	}()
	enc := json.NewEncoder(os.NewFile(helperMsgsFD, "messages"))
	for j := range jobs {
		var progress progressFunc
		if j.Progress {
			progress = func(what string, total int64) Progress {
				enc.Encode(helperMsg{Start: &progressStart{what, total}})
				return helperProgress{enc}
			}
		}
		res, err := j.run(context.Background(), progress)
		if err := enc.Encode(helperMsg{Done: true, Result: res, Err: newJobError(err)}); err != nil {
			os.Exit(1)
		}
	}
}

// helperProgress sends a long copy's progress to the builder.
type helperProgress struct{ enc *json.Encoder }

func (p helperProgress) Add(n int64) { p.enc.Encode(helperMsg{Add: n}) }
func (p helperProgress) Done()       {}
