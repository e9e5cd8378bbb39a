package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/internal/idmap"
	"github.com/ovl-dev/ovl/selector"
	"github.com/ovl-dev/ovl/vagga"
)

// Options control a Builder.
type Options struct {
	// OneLayer writes all steps of a container into one layer, as vagga
	// does (--cache-each-step=false): a failure starts the container
	// over. By default every step's changes are a sealed layer of their
	// own, so a failed build continues at the failed step; the README
	// says why that is the default.
	OneLayer bool
	// Force rebuilds the steps of the containers Build is called for,
	// even if their layers exist (not their parents').
	Force bool
	// Decision is the selector's choice command steps are mounted with;
	// its MaxLayers decides when old layers are squashed (0: no limit).
	Decision selector.Decision
	// Run runs command steps; nil fails them.
	Run RunFunc
	// Events receives progress; nil ignores it.
	Events func(Event)
	// Output receives the output of command steps; nil discards it.
	Output io.Writer
	// NoRoot skips writing the plain root directory.
	NoRoot bool
	// Progress, when set, follows long copies (32 MiB and more): the
	// command line draws a progress bar with it on a terminal.
	Progress func(what string, total int64) Progress
	// ConfigArg is the config file given on the command line (-f), if
	// any: hints that say what to run repeat it.
	ConfigArg string
	// NoVersionCheck makes Build return the root .vagga/NAME points at,
	// whatever the config says now (vagga's --no-version-check).
	NoVersionCheck bool
	// Cache, when set, is asked for a step's layer before the step runs,
	// and given every step's layer (cache.go). Not with OneLayer.
	Cache StepCache
}

// Result is a built container.
type Result struct {
	Container string
	// Key is the container's key: the key of its last step.
	Key string
	// Layers is the container's stack, top first, squashed to fit the
	// backend, without empty layers.
	Layers []string
	// Root is the plain directory with the flattened container
	// (.vagga/.roots/NAME.HASH8/root); "" with NoRoot.
	Root string
	// BuildEnv is NAME=value of the !Env steps, parents' first.
	BuildEnv []string
	// Ran counts the steps that ran (were not cached) in this build.
	Ran int
	// Pulled counts the steps whose layer came from Options.Cache.
	Pulled int
	// UIDs and GIDs are the container's id ranges (vagga's uids and
	// gids; nil: the default), for runner.Config.
	UIDs, GIDs []idmap.Range

	keys    []string // the stack's layer keys, bottom first, unsquashed
	lastKey string   // the key of the last step (Key is the finish's)
	planned []string // stackOf: the keys of the container's own steps
	force   bool     // rebuild this container's steps even if cached
	parent  *Result  // the container of a !Container step, built first
	env     []vagga.EnvVar
}

// Builder builds the containers of one vagga.yaml. It is safe for
// concurrent use; each container is built at most once per Builder.
type Builder struct {
	cfg    *vagga.Config
	store  *Store
	opts   Options
	hashes *fileHashes

	mu    sync.Mutex
	built map[string]*Result

	cacheOff sync.Once // the warning that Options.Cache cannot be used (cache.go)
}

// shellRequest asks build for a shell before a step instead of a build.
type shellRequest struct {
	before         int // 1-based step number
	stdin          io.Reader
	stdout, stderr io.Writer
}

// New returns a Builder for cfg with the project's store.
func New(cfg *vagga.Config, opts Options) *Builder {
	s := NewStore(cfg.Dir)
	return &Builder{cfg: cfg, store: s, opts: opts, built: map[string]*Result{},
		hashes: loadFileHashes(cfg.Dir, filepath.Join(s.layersDir(), ".file-hashes.json"))}
}

// Store returns the builder's layer store.
func (b *Builder) Store() *Store { return b.store }

func (b *Builder) event(e Event) {
	if b.opts.Events != nil {
		b.opts.Events(e)
	}
}

// step is one planned step: what it is and its key.
type step struct {
	index int // 1-based
	step  vagga.Step
	key   string
}

