package builder

import (
	"context"

	"github.com/ovl-dev/ovl/layer"
)

// Progress follows one long copy (unpacking a tarball, copying a project
// directory, squashing layers, flattening the root) in bytes.
type Progress interface {
	// Add reports n more bytes done.
	Add(n int64)
	// Done ends the copy, whether it worked or not.
	Done()
}

// minProgressBytes is the smallest copy worth a progress bar.
const minProgressBytes = 32 << 20

type noProgress struct{}

func (noProgress) Add(int64) {}
func (noProgress) Done()     {}

// progressFunc starts following a long copy, as Options.Progress; nil
// when nobody follows.
type progressFunc func(what string, total int64) Progress

// startProgress is progress(what, total), or a no-op when nobody follows
// or the copy is too small to show.
func startProgress(progress progressFunc, what string, total int64) Progress {
	if progress == nil || total < minProgressBytes {
		return noProgress{}
	}
	return progress(what, total)
}

// progressFunc is Options.Progress for jobs: nil when nobody follows.
func (b *Builder) progressFunc() progressFunc {
	if b.opts.Progress == nil {
		return nil
	}
	return b.opts.Progress
}

// countingReader reports the bytes read through it to a Progress.
type countingReader struct {
	r interface{ Read([]byte) (int, error) }
	p Progress
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.p.Add(int64(n))
	return n, err
}

// flattenLayers is layer.Flatten of lowers (top first) into dst,
// applied one layer at a time so that a long one can show progress.
func flattenLayers(ctx context.Context, what string, lowers []string, dst string, progress progressFunc) error {
	sizes := make([]int64, len(lowers))
	var total int64
	if progress != nil {
		for i, l := range lowers {
			sizes[i] = diskUsage(l)
			total += sizes[i]
		}
	}
	p := startProgress(progress, what, total)
	defer p.Done()
	for i := len(lowers) - 1; i >= 0; i-- {
		if err := layer.Flatten(ctx, lowers[i:i+1], dst); err != nil {
			return err
		}
		p.Add(sizes[i])
	}
	return nil
}
