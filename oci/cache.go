package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/ovl-dev/ovl/layer"
)

// The build cache's index is one OCI manifest per tag, of this artifact
// type, whose layers are the step layers, each annotated with its step's
// key, its parent step's key and a description. The manifest keeps
// every listed blob alive in the registry (garbage collection follows
// manifests) and is small: a few hundred bytes per step.
const (
	ArtifactType          = "application/vnd.ovl.build-cache.v1"
	AnnotationKey         = "dev.ovl.step.key"
	AnnotationParent      = "dev.ovl.step.parent"
	AnnotationDescription = "dev.ovl.step.description"
	AnnotationDiffID      = "dev.ovl.layer.diff_id"
)

// maxManifestBytes bounds the index manifest read from a registry.
const maxManifestBytes = 4 << 20

// CacheOptions configure a Cache.
type CacheOptions struct {
	// From are the references whose index is looked up, in order
	// (--cache-from, repeatable).
	From []string
	// To is the reference the steps' layers and the index are pushed to
	// (--cache-to); empty pushes nothing.
	To string
	// Remote says how to reach the registries.
	Remote RemoteOptions
	// TmpDir holds layers packed for upload and blobs downloaded ahead:
	// the project's .vagga/.layers/.tmp, where `ovl clean --old` removes
	// what a killed build left.
	TmpDir string
	// Namespace is where pulled layers get their opaque xattrs: the
	// namespace the project's layers are mounted with.
	Namespace layer.Namespace
	// Jobs is how many layers are packed and uploaded at once (3 if 0).
	Jobs int
	// MaxEntries bounds the index: past it, the oldest entries go
	// (2000 if 0).
	MaxEntries int
}

// Cache is a build cache of step layers in OCI registries. It
// implements builder.StepCache: Fetch before a step runs, Store after
// it is sealed. Uploads run in the background, and so do downloads of
// the steps after a pulled one (prefetch.go); Flush, which the caller
// must call once the builds are over, stops the downloads, waits for
// the uploads and pushes the index. A registry that fails is reported once (the error
// of the Fetch or the Flush) and then left alone for the rest of the
// build; a blob that does not match its digest is never unpacked into a
// layer the builder keeps. Safe for concurrent use.
type Cache struct {
	o    CacheOptions
	from []*cacheSource
	to   *cacheSource

	jobs chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	added   []ocispec.Descriptor // new index entries, in build order
	addedBy map[string]bool      // their keys
	report  PushReport
	failed  error // the first upload failure; later uploads are skipped

	// Background downloads of the steps after a pulled one (prefetch.go).
	pmu     sync.Mutex
	pctx    context.Context
	pcancel context.CancelFunc
	pwg     sync.WaitGroup
	pre     map[digest.Digest]*prefetch
}

// PushReport is what a Flush pushed.
type PushReport struct {
	Ref      string `json:"ref"`
	Uploaded int    `json:"uploaded"` // layers uploaded
	Bytes    int64  `json:"bytes"`    // their compressed size
	Present  int    `json:"present"`  // layers whose blob the registry had already
	Indexed  int    `json:"indexed"`  // steps the index listed already: nothing packed
	Entries  int    `json:"entries"`  // steps the index lists now
	Digest   string `json:"digest,omitempty"`
}

// cacheSource is one reference: its repository and, once loaded, its
// index.
type cacheSource struct {
	ref  string
	repo *remote.Repository
	tag  string

	once     sync.Once
	entries  []ocispec.Descriptor
	index    map[string]ocispec.Descriptor
	children map[string][]ocispec.Descriptor // parent key -> entries
	err      error
	disabled atomic.Bool
}

// NewCache checks the references of o; it sends nothing yet.
func NewCache(o CacheOptions) (*Cache, error) {
	if o.Jobs <= 0 {
		o.Jobs = 3
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = 2000
	}
	c := &Cache{o: o, jobs: make(chan struct{}, o.Jobs), addedBy: map[string]bool{}}
	for _, ref := range o.From {
		s, err := newSource(ref, o.Remote)
		if err != nil {
			return nil, fmt.Errorf("--cache-from: %w", err)
		}
		c.from = append(c.from, s)
	}
	if o.To != "" {
		s, err := newSource(o.To, o.Remote)
		if err != nil {
			return nil, fmt.Errorf("--cache-to: %w", err)
		}
		c.to = s
		c.report.Ref = o.To
	}
	return c, nil
}

func newSource(ref string, o RemoteOptions) (*cacheSource, error) {
	repo, tag, err := Repository(ref, o)
	if err != nil {
		return nil, err
	}
	return &cacheSource{ref: ref, repo: repo, tag: tag}, nil
}

// load reads the source's index once; a missing tag is an empty index.
func (s *cacheSource) load(ctx context.Context, o RemoteOptions) (map[string]ocispec.Descriptor, error) {
	s.once.Do(func() {
		s.entries, s.err = fetchIndex(ctx, s.repo, s.tag, o)
		s.index, s.children = indexOf(s.entries), children(s.entries)
	})
	return s.index, s.err
}