// plan computes the keys of every step of c on top of parent. It reads
// the project files steps depend on, and nothing else; an error here
// means nothing was built.
func (b *Builder) plan(c *vagga.Container, parent *Result, source func(name string) (*Result, error)) ([]step, error) {
	prev := baseKey
	if parent != nil {
		prev = parent.Key
	}
	steps := make([]step, len(c.Setup))
	for i, s := range c.Setup {
		var key string
		if _, ok := s.(*vagga.ContainerStep); ok {
			key = containerStepKey(prev)
		} else {
			k, err := stepKey(prev, s, b.hashes)
			if err == nil {
				k, err = buildStepKey(k, s, source)
			}
			if err != nil {
				var se *StepError
				if errors.As(err, &se) {
					se.Container, se.Index, se.Total = c.Name, i+1, len(c.Setup)
				}
				return nil, err
			}
			key = k
		}
		steps[i] = step{index: i + 1, step: s, key: key}
		prev = key
	}
	return steps, nil
}

// buildStepKey adds to the key k of a !Build step the key of the
// container it takes files from, which source returns (built, as vagga
// builds it first: the step is versioned by that container's version).
func buildStepKey(k string, s vagga.Step, source func(name string) (*Result, error)) (string, error) {
	bs, ok := s.(*vagga.BuildStep)
	if !ok {
		return k, nil
	}
	src, err := source(bs.Container)
	if err != nil {
		return "", err
	}
	if src.Root != "" {
		bs.HostRoot = src.Root
	}
	return hashStrings(k, "build-from", src.Key), nil
}

// Build builds container name (and the container it is built on), reusing
// every step whose layer exists, and writes its plain root.
func (b *Builder) Build(ctx context.Context, name string) (*Result, error) {
	if b.opts.NoVersionCheck {
		return b.lastBuilt(name)
	}
	if err := b.cfg.Check(name); err != nil {
		return nil, err
	}
	return b.build(ctx, name, nil, b.opts.Force)
}

// lastBuilt is the root .vagga/NAME points at, as it is (vagga's
// --no-version-check): nothing is planned, built or checked.
func (b *Builder) lastBuilt(name string) (*Result, error) {
	c, ok := b.cfg.Containers[name]
	if !ok {
		return nil, fmt.Errorf("%w %q in %s (it has: %s)", ErrNoContainer, name, b.cfg.File, strings.Join(b.cfg.ContainerNames(), ", "))
	}
	link := filepath.Join(b.store.Dir, name)
	root, err := filepath.EvalSymlinks(link)
	if err != nil || !dirExists(root) {
		return nil, fmt.Errorf("container %q was never built (%s: %v): build it, or leave out --no-version-check", name, link, err)
	}
	return &Result{Container: name, Root: root, UIDs: c.UIDs, GIDs: c.GIDs}, nil
}

