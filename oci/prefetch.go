package oci

import (
	"context"
	"errors"
	"io"
	"os"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
)

// Downloads in parallel: the builder asks for one step at a time, but
// the index says which steps follow a step (their parent key). When a
// step is pulled, the blobs of the steps after it (up to Jobs of them,
// breadth first) are downloaded in the background into files under
// TmpDir, checked against their digests; Fetch then unpacks from the
// file, or waits for a download under way instead of starting another.
// Flush stops the downloads and removes the files no step used.

// prefetch is one background download.
type prefetch struct {
	done chan struct{}
	path string // the blob, once done without err
	err  error
}

// children maps each step key of entries to the entries whose parent
// it is.
func children(entries []ocispec.Descriptor) map[string][]ocispec.Descriptor {
	m := map[string][]ocispec.Descriptor{}
	for _, d := range entries {
		p := d.Annotations[AnnotationParent]
		m[p] = append(m[p], d)
	}
	return m
}

// prefetchAfter starts downloading the blobs of the steps that follow
// key in s's index, up to Jobs not yet started.
func (c *Cache) prefetchAfter(s *cacheSource, key string) {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	if c.pctx == nil {
		c.pctx, c.pcancel = context.WithCancel(context.Background())
		c.pre = map[digest.Digest]*prefetch{}
	}
	started := 0
	queue := append([]ocispec.Descriptor(nil), s.children[key]...)
	for len(queue) > 0 && started < c.o.Jobs {
		d := queue[0]
		queue = append(queue[1:], s.children[d.Annotations[AnnotationKey]]...)
		if _, ok := c.pre[d.Digest]; ok {
			continue
		}
		p := &prefetch{done: make(chan struct{})}
		c.pre[d.Digest] = p
		started++
		c.pwg.Add(1)
		go func() {
			defer c.pwg.Done()
			defer close(p.done)
			p.path, p.err = c.download(c.pctx, s, d)
		}()
	}
}

// download writes the blob d of s into a new file under TmpDir, checked
// against its digest, and returns its path.
func (c *Cache) download(ctx context.Context, s *cacheSource, d ocispec.Descriptor) (string, error) {
	w := newWatchdog(ctx, c.o.Remote.timeout())
	defer w.stop()
	rc, err := s.repo.Fetch(w.ctx, d)
	if err != nil {
		return "", orStall(w, err)
	}
	defer rc.Close()
	f, err := os.CreateTemp(c.o.TmpDir, tmpName("prefetch"))
	if err != nil {
		return "", err
	}
	vr := content.NewVerifyReader(w.reader(&resumingReader{r: rc}), d)
	_, err = io.Copy(f, vr)
	if err == nil {
		err = vr.Verify()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", orStall(w, err)
	}
	return f.Name(), nil
}

// prefetched returns the file of blob d once its background download is
// over: ok is false when none was started or it failed (the caller then
// downloads it itself); a download cut by the network gives its error.
func (c *Cache) prefetched(ctx context.Context, d ocispec.Descriptor) (path string, ok bool, err error) {
	c.pmu.Lock()
	p := c.pre[d.Digest]
	c.pmu.Unlock()
	if p == nil {
		return "", false, nil
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		return "", false, ctx.Err()
	}
	var te *transferError
	if errors.As(p.err, &te) {
		return "", false, p.err
	}
	c.pmu.Lock()
	defer c.pmu.Unlock()
	path, p.path = p.path, "" // the caller removes it
	return path, path != "", nil
}

// stopPrefetch cancels the downloads under way, waits for them and
// removes the files no Fetch used.
func (c *Cache) stopPrefetch() {
	c.pmu.Lock()
	if c.pcancel != nil {
		c.pcancel()
	}
	c.pmu.Unlock()
	c.pwg.Wait()
	c.pmu.Lock()
	defer c.pmu.Unlock()
	for _, p := range c.pre {
		if p.path != "" {
			os.Remove(p.path)
		}
	}
}