func indexOf(entries []ocispec.Descriptor) map[string]ocispec.Descriptor {
	m := make(map[string]ocispec.Descriptor, len(entries))
	for _, d := range entries {
		m[d.Annotations[AnnotationKey]] = d
	}
	return m
}

// fetchIndex reads the cache manifest tagged tag: its annotated layers.
func fetchIndex(ctx context.Context, repo *remote.Repository, tag string, o RemoteOptions) ([]ocispec.Descriptor, error) {
	ctx, cancel := bounded(ctx, o)
	defer cancel()
	desc, rc, err := repo.FetchReference(ctx, tag)
	if errors.Is(err, errdef.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if desc.Size > maxManifestBytes {
		return nil, fmt.Errorf("the index manifest is %d bytes, more than the %d a build cache has", desc.Size, maxManifestBytes)
	}
	data, err := content.ReadAll(rc, desc)
	if err != nil {
		return nil, err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("the index manifest: %w", err)
	}
	if m.ArtifactType != ArtifactType {
		return nil, fmt.Errorf("the tag %s is not an ovl build cache (artifact type %q, not %q): name another tag", tag, m.ArtifactType, ArtifactType)
	}
	var out []ocispec.Descriptor
	for _, d := range m.Layers {
		if d.Annotations[AnnotationKey] != "" && d.Digest.Validate() == nil {
			out = append(out, d)
		}
	}
	return out, nil
}

// Fetch unpacks the layer of step key from the first --cache-from index
// that lists it into dst, the builder's new, empty layer directory, and
// reports whether it did. On an error dst may hold part of a layer and
// must be discarded. A registry that cannot be reached or does not
// answer in time gives one error and is not asked again; a blob that
// fails its digest check gives an error wrapping ErrDigest.
func (c *Cache) Fetch(ctx context.Context, key, dst string) (bool, error) {
	for _, s := range c.from {
		if s.disabled.Load() {
			continue
		}
		idx, err := s.load(ctx, c.o.Remote)
		if err != nil {
			s.disabled.Store(true)
			return false, fmt.Errorf("build cache %s: %w", s.ref, explain(err))
		}
		d, ok := idx[key]
		if !ok {
			continue
		}
		c.prefetchAfter(s, key)
		if err := c.fetchLayer(ctx, s, d, dst); err != nil {
			if !errors.Is(err, ErrDigest) && !errors.Is(err, ErrBadLayer) && ctx.Err() == nil {
				s.disabled.Store(true)
			}
			return false, fmt.Errorf("build cache %s: %w", s.ref, explain(err))
		}
		return true, nil
	}
	return false, nil
}

// fetchLayer unpacks one step layer from its background download, or
// downloads it.
func (c *Cache) fetchLayer(ctx context.Context, s *cacheSource, d ocispec.Descriptor, dst string) error {
	diffID, _ := digest.Parse(d.Annotations[AnnotationDiffID])
	path, ok, err := c.prefetched(ctx, d)
	if err != nil {
		return err
	}
	if !ok {
		return readRemoteLayer(ctx, s.repo, d, diffID, dst, c.o.Namespace, c.o.Remote)
	}
	slog.Debug("oci: step layer from its background download", "digest", d.Digest)
	defer os.Remove(path)
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return ReadBlob(ctx, f, d, diffID, dst, c.o.Namespace)
}

// orStall is err, or the watchdog's reason when it cut the transfer.
func orStall(w *watchdog, err error) error {
	if err != nil && errors.Is(w.err(), errStalled) {
		return w.err()
	}
	return err
}

// Store queues the sealed layer dir of step key (parent: its parent
// step's key; description: what the step is) for upload to --cache-to,
// unless that index lists the key already. It returns at once; the
// layer must stay unchanged until Flush returns.
func (c *Cache) Store(ctx context.Context, key, parent, dir, description string) error {
	if c.to == nil {
		return nil
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.jobs <- struct{}{}
		defer func() { <-c.jobs }()
		if err := c.upload(ctx, key, parent, dir, description); err != nil {
			c.mu.Lock()
			if c.failed == nil {
				c.failed = err
			}
			c.mu.Unlock()
		}
	}()
	return nil
}

func (c *Cache) upload(ctx context.Context, key, parent, dir, description string) error {
	c.mu.Lock()
	skip := c.failed != nil || c.addedBy[key]
	c.addedBy[key] = true
	c.mu.Unlock()
	if skip || c.to.disabled.Load() {
		return nil
	}
	idx, err := c.to.load(ctx, c.o.Remote)
	if err != nil {
		c.to.disabled.Store(true)
		return err
	}
	if _, ok := idx[key]; ok {
		c.mu.Lock()
		c.report.Indexed++
		c.mu.Unlock()
		return nil
	}
	blob, err := Pack(ctx, dir, c.o.TmpDir)
	if err != nil {
		return err
	}
	defer blob.Remove()
	desc := blob.Desc
	desc.Annotations = map[string]string{AnnotationKey: key, AnnotationParent: parent,
		AnnotationDescription: description, AnnotationDiffID: blob.DiffID.String()}
	uploaded, err := pushBlob(ctx, c.to.repo, desc, blob.Path, c.o.Remote)
	if err != nil {
		c.to.disabled.Store(true)
		return err
	}
	c.mu.Lock()
	c.added = append(c.added, desc)
	if uploaded {
		c.report.Uploaded++
		c.report.Bytes += desc.Size
	} else {
		c.report.Present++
	}
	c.mu.Unlock()
	return nil
}

// blobTarget is where blobs go: a registry repository or an OCI layout.
type blobTarget interface {
	content.Pusher
	Exists(ctx context.Context, target ocispec.Descriptor) (bool, error)
}

// pushBlob uploads the file p as the blob desc unless the target has it
// (nothing is uploaded twice), cutting the upload if it stalls. It
// reports whether it uploaded.
func pushBlob(ctx context.Context, t blobTarget, desc ocispec.Descriptor, p string, o RemoteOptions) (bool, error) {
	bctx, cancel := bounded(ctx, o)
	ok, err := t.Exists(bctx, desc)
	cancel()
	if err != nil {
		return false, fmt.Errorf("check blob %s: %w", desc.Digest, err)
	}
	if ok {
		return false, nil
	}
	f, err := os.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	w := newWatchdog(ctx, o.timeout())
	defer w.stop()
	if err := t.Push(w.ctx, desc, w.reader(f)); err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
		return false, fmt.Errorf("upload blob %s (%d bytes): %w", desc.Digest, desc.Size, orStall(w, err))
	}
	return true, nil
}

