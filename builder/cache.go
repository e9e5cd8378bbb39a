package builder

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ovl-dev/ovl/vagga"
)

// StepCache is a cache of step layers beyond this project's store,
// such as a registry shared by CI machines (package oci implements it;
// the command line wires it in, so the builder knows no registry).
// Keys are step keys: the same project gives the same keys anywhere.
type StepCache interface {
	// Fetch fills dst, a new empty layer directory, with the layer of
	// step key, and reports whether the cache had it. After an error,
	// or false, the builder discards dst; it commits dst only after
	// Fetch returned true, so the implementation must check what it
	// wrote (a digest) before it returns.
	Fetch(ctx context.Context, key, dst string) (bool, error)
	// Store offers the sealed layer dir of step key to the cache;
	// parent is the key of the step before it ("" for a first step),
	// description says what the step is. It may work in the
	// background; the layer stays unchanged while the build runs.
	Store(ctx context.Context, key, parent, dir, description string) error
}

// pullStep tries Options.Cache for the layer of step s before running
// it: the layer is fetched into a pending layer and committed only if
// the cache vouches for it. A cache that fails gives a warning event
// and false: the step then runs here, the build goes on.
func (b *Builder) pullStep(ctx context.Context, ev Event, key string) bool {
	if !b.cacheUsable(ev) {
		return false
	}
	start := time.Now()
	p, err := b.store.newPending(key)
	if err != nil {
		b.warn(ev, err)
		return false
	}
	ok, err := b.opts.Cache.Fetch(ctx, key, p.Path())
	if err == nil && ok {
		err = p.Commit()
	} else {
		p.Discard()
	}
	if err != nil {
		b.warn(ev, fmt.Errorf("%w; the step runs here instead", err))
		return false
	}
	if !ok {
		return false
	}
	ev.Status, ev.Seconds = StatusPulled, time.Since(start).Seconds()
	b.event(ev)
	return true
}

// offerStep hands the sealed layer of step s (parent: the key before
// it) to Options.Cache.
func (b *Builder) offerStep(ctx context.Context, c *vagga.Container, s step, total int, parent string) {
	ev := stepEvent(c, s, total, s.key, "")
	if !b.cacheUsable(ev) {
		return
	}
	desc := fmt.Sprintf("%s: container %s, step %d/%d %s", s.step.Position(), c.Name, s.index, total, s.step.Summary())
	if err := b.opts.Cache.Store(ctx, s.key, parent, b.store.Layer(s.key), desc); err != nil {
		b.warn(ev, err)
	}
}

// errCacheMappedIDs is why an ordinary user with subordinate ids builds
// without Options.Cache: its layers hold files of those ids, which only
// the mapped helper (mapped.go) may read and chown, and the cache packs
// and unpacks layers in this process: it would lose their owners.
var errCacheMappedIDs = errors.New("the build cache is not used yet by an ordinary user with subordinate ids (the owners in the layers would be lost); every step runs here")

// cacheUsable reports whether Options.Cache is set and this process may
// use it; the first time it may not, it warns once.
func (b *Builder) cacheUsable(ev Event) bool {
	if b.opts.Cache == nil {
		return false
	}
	if space().mode != mappedIDs {
		return true
	}
	b.cacheOff.Do(func() { b.warn(ev, errCacheMappedIDs) })
	return false
}

// warn reports a problem that does not stop the build.
func (b *Builder) warn(ev Event, err error) {
	ev.Status, ev.Detail, ev.Seconds = StatusWarning, err.Error(), 0
	b.event(ev)
}

// parentKey is the key of the step before steps[i] of a container built
// on r's parent: the previous step's, or the parent container's last
// step's (its finish and base layers, finish.go, are not offered).
func parentKey(steps []step, i int, r *Result) string {
	if i > 0 {
		return steps[i-1].key
	}
	if r.parent != nil {
		return r.parent.lastKey
	}
	return ""
}
