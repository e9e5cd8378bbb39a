package oci

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
	"oras.land/oras-go/v2/registry/remote/errcode"
	"oras.land/oras-go/v2/registry/remote/retry"
)

// DefaultTimeout bounds each registry request: connecting, the TLS
// handshake, the wait for a response's headers, and any pause in a
// blob's transfer. A transfer that keeps moving may take longer.
const DefaultTimeout = 30 * time.Second

// RemoteOptions say how to reach registries.
type RemoteOptions struct {
	// PlainHTTP talks to the registry over http instead of https
	// (--insecure-registry): for a registry on loopback or in a CI
	// service container. Never chosen on ovl's own.
	PlainHTTP bool
	// AuthFile is the credentials file (Docker's config.json format).
	// Empty: $REGISTRY_AUTH_FILE, else $XDG_RUNTIME_DIR/containers/auth.json
	// (podman's) if it exists, and $DOCKER_CONFIG/config.json or
	// ~/.docker/config.json (credential helpers named there are run).
	AuthFile string
	// Timeout bounds every request (DefaultTimeout when zero).
	Timeout time.Duration
}

func (o RemoteOptions) timeout() time.Duration {
	if o.Timeout > 0 {
		return o.Timeout
	}
	return DefaultTimeout
}

// ParseRef parses a reference REGISTRY/REPOSITORY[:TAG|@DIGEST]; the
// tag defaults to "latest". The error says what a reference looks like.
func ParseRef(ref string) (registry.Reference, error) {
	r, err := registry.ParseReference(ref)
	if err != nil {
		return r, fmt.Errorf("reference %q: %w (want REGISTRY/REPOSITORY[:TAG], e.g. localhost:5000/myproject/cache:main)", ref, err)
	}
	if r.Reference == "" {
		r.Reference = "latest"
	}
	return r, nil
}

// Repository opens the repository of ref (REGISTRY/REPOSITORY[:TAG]) with
// the caller's credentials, and returns it with the tag or digest ref
// names. Nothing is sent yet.
func Repository(ref string, o RemoteOptions) (*remote.Repository, string, error) {
	r, err := ParseRef(ref)
	if err != nil {
		return nil, "", err
	}
	store, err := credentialStore(o.AuthFile)
	if err != nil {
		return nil, "", err
	}
	repo := &remote.Repository{
		Reference: r,
		PlainHTTP: o.PlainHTTP,
		Client: &auth.Client{
			Client:     httpClient(o.timeout()),
			Credential: credentials.Credential(store),
			Cache:      auth.NewCache(),
		},
	}
	return repo, r.Reference, nil
}

// credentialStore reads credentials the way podman, skopeo and docker
// do (see RemoteOptions.AuthFile).
func credentialStore(file string) (credentials.Store, error) {
	if file == "" {
		file = os.Getenv("REGISTRY_AUTH_FILE")
	}
	if file != "" {
		s, err := credentials.NewStore(file, credentials.StoreOptions{})
		if err != nil {
			return nil, fmt.Errorf("registry credentials %s: %w", file, err)
		}
		return s, nil
	}
	docker, err := credentials.NewStoreFromDocker(credentials.StoreOptions{})
	if err != nil {
		return nil, fmt.Errorf("registry credentials (docker config.json): %w", err)
	}
	if dir := os.Getenv("XDG_RUNTIME_DIR"); dir != "" {
		p := filepath.Join(dir, "containers", "auth.json")
		if _, err := os.Stat(p); err == nil {
			podman, err := credentials.NewStore(p, credentials.StoreOptions{})
			if err != nil {
				return nil, fmt.Errorf("registry credentials %s: %w", p, err)
			}
			return credentials.NewStoreWithFallbacks(podman, docker), nil
		}
	}
	return docker, nil
}

// httpClient is the registry client's transport: every phase before a
// response bounded by timeout, and a retry, after a short pause, of
// requests that failed on the server's side (5xx, 429) or on a reset
// connection. A timeout is not retried: a registry that is slow once is
// slow again, and the build should go on without it.
func httpClient(timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext
	tr.TLSHandshakeTimeout = timeout
	tr.ResponseHeaderTimeout = timeout
	tr.ExpectContinueTimeout = time.Second
	policy := &retry.GenericPolicy{
		Retryable: func(resp *http.Response, err error) (bool, error) {
			if err != nil {
				return errors.Is(err, syscall.ECONNRESET), nil
			}
			return resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500, nil
		},
		Backoff:  retry.ExponentialBackoff(200*time.Millisecond, 2, 0.1),
		MinWait:  100 * time.Millisecond,
		MaxWait:  2 * time.Second,
		MaxRetry: 2,
	}
	return &http.Client{Transport: &retry.Transport{Base: tr, Policy: func() retry.Policy { return policy }}}
}