// pushBytes uploads a small blob held in memory unless the target has it.
func pushBytes(ctx context.Context, t blobTarget, desc ocispec.Descriptor, data []byte, o RemoteOptions) error {
	ctx, cancel := bounded(ctx, o)
	defer cancel()
	ok, err := t.Exists(ctx, desc)
	if err != nil || ok {
		return err
	}
	if err := t.Push(ctx, desc, bytes.NewReader(data)); err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
		return err
	}
	return nil
}

// Flush ends the background downloads (removing what no step used),
// waits for the queued uploads and pushes the index: the entries
// the registry has now (read again, so that another build's pushes
// meanwhile are kept) plus this build's, the oldest dropped past
// MaxEntries. It returns what it pushed, and the first failure.
func (c *Cache) Flush(ctx context.Context) (PushReport, error) {
	c.stopPrefetch()
	c.wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.to == nil {
		return c.report, nil
	}
	if c.failed != nil {
		return c.report, fmt.Errorf("build cache %s: %w", c.to.ref, explain(c.failed))
	}
	if len(c.added) == 0 {
		c.report.Entries = len(c.to.entries)
		return c.report, nil
	}
	current, err := fetchIndex(ctx, c.to.repo, c.to.tag, c.o.Remote)
	if err != nil {
		return c.report, fmt.Errorf("build cache %s: read the index again: %w", c.to.ref, err)
	}
	var entries []ocispec.Descriptor
	for _, d := range current {
		if !c.addedBy[d.Annotations[AnnotationKey]] {
			entries = append(entries, d)
		}
	}
	entries = append(entries, c.added...)
	if len(entries) > c.o.MaxEntries {
		entries = entries[len(entries)-c.o.MaxEntries:]
	}
	desc, err := pushManifest(ctx, c.to.repo, c.to.tag, ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: ArtifactType,
		Config:       emptyConfig(),
		Layers:       entries,
	}, c.o.Remote)
	if err != nil {
		return c.report, fmt.Errorf("build cache %s: push the index: %w", c.to.ref, err)
	}
	c.report.Entries = len(entries)
	c.report.Digest = desc.Digest.String()
	return c.report, nil
}

// emptyConfig is the descriptor of the empty JSON config an artifact
// manifest has, without its inline data (older registries do not know
// the field).
func emptyConfig() ocispec.Descriptor {
	d := ocispec.DescriptorEmptyJSON
	d.Data = nil
	return d
}

// manifestTarget is where manifests go: a registry or an OCI layout.
type manifestTarget interface {
	blobTarget
	Tag(ctx context.Context, desc ocispec.Descriptor, reference string) error
}

// pushManifest pushes m's config (the empty one or one already pushed)
// and m, tagged tag.
func pushManifest(ctx context.Context, t manifestTarget, tag string, m ocispec.Manifest, o RemoteOptions) (ocispec.Descriptor, error) {
	if m.Config.MediaType == ocispec.MediaTypeEmptyJSON {
		if err := pushBytes(ctx, t, m.Config, ocispec.DescriptorEmptyJSON.Data, o); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("push the empty config: %w", err)
		}
	}
	data, err := json.Marshal(m)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	desc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, data)
	if err := pushBytes(ctx, t, desc, data, o); err != nil {
		return desc, err
	}
	bctx, cancel := bounded(ctx, o)
	defer cancel()
	return desc, t.Tag(bctx, desc, tag)
}