func (b *Builder) build(ctx context.Context, name string, shell *shellRequest, force bool) (*Result, error) {
	b.mu.Lock()
	if r, ok := b.built[name]; ok && shell == nil {
		b.mu.Unlock()
		return r, nil
	}
	b.mu.Unlock()
	c, ok := b.cfg.Containers[name]
	if !ok {
		return nil, fmt.Errorf("%w %q in %s (it has: %s)", ErrNoContainer, name, b.cfg.File, strings.Join(b.cfg.ContainerNames(), ", "))
	}
	var parent *Result
	if p := c.Parent(); p != "" {
		var err error
		if parent, err = b.build(ctx, p, nil, false); err != nil {
			return nil, err
		}
	}
	steps, err := b.plan(c, parent, func(name string) (*Result, error) { return b.build(ctx, name, nil, false) })
	if err != nil {
		return nil, err
	}
	defer b.hashes.save()
	unlock, err := b.store.lockContainer(name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := b.store.makePrivate(); err != nil {
		return nil, err
	}
	if sp := space(); sp.mode == ownIDs {
		idmap.Warn(sp.why)
	}

	r := &Result{Container: name, force: force, parent: parent, UIDs: c.UIDs, GIDs: c.GIDs}
	lastKey := baseKey
	if parent != nil {
		r.keys = append(r.keys, parent.keys...)
		r.env = append(r.env, parent.env...)
		lastKey = parent.Key
	} else if err := b.internalLayer(ctx, baseKey, r, stepMsg{Base: true}, fullOwners()); err != nil {
		return nil, fmt.Errorf("container %q: the base directories: %w", name, err)
	}
	if len(steps) > 0 {
		lastKey = steps[len(steps)-1].key
	}
	r.Key, r.lastKey = lastKey, lastKey
	if shell != nil {
		return nil, b.shell(ctx, c, steps, r, shell)
	}
	if !b.opts.OneLayer {
		err = b.buildEachStep(ctx, c, steps, r)
	} else {
		err = b.buildShared(ctx, c, steps, r)
	}
	if err != nil {
		return nil, err
	}
	finish := finishOf(b.cfg, c)
	r.Key = finishKey(lastKey, finish)
	o, err := ownersOf(c)
	if err != nil {
		return nil, err
	}
	if err := b.internalLayer(ctx, r.Key, r, stepMsg{Finish: &finish}, o); err != nil {
		return nil, &StepError{Container: name, Pos: c.Pos, Step: "the end of the build (vagga's !Remove, !EmptyDir, !EnsureDir, data-dirs)",
			Err: fmt.Errorf("%w: %w", ErrStepFailed, err), Hint: "fix the steps in " + b.cfg.File + ", then build again"}
	}
	if r.Layers, err = b.fit(ctx, name, r.keys); err != nil {
		return nil, err
	}
	r.BuildEnv = sortedEnv(r.env)
	if !b.opts.NoRoot {
		if r.Root, err = b.writeRoot(ctx, r); err != nil {
			return nil, err
		}
		if c.AutoClean {
			if err := b.store.removeOtherRoots(name, r.Key); err != nil {
				return nil, fmt.Errorf("container %q, auto-clean: %w", name, err)
			}
		}
	}
	b.mu.Lock()
	b.built[name] = r
	b.mu.Unlock()
	return r, nil
}

// buildEachStep gives every step a layer of its own.
func (b *Builder) buildEachStep(ctx context.Context, c *vagga.Container, steps []step, r *Result) error {
	return b.buildSteps(ctx, c, steps, len(steps), r)
}

// buildSteps builds steps, the first of the total steps of c.
func (b *Builder) buildSteps(ctx context.Context, c *vagga.Container, steps []step, total int, r *Result) error {
	for i, s := range steps {
		r.addEnv(s.step)
		if b.store.Has(s.key) && !r.force {
			b.event(stepEvent(c, s, total, s.key, StatusCached))
		} else if !r.force && b.pullStep(ctx, stepEvent(c, s, total, s.key, ""), s.key) {
			r.Pulled++
		} else {
			p, err := b.newLayer(s.key, r.keys)
			if err != nil {
				return err
			}
			if err := b.runInto(ctx, c, s, total, s.key, r, p, func() error { return b.seal(s.key, r, p) }); err != nil {
				return err
			}
		}
		b.offerStep(ctx, c, s, total, parentKey(steps, i, r))
		if err := b.stack(s.key, r); err != nil {
			return err
		}
	}
	return nil
}

// stepEvent is the event of step s (of total) of c, whose changes go to
// layer key, with status st.
func stepEvent(c *vagga.Container, s step, total int, key string, st Status) Event {
	return Event{Container: c.Name, Index: s.index, Total: total, Step: s.step.Summary(), Pos: s.step.Position(), Key: key, Status: st}
}

// addEnv takes the variables of an !Env step into the build environment.
func (r *Result) addEnv(s vagga.Step) {
	if env, ok := s.(*vagga.EnvStep); ok {
		r.env = append(r.env, env.Vars...)
	}
}

// runInto runs step s (of total) of c into the pending layer p (key
// key), reporting it running, then failed or done: done once then,
// when not nil, has succeeded (the step's own layer sealed). A failure
// discards p and returns the StepError.
func (b *Builder) runInto(ctx context.Context, c *vagga.Container, s step, total int, key string, r *Result, p *pending, then func() error) error {
	start := time.Now()
	ev := stepEvent(c, s, total, key, StatusRunning)
	b.event(ev)
	if err := b.runStep(ctx, c, s, r, p.Path()); err != nil {
		p.Discard()
		ev.Status, ev.Seconds = StatusFailed, time.Since(start).Seconds()
		b.event(ev)
		return b.stepError(c, s, total, err)
	}
	if then != nil {
		if err := then(); err != nil {
			return err
		}
	}
	r.Ran++
	ev.Status, ev.Seconds = StatusDone, time.Since(start).Seconds()
	b.event(ev)
	return nil
}

// seal commits p as the layer key, in place of the layer a forced
// rebuild made again.
func (b *Builder) seal(key string, r *Result, p *pending) error {
	if r.force && b.store.Has(key) {
		if err := removeTree(filepath.Dir(b.store.Layer(key))); err != nil {
			p.Discard()
			return err
		}
	}
	return p.Commit()
}

// stack puts the layer key on r's stack, unless it changes nothing over
// it (see emptyOver).
func (b *Builder) stack(key string, r *Result) error {
	empty, err := b.emptyOver(key, r.keys)
	if err != nil {
		return err
	}
	if !empty {
		r.keys = append(r.keys, key)
	}
	return nil
}

// internalLayer makes sure the layer key, which msg writes (the base or
// a finish), exists over r's stack, and puts it on the stack unless it
// is empty. A forced build writes its finish again.
func (b *Builder) internalLayer(ctx context.Context, key string, r *Result, msg stepMsg, o owners) error {
	if !b.store.Has(key) || (r.force && msg.Finish != nil) {
		p, err := b.newLayer(key, r.keys)
		if err != nil {
			return err
		}
		fs := &fileStepJob{Upper: p.Path(), Lowers: b.layerDirs(r.keys), Project: b.cfg.Dir, Owners: o, Namespace: b.opts.Decision.Namespace, Step: msg}
		if _, err := work(ctx, job{FileStep: fs}, nil); err != nil {
			p.Discard()
			return err
		}
		if err := b.seal(key, r, p); err != nil {
			return err
		}
	}
	return b.stack(key, r)
}

// layerDirs are the directories of the layers keys (bottom first), top
// first, as a union lists them.
func (b *Builder) layerDirs(keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[len(keys)-1-i] = b.store.Layer(k)
	}
	return out
}

