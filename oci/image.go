package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/oci"

	"github.com/ovl-dev/ovl/layer"
)

// ImageConfig is what an image says about running it.
type ImageConfig struct {
	Env        []string          // NAME=value
	WorkingDir string            // the initial working directory
	Labels     map[string]string // e.g. the container's name and key
}

// ImageResult says what WriteImage, PushImage or ExportImage wrote.
type ImageResult struct {
	Ref      string `json:"ref"`
	Digest   string `json:"digest"`   // the manifest's
	Layer    string `json:"layer"`    // the one layer's digest
	Size     int64  `json:"size"`     // its compressed size
	Uploaded bool   `json:"uploaded"` // false: the target had the layer
	DiffID   string `json:"diff_id"`  // the digest of its tar
	Platform string `json:"platform"` // os/architecture
	Config   string `json:"config"`   // the config's digest
	Manifest int64  `json:"manifest_size"`
}

// writeImage packs root, a plain directory (a container's flattened
// root), as the one layer of an image for linux on this machine's
// architecture, and writes layer, config and manifest to t, the
// manifest tagged tag.
func writeImage(ctx context.Context, t manifestTarget, tag, root string, cfg ImageConfig, tmpDir string, o RemoteOptions) (ImageResult, error) {
	blob, err := Pack(ctx, root, tmpDir)
	if err != nil {
		return ImageResult{}, err
	}
	defer blob.Remove()
	uploaded, err := pushBlob(ctx, t, blob.Desc, blob.Path, o)
	if err != nil {
		return ImageResult{}, err
	}
	img := ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH},
		Config:   ocispec.ImageConfig{Env: cfg.Env, WorkingDir: cfg.WorkingDir, Labels: cfg.Labels},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{blob.DiffID}},
	}
	cdata, err := json.Marshal(img)
	if err != nil {
		return ImageResult{}, err
	}
	cdesc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageConfig, cdata)
	if err := pushBytes(ctx, t, cdesc, cdata, o); err != nil {
		return ImageResult{}, fmt.Errorf("push the image config: %w", err)
	}
	mdesc, err := pushManifest(ctx, t, tag, ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    cdesc,
		Layers:    []ocispec.Descriptor{blob.Desc},
	}, o)
	if err != nil {
		return ImageResult{}, fmt.Errorf("push the image manifest: %w", err)
	}
	return ImageResult{Digest: mdesc.Digest.String(), Layer: blob.Desc.Digest.String(), Size: blob.Desc.Size,
		Uploaded: uploaded, DiffID: blob.DiffID.String(), Platform: "linux/" + runtime.GOARCH,
		Config: cdesc.Digest.String(), Manifest: mdesc.Size}, nil
}

// PushImage pushes root as a one-layer image to ref (REGISTRY/REPO[:TAG]).
func PushImage(ctx context.Context, ref, root string, cfg ImageConfig, tmpDir string, o RemoteOptions) (ImageResult, error) {
	repo, tag, err := Repository(ref, o)
	if err != nil {
		return ImageResult{}, err
	}
	res, err := writeImage(ctx, repo, tag, root, cfg, tmpDir, o)
	if err != nil {
		return res, fmt.Errorf("push %s: %w", ref, explain(err))
	}
	res.Ref = ref
	return res, nil
}

