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

// progress starts following a copy of total bytes, described by what;
// small copies and builders without Options.Progress get a no-op.
func (b *Builder) progress(what string, total int64) Progress {
	if b.opts.Progress == nil || total < minProgressBytes {
		return noProgress{}
	}
	return b.opts.Progress(what, total)
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

// flatten is layer.Flatten of lowers (top first) into dst, applied one
// layer at a time so that a long one can show progress.
func (b *Builder) flatten(ctx context.Context, what string, lowers []string, dst string) error {
	sizes := make([]int64, len(lowers))
	var total int64
	if b.opts.Progress != nil {
		for i, l := range lowers {
			sizes[i] = diskUsage(l)
			total += sizes[i]
		}
	}
	p := b.progress(what, total)
	defer p.Done()
	for i := len(lowers) - 1; i >= 0; i-- {
		if err := layer.Flatten(ctx, lowers[i:i+1], dst); err != nil {
			return err
		}
		p.Add(sizes[i])
	}
	return nil
}