// newLayer starts the layer key over the stack below (bottom first). Its
// root takes the metadata of the top layer's root: the merged root shows
// the top layer's mode and owner, so a step that does not change them
// must not either.
func (b *Builder) newLayer(key string, below []string) (*pending, error) {
	p, err := b.store.newPending(key)
	if err != nil || len(below) == 0 {
		return p, err
	}
	if err := copyMetadata(b.store.Layer(below[len(below)-1]), p.Path()); err != nil {
		p.Discard()
		return nil, fmt.Errorf("start layer %s: %w", key, err)
	}
	return p, nil
}

// emptyOver reports whether the complete layer key changes nothing over
// the stack below it (bottom first): no entries, and a root with the
// mode and owner of the top layer's root (a `chmod 700 /` leaves only
// the root changed). Empty layers stay in the store as markers that the
// step ran, and are left out of mounted stacks.
func (b *Builder) emptyOver(key string, below []string) (bool, error) {
	empty, err := b.store.Empty(key)
	if err != nil || !empty || len(below) == 0 {
		return empty, err
	}
	var a, top unix.Stat_t
	if err := unix.Lstat(b.store.Layer(key), &a); err != nil {
		return false, err
	}
	if err := unix.Lstat(b.store.Layer(below[len(below)-1]), &top); err != nil {
		return false, err
	}
	return a.Mode == top.Mode && a.Uid == top.Uid && a.Gid == top.Gid, nil
}

// sharedKey is the key of the one layer all steps of a container share
// without --cache-each-step.
func sharedKey(containerKey string) string { return hashStrings(keyVersion, "shared", containerKey) }

// buildShared writes all steps of c into one layer, as vagga does: it is
// reused only whole, and a failed step discards it.
func (b *Builder) buildShared(ctx context.Context, c *vagga.Container, steps []step, r *Result) error {
	own := steps
	if len(own) > 0 {
		if _, ok := own[0].step.(*vagga.ContainerStep); ok {
			own = own[1:]
		}
	}
	if len(own) == 0 {
		return nil
	}
	key := sharedKey(r.lastKey)
	if b.store.Has(key) && !r.force {
		for _, s := range steps {
			r.addEnv(s.step)
			b.event(stepEvent(c, s, len(steps), key, StatusCached))
		}
	} else {
		p, err := b.newLayer(key, r.keys)
		if err != nil {
			return err
		}
		for _, s := range steps {
			r.addEnv(s.step)
			if err := b.runInto(ctx, c, s, len(steps), key, r, p, nil); err != nil {
				return err
			}
		}
		if err := b.seal(key, r, p); err != nil {
			return err
		}
	}
	return b.stack(key, r)
}
