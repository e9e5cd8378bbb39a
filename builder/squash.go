package builder

import (
	"context"
	"fmt"
	"time"
)

// fit returns the stack of layers keys (bottom first) as paths, top
// first, mountable by the backend: when there are more than its
// MaxLayers, the oldest layers are squashed into one.
//
// Squashing goes in fixed chunks of half the limit counted from the
// bottom, and squash i holds everything up to chunk i (it is the flatten
// of chunk i over squash i-1). The chunks depend only on the stack, so
// the next step, and the next build, find the same squash layers in the
// store instead of making new ones; and a bottom layer has nothing below
// it, so flattening it (which drops whiteouts) keeps the tree the same.
func (b *Builder) fit(ctx context.Context, container string, keys []string) ([]string, error) {
	max := b.opts.Decision.MaxLayers
	paths := b.layerDirs
	chunks := squashChunks(keys, max)
	if chunks == nil {
		return paths(keys), nil
	}
	prev := ""
	for _, sq := range chunks {
		if !b.store.Has(sq.key) {
			start := time.Now()
			lowers := paths(sq.part)
			if prev != "" {
				lowers = append(lowers, b.store.Layer(prev))
			}
			p, err := b.store.newPending(sq.key)
			if err != nil {
				return nil, err
			}
			if err := b.flatten(ctx, "squash "+container, lowers, p.Path()); err != nil {
				p.Discard()
				return nil, fmt.Errorf("squash layers %d to %d of %s: %w", sq.from+1, sq.to, container, err)
			}
			if err := p.Commit(); err != nil {
				return nil, err
			}
			b.event(Event{Container: container, Status: StatusSquash, Key: sq.key, Seconds: time.Since(start).Seconds(),
				Detail: fmt.Sprintf("%d layers into one (the backend mounts at most %d)", sq.to, max)})
		}
		prev = sq.key
	}
	last := chunks[len(chunks)-1]
	return append(paths(keys[last.to:]), b.store.Layer(last.key)), nil
}

// squash is one squash layer: layers [from, to) of a stack (bottom
// first) flattened over the squash before it, which holds [0, from).
type squash struct {
	key      string
	from, to int
	part     []string
}

// squashChunks returns the squash layers a stack of keys (bottom first)
// needs to fit max layers, oldest first; nil if it fits.
func squashChunks(keys []string, max int) []squash {
	n := len(keys)
	if max <= 0 || n <= max {
		return nil
	}
	chunk := max / 2
	if chunk < 1 {
		chunk = 1
	}
	// The fewest chunks m such that the squash plus the rest fit.
	m := (n + 1 - max + chunk - 1) / chunk
	var out []squash
	prev := ""
	for i := 0; i < m; i++ {
		part := keys[i*chunk : (i+1)*chunk]
		key := hashStrings(append([]string{keyVersion, "squash", prev}, part...)...)
		out = append(out, squash{key: key, from: i * chunk, to: (i + 1) * chunk, part: part})
		prev = key
	}
	return out
}
