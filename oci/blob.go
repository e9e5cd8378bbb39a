package oci

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"github.com/ovl-dev/ovl/layer"
)

// ErrDigest reports content whose digest or size is not what its
// descriptor says: a corrupt or forged blob. Test with errors.Is.
var ErrDigest = errors.New("content does not match its digest")

// Blob is a layer packed into a compressed tar file, ready to upload.
type Blob struct {
	// Path is the file holding the compressed tar; Remove deletes it.
	Path string
	// Desc describes the compressed tar: media type, digest, size.
	Desc ocispec.Descriptor
	// DiffID is the digest of the uncompressed tar, which an image
	// config lists.
	DiffID digest.Digest
}

// Remove deletes the blob's file.
func (b *Blob) Remove() error { return os.Remove(b.Path) }

// Pack writes the layer directory dir as a gzip-compressed OCI layer tar
// (WriteLayer) into a new file under tmpDir, digesting both forms on
// the way.
func Pack(ctx context.Context, dir, tmpDir string) (*Blob, error) {
	f, err := os.CreateTemp(tmpDir, tmpName("blob"))
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", dir, err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	zd, td := digest.Canonical.Digester(), digest.Canonical.Digester()
	cw := &countWriter{w: io.MultiWriter(f, zd.Hash())}
	zw, err := gzip.NewWriterLevel(cw, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	if err := WriteLayer(ctx, dir, io.MultiWriter(zw, td.Hash())); err != nil {
		return nil, fmt.Errorf("pack %s: %w", dir, err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("pack %s: %w", dir, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("pack %s: %w", dir, err)
	}
	ok = true
	return &Blob{
		Path:   f.Name(),
		Desc:   ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: zd.Digest(), Size: cw.n},
		DiffID: td.Digest(),
	}, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Layer media types ReadBlob unpacks: OCI's and Docker's, plain or gzip.
const (
	mediaTypeDockerLayer = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)

// ReadBlob unpacks the layer blob r, described by desc, into the empty
// directory dst (ReadLayer), checking the blob's size and digest: a
// blob that does not match gives an error wrapping ErrDigest, and dst
// must then be discarded, as after any error. diffID, when set, is
// checked against the uncompressed tar too.
func ReadBlob(ctx context.Context, r io.Reader, desc ocispec.Descriptor, diffID digest.Digest, dst string, ns layer.Namespace) error {
	vr := content.NewVerifyReader(r, desc)
	var tarStream io.Reader = vr
	switch desc.MediaType {
	case ocispec.MediaTypeImageLayerGzip, mediaTypeDockerLayer:
		zr, err := gzip.NewReader(vr)
		if err != nil {
			return blobError(desc, vr, err)
		}
		defer zr.Close()
		tarStream = zr
	case ocispec.MediaTypeImageLayer:
	default:
		return fmt.Errorf("layer %s: media type %q is not supported (gzip or plain tar layers only)", desc.Digest, desc.MediaType)
	}
	td := digest.Canonical.Digester()
	tee := io.TeeReader(tarStream, td.Hash())
	if err := ReadLayer(ctx, tee, dst, ns); err != nil {
		return blobError(desc, vr, err)
	}
	// The tar's end may leave padding and the gzip trailer unread.
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return blobError(desc, vr, err)
	}
	if err := vr.Verify(); err != nil {
		return fmt.Errorf("layer %s: %w: %v", desc.Digest, ErrDigest, err)
	}
	if diffID != "" && td.Digest() != diffID {
		return fmt.Errorf("layer %s: %w: its tar has digest %s, %s expected", desc.Digest, ErrDigest, td.Digest(), diffID)
	}
	return nil
}

// blobError is err from reading a blob; a blob that fails to unpack
// and does not match its digest is reported as the digest mismatch, the
// cause that matters.
func blobError(desc ocispec.Descriptor, vr *content.VerifyReader, err error) error {
	_, cerr := io.Copy(io.Discard, vr)
	var te *transferError
	if errors.As(cerr, &te) || errors.As(err, &te) {
		return fmt.Errorf("layer %s: %w", desc.Digest, te)
	}
	if errors.Is(cerr, io.ErrUnexpectedEOF) {
		return fmt.Errorf("layer %s: %w: shorter than its size, %d bytes", desc.Digest, ErrDigest, desc.Size)
	}
	if cerr == nil {
		if verr := vr.Verify(); verr != nil {
			return fmt.Errorf("layer %s: %w: %v", desc.Digest, ErrDigest, verr)
		}
	}
	return fmt.Errorf("layer %s: %w", desc.Digest, err)
}

// tmpName starts the names of the files this process keeps under a
// TmpDir: "tmp-PID-oci-WHAT-", the builder's pattern for unfinished work,
// so that `ovl clean --old` removes those of a killed build.
func tmpName(what string) string { return "tmp-" + strconv.Itoa(os.Getpid()) + "-oci-" + what + "-" }