// bounded returns ctx limited to the request timeout, for a call that
// moves little data (a manifest, a HEAD).
func bounded(ctx context.Context, o RemoteOptions) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, o.timeout())
}

// watchdog cancels a transfer that stalls: its context is cancelled
// when no Read on a watched reader has moved data for timeout.
type watchdog struct {
	ctx     context.Context
	cancel  context.CancelCauseFunc
	timeout time.Duration
	mu      sync.Mutex
	timer   *time.Timer
}

// errStalled is the cause of a transfer cancelled by its watchdog.
var errStalled = errors.New("the registry stopped sending or receiving data")

func newWatchdog(ctx context.Context, timeout time.Duration) *watchdog {
	w := &watchdog{timeout: timeout}
	w.ctx, w.cancel = context.WithCancelCause(ctx)
	w.timer = time.AfterFunc(timeout, func() {
		w.cancel(fmt.Errorf("%w for %s", errStalled, timeout))
	})
	return w
}

// kick records progress.
func (w *watchdog) kick() {
	w.mu.Lock()
	w.timer.Reset(w.timeout)
	w.mu.Unlock()
}

// stop ends the watch and releases the context.
func (w *watchdog) stop() {
	w.timer.Stop()
	w.cancel(nil)
}

// err is the reason the transfer's context ended, if it did.
func (w *watchdog) err() error { return context.Cause(w.ctx) }

// reader kicks w on every Read that moves data.
func (w *watchdog) reader(r io.Reader) io.Reader { return &watchedReader{r: r, w: w} }

type watchedReader struct {
	r io.Reader
	w *watchdog
}

func (wr *watchedReader) Read(p []byte) (int, error) {
	n, err := wr.r.Read(p)
	if n > 0 {
		wr.w.kick()
	}
	return n, err
}

// resumingReader reads a blob and, when the connection breaks partway,
// asks the registry for the rest (an HTTP range request, where the
// registry serves them: oras-go returns an io.Seeker then), up to
// maxResumes times.
type resumingReader struct {
	r       io.Reader
	off     int64
	resumes int
}

const maxResumes = 3

func (rr *resumingReader) Read(p []byte) (int, error) {
	n, err := rr.r.Read(p)
	rr.off += int64(n)
	if err == nil || errors.Is(err, io.EOF) {
		return n, err
	}
	s, ok := rr.r.(io.Seeker)
	if !ok || rr.resumes >= maxResumes || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return n, &transferError{err}
	}
	rr.resumes++
	// Seeking to where the reader already is does nothing in oras-go;
	// going to the end first makes the next seek a new range request.
	if _, serr := s.Seek(0, io.SeekEnd); serr != nil {
		return n, &transferError{err}
	}
	if _, serr := s.Seek(rr.off, io.SeekStart); serr != nil {
		return n, &transferError{fmt.Errorf("%w (and resuming at byte %d failed: %v)", err, rr.off, serr)}
	}
	if n > 0 {
		return n, nil
	}
	return rr.Read(p)
}

// transferError is a download cut by the network or the registry (not
// content that fails its digest): the registry is not asked again.
type transferError struct{ err error }

func (e *transferError) Error() string { return "transfer cut: " + e.err.Error() }
func (e *transferError) Unwrap() error { return e.err }

// ErrAuth reports a registry that refused the caller's credentials, or
// wanted some and found none. Test with errors.Is.
var ErrAuth = errors.New("the registry wants a login (podman login or docker login REGISTRY, or --authfile FILE)")

// explain wraps err with ErrAuth when the registry refused access, so
// the message says what to do.
func explain(err error) error {
	var resp *errcode.ErrorResponse
	if errors.Is(err, auth.ErrBasicCredentialNotFound) ||
		errors.As(err, &resp) && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) {
		return fmt.Errorf("%w: %v", ErrAuth, err)
	}
	return err
}
