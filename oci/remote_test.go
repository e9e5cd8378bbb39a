package oci

import (
	"bytes"
	"context"
	"errors"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ovl-dev/ovl/internal/userns"
	"github.com/ovl-dev/ovl/layer"
)

// blobServer serves one blob the way a registry does, with ranges; the
// first full GET is cut after half the bytes, by closing the connection
// (cut) or by going silent (stall).
func blobServer(t *testing.T, blob []byte, mode string) (*httptest.Server, *atomic.Int32) {
	var gets atomic.Int32
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/blobs/") {
			http.NotFound(w, r)
			return
		}
		n := gets.Add(1)
		if n == 1 && r.Header.Get("Range") == "" {
			w.Header().Set("Accept-Ranges", "bytes")
			w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
			w.WriteHeader(http.StatusOK)
			w.Write(blob[:len(blob)/2])
			w.(http.Flusher).Flush()
			if mode == "stall" {
				select {
				case <-stop:
				case <-r.Context().Done():
				}
				return
			}
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		}
		http.ServeContent(w, r, "blob", time.Time{}, bytes.NewReader(blob))
	}))
	t.Cleanup(func() { close(stop); srv.Close() })
	return srv, &gets
}

// packedRandom packs a layer holding 2 MiB of random bytes.
func packedRandom(t *testing.T) (*Blob, []byte) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "layer")
	os.Mkdir(src, 0o755)
	data := make([]byte, 2<<20)
	rand.New(rand.NewSource(7)).Read(data)
	if err := os.WriteFile(filepath.Join(src, "random"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := Pack(context.Background(), src, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return b, data
}

// TestDownloadResumesAndStalls: a connection cut halfway is resumed with
// a range request and the layer comes out whole; a registry that goes
// silent halfway is given up on after the timeout, with errStalled.
func TestDownloadResumesAndStalls(t *testing.T) {
	b, data := packedRandom(t)
	blob, _ := os.ReadFile(b.Path)
	for _, mode := range []string{"cut", "stall"} {
		t.Run(mode, func(t *testing.T) {
			srv, gets := blobServer(t, blob, mode)
			o := RemoteOptions{PlainHTTP: true, Timeout: 500 * time.Millisecond}
			repo, _, err := Repository(strings.TrimPrefix(srv.URL, "http://")+"/proj/cache:main", o)
			if err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(t.TempDir(), "layer")
			os.Mkdir(dst, 0o755)
			err = readRemoteLayer(context.Background(), repo, b.Desc, b.DiffID, dst, layer.NamespaceFor(userns.Privileged()), o)
			switch mode {
			case "cut":
				if err != nil {
					t.Fatalf("a cut download was not resumed: %v", err)
				}
				got, _ := os.ReadFile(filepath.Join(dst, "random"))
				if !bytes.Equal(got, data) || gets.Load() != 2 {
					t.Errorf("after the resume: %d bytes (want %d), %d requests (want 2)", len(got), len(data), gets.Load())
				}
			case "stall":
				if !errors.Is(err, errStalled) {
					t.Errorf("a stalled download: err = %v, want errStalled", err)
				}
			}
		})
	}
}