// ExportImage writes root as a one-layer image into the OCI image
// layout dir (created if missing; other images there are kept), tagged
// tag.
func ExportImage(ctx context.Context, dir, tag, root string, cfg ImageConfig, tmpDir string) (ImageResult, error) {
	store, err := oci.NewWithContext(ctx, dir)
	if err != nil {
		return ImageResult{}, fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	res, err := writeImage(ctx, store, tag, root, cfg, tmpDir, RemoteOptions{})
	if err != nil {
		return res, fmt.Errorf("export to %s: %w", dir, err)
	}
	res.Ref = dir + ":" + tag
	return res, nil
}

// PullResult says what PullImage wrote.
type PullResult struct {
	Ref    string `json:"ref"`
	Digest string `json:"digest"` // the manifest's
	Layers int    `json:"layers"`
	Bytes  int64  `json:"bytes"` // compressed, downloaded
	Root   string `json:"root"`
	Config string `json:"config"` // the image config, as pulled
}

// PullImage downloads the image ref (for linux on this machine's
// architecture, when ref is an index) into dst, which must not exist:
// dst/root is the plain directory of its layers flattened (whiteouts
// applied), dst/image.json its config. Every blob is checked against
// its digest, each layer's tar against the config's diff_id. On error
// dst is removed. ns is the overlay xattr namespace the layers are
// unpacked with on their way to being flattened (layer.NamespaceFor).
func PullImage(ctx context.Context, ref, dst string, ns layer.Namespace, o RemoteOptions) (res PullResult, err error) {
	repo, tag, err := Repository(ref, o)
	if err != nil {
		return res, err
	}
	if _, err := os.Lstat(dst); err == nil {
		return res, fmt.Errorf("pull into %s: it exists; name a new directory", dst)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return res, err
	}
	defer func() {
		if err != nil {
			layer.RemoveAll(dst)
		}
	}()
	m, mdesc, err := fetchImageManifest(ctx, repo, tag, o)
	if err != nil {
		return res, fmt.Errorf("pull %s: %w", ref, explain(err))
	}
	cdata, err := fetchSmall(ctx, repo, m.Config, o)
	if err != nil {
		return res, fmt.Errorf("pull %s: config: %w", ref, err)
	}
	var img ocispec.Image
	if err := json.Unmarshal(cdata, &img); err != nil {
		return res, fmt.Errorf("pull %s: config: %w", ref, err)
	}
	if len(img.RootFS.DiffIDs) != len(m.Layers) {
		return res, fmt.Errorf("pull %s: the config lists %d layers, the manifest %d", ref, len(img.RootFS.DiffIDs), len(m.Layers))
	}
	layersDir := filepath.Join(dst, ".layers")
	var lowers []string // top first
	for i, d := range m.Layers {
		ld := filepath.Join(layersDir, strconv.Itoa(i))
		if err := os.MkdirAll(ld, 0o755); err != nil {
			return res, err
		}
		if err := readRemoteLayer(ctx, repo, d, img.RootFS.DiffIDs[i], ld, ns, o); err != nil {
			return res, fmt.Errorf("pull %s: layer %d of %d: %w", ref, i+1, len(m.Layers), err)
		}
		lowers = append([]string{ld}, lowers...)
		res.Bytes += d.Size
	}
	root := filepath.Join(dst, "root")
	if len(lowers) == 0 {
		err = os.Mkdir(root, 0o755)
	} else {
		err = layer.Flatten(ctx, lowers, root)
	}
	if err != nil {
		return res, fmt.Errorf("pull %s: %w", ref, err)
	}
	if err := layer.RemoveAll(layersDir); err != nil {
		return res, err
	}
	if err := os.WriteFile(filepath.Join(dst, "image.json"), cdata, 0o644); err != nil {
		return res, err
	}
	return PullResult{Ref: ref, Digest: mdesc.Digest.String(), Layers: len(m.Layers), Bytes: res.Bytes,
		Root: root, Config: filepath.Join(dst, "image.json")}, nil
}

// fetchSmall reads a manifest or config blob, bounded in size and time,
// checked against its digest.
func fetchSmall(ctx context.Context, f content.Fetcher, d ocispec.Descriptor, o RemoteOptions) ([]byte, error) {
	if d.Size > maxManifestBytes {
		return nil, fmt.Errorf("%s is %d bytes, more than %d", d.Digest, d.Size, maxManifestBytes)
	}
	ctx, cancel := bounded(ctx, o)
	defer cancel()
	rc, err := f.Fetch(ctx, d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := content.ReadAll(rc, d)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDigest, err)
	}
	return data, nil
}

// Media types of Docker's manifests, which registries still serve for
// images pushed by docker.
const (
	mediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// fetchImageManifest resolves tag to an image manifest, choosing this
// machine's platform from an index.
func fetchImageManifest(ctx context.Context, repo manifestStore, tag string, o RemoteOptions) (ocispec.Manifest, ocispec.Descriptor, error) {
	bctx, cancel := bounded(ctx, o)
	desc, err := repo.Resolve(bctx, tag)
	cancel()
	if err != nil {
		return ocispec.Manifest{}, desc, err
	}
	for hops := 0; hops < 2; hops++ {
		data, err := fetchSmall(ctx, repo, desc, o)
		if err != nil {
			return ocispec.Manifest{}, desc, err
		}
		switch desc.MediaType {
		case ocispec.MediaTypeImageManifest, mediaTypeDockerManifest:
			var m ocispec.Manifest
			if err := json.Unmarshal(data, &m); err != nil {
				return m, desc, err
			}
			return m, desc, nil
		case ocispec.MediaTypeImageIndex, mediaTypeDockerManifestList:
			var idx ocispec.Index
			if err := json.Unmarshal(data, &idx); err != nil {
				return ocispec.Manifest{}, desc, err
			}
			found := false
			for _, m := range idx.Manifests {
				if m.Platform != nil && m.Platform.OS == "linux" && m.Platform.Architecture == runtime.GOARCH {
					desc, found = m, true
					break
				}
			}
			if !found {
				return ocispec.Manifest{}, desc, fmt.Errorf("the index has no image for linux/%s", runtime.GOARCH)
			}
		default:
			return ocispec.Manifest{}, desc, fmt.Errorf("%s is a %q, not an image", desc.Digest, desc.MediaType)
		}
	}
	return ocispec.Manifest{}, desc, errors.New("an index within an index: not an image")
}

// manifestStore is what fetchImageManifest reads from.
type manifestStore interface {
	content.Fetcher
	Resolve(ctx context.Context, reference string) (ocispec.Descriptor, error)
}

// readRemoteLayer downloads the layer blob d and unpacks it into the
// empty directory dst (ReadBlob), resuming a broken connection where
// the registry serves ranges and giving up when the transfer stalls.
func readRemoteLayer(ctx context.Context, f content.Fetcher, d ocispec.Descriptor, diffID digest.Digest, dst string, ns layer.Namespace, o RemoteOptions) error {
	w := newWatchdog(ctx, o.timeout())
	defer w.stop()
	rc, err := f.Fetch(w.ctx, d)
	if err != nil {
		return orStall(w, err)
	}
	defer rc.Close()
	r := w.reader(&resumingReader{r: rc})
	return orStall(w, ReadBlob(w.ctx, r, d, diffID, dst, ns))
}
