package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"archive/tar"
	"compress/gzip"
	"encoding/base64"

	"github.com/ovl-dev/ovl/builder"
	"github.com/ovl-dev/ovl/internal/testutil"
)

// The registry tests run ovl against a real registry: Debian's
// docker-registry (distribution 2.8), started by each test on a loopback
// port with a storage directory of its own, stopped at the end. Every
// command they run is bounded in time.

// regTimeout bounds every command the registry tests run.
const regTimeout = 3 * time.Minute

// requireRegistryTools skips without OVL_INTEGRATION=1 and fails, saying
// what to install, when a tool is missing: never a silent skip.
func requireRegistryTools(t *testing.T, tools ...string) {
	t.Helper()
	if os.Getenv("OVL_INTEGRATION") != "1" {
		t.Skip("skipping: a test with a real registry; run make test-integration (OVL_INTEGRATION=1)")
	}
	testutil.RequireRoot(t)
	for _, tool := range append([]string{"docker-registry"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: apt-get install docker-registry skopeo umoci (%v)", tool, err)
		}
	}
}

// regOvl builds ovl into the test's temp directory (removed with it;
// go's build cache makes every build after the first a link) and
// returns its path. ovl commands of one test share it.
func regOvl(t *testing.T) string {
	t.Helper()
	regOvlMu.Lock()
	defer regOvlMu.Unlock()
	if p, ok := regOvlPaths[t]; ok {
		return p
	}
	p := filepath.Join(t.TempDir(), "ovl")
	if out, err := exec.Command("go", "build", "-o", p, "../cmd/ovl").CombinedOutput(); err != nil {
		t.Fatalf("go build ../cmd/ovl: %v\n%s", err, out)
	}
	regOvlPaths[t] = p
	return p
}

var (
	regOvlMu    sync.Mutex
	regOvlPaths = map[*testing.T]string{}
)

// testRegistry is one docker-registry process serving a storage
// directory on a loopback port.
type testRegistry struct {
	t       *testing.T
	addr    string // 127.0.0.1:PORT
	storage string
	config  string
	cmd     *exec.Cmd
	done    chan struct{}
}

// startRegistry starts a registry with a fresh storage directory;
// htpasswd, when set, is the htpasswd file whose users it admits.
func startRegistry(t *testing.T, htpasswd ...string) *testRegistry {
	t.Helper()
	dir := t.TempDir()
	r := &testRegistry{t: t, addr: freeLoopbackAddr(t), storage: filepath.Join(dir, "storage"), config: filepath.Join(dir, "config.yml")}
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n", r.storage, r.addr)
	if len(htpasswd) > 0 {
		p := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(p, []byte(htpasswd[0]), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg += fmt.Sprintf("auth:\n  htpasswd:\n    realm: test\n    path: %s\n", p)
	}
	if err := os.WriteFile(r.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	r.start()
	t.Cleanup(r.kill)
	return r
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start runs the registry on r's address and storage and waits until it
// answers.
func (r *testRegistry) start() {
	r.t.Helper()
	r.cmd = exec.Command("docker-registry", "serve", r.config)
	r.cmd.Stdout, r.cmd.Stderr = io.Discard, io.Discard
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("start docker-registry: %v", err)
	}
	r.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); close(done) }(r.cmd, r.done)
	client := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := client.Get("http://" + r.addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return
			}
		}
	}
	r.kill()
	r.t.Fatalf("docker-registry on %s did not answer within 20 s", r.addr)
}

// kill stops the registry with SIGKILL, as a crash would.
func (r *testRegistry) kill() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	r.cmd.Process.Kill()
	<-r.done
	r.cmd = nil
}

// ref names repository repo (with tag) in the registry.
func (r *testRegistry) ref(repo string) string { return r.addr + "/" + repo }

// throttle is a TCP proxy to the registry that passes at most rate
// bytes per second each way, so a test can cut a transfer halfway; it
// counts the bytes it passed each way.
type throttle struct {
	addr       string
	l          net.Listener
	up, down   atomic.Int64
	mu         sync.Mutex
	conns      []net.Conn
	rate       int64
	closedOnce sync.Once
}

func startThrottle(t *testing.T, target string, rate int64) *throttle {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &throttle{addr: l.Addr().String(), l: l, rate: rate}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go p.pipe(u, c, &p.up)
			go p.pipe(c, u, &p.down)
		}
	}()
	t.Cleanup(p.cut)
	return p
}

func (p *throttle) pipe(dst, src net.Conn, n *atomic.Int64) {
	buf := make([]byte, 32<<10)
	for {
		m, err := src.Read(buf)
		if m > 0 {
			if _, werr := dst.Write(buf[:m]); werr != nil {
				break
			}
			n.Add(int64(m))
			time.Sleep(time.Duration(int64(m) * int64(time.Second) / p.rate))
		}
		if err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
}

// cut closes the proxy and every connection through it.
func (p *throttle) cut() {
	p.closedOnce.Do(func() {
		p.l.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
	})
}

// waitFor polls cond every 5 ms for at most d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("waited %v for %s", d, what)
}

// ovlResult is what one ovl command did.
type ovlResult struct {
	stdout, stderr string
	err            error
}

// ovlIn runs ovl with args in dir, bounded by regTimeout.
func ovlIn(t *testing.T, dir string, args ...string) ovlResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), regTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, regOvl(t), args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("ovl %s timed out after %v", strings.Join(args, " "), regTimeout)
	}
	return ovlResult{out.String(), errb.String(), err}
}

// mustOvl is ovlIn that fails t when ovl fails.
func mustOvl(t *testing.T, dir string, args ...string) ovlResult {
	t.Helper()
	r := ovlIn(t, dir, args...)
	if r.err != nil {
		t.Fatalf("ovl %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.err, r.stdout, r.stderr)
	}
	return r
}

// buildEvents runs `ovl --json build` and returns the status of every
// step, "container/index" -> status, and the warnings.
func buildEvents(t *testing.T, dir string, args ...string) (map[string]builder.Status, []string, ovlResult) {
	t.Helper()
	r := mustOvl(t, dir, append([]string{"--json", "build"}, args...)...)
	statuses, warnings := parseEvents(r.stdout)
	return statuses, warnings, r
}

// parseEvents reads the NDJSON of `ovl --json build`.
func parseEvents(stdout string) (map[string]builder.Status, []string) {
	statuses := map[string]builder.Status{}
	var warnings []string
	sc := bufio.NewScanner(strings.NewReader(stdout))
	for sc.Scan() {
		var e builder.Event
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		switch {
		case e.Status == builder.StatusWarning:
			warnings = append(warnings, e.Detail)
		case e.Index > 0 && e.Status != builder.StatusRunning:
			statuses[fmt.Sprintf("%s/%d", e.Container, e.Index)] = e.Status
		}
	}
	return statuses, warnings
}

// count counts the steps with status s.
func countStatus(m map[string]builder.Status, s builder.Status) int {
	n := 0
	for _, v := range m {
		if v == s {
			n++
		}
	}
	return n
}

const registryProject = `
containers:
  base:
    setup:
    - !Tar {url: ./base.tar.gz}
    - !Env {GREETING: hello}
    - !Sh |
        mkdir -p /opt/data/sub /etc/app
        echo "$GREETING" > /etc/app/motd
        echo one > /opt/data/one
        ln /opt/data/one /opt/data/one-again
        chown 1234:5678 /opt/data/one
        chmod 4750 /opt/data/one
        ln -s ../etc/app/motd /opt/motd
        echo gone > /opt/data/sub/gone
        rm /etc/group
    - !Sh |
        rm -rf /opt/data
        mkdir -p /opt/data
        echo fresh > /opt/data/new
        rm -r /var/cache
    - !Text {/etc/app/config: "mode = test\n"}
  app:
    setup:
    - !Container base
    - !Copy {source: /work/src, path: /opt/app}
    - !Sh "chmod 755 /opt/app/run.sh; sed -i s/hello/bye/ /etc/app/motd"
    environ: {APP_MODE: test}
`

// newRegistryProject writes the project into a fresh directory: its
// vagga.yaml (yaml, or registryProject), a busybox base tarball, src/.
func newRegistryProject(t *testing.T, yaml string) string {
	t.Helper()
	if yaml == "" {
		yaml = registryProject
	}
	dir := t.TempDir()
	t.Cleanup(func() { exec.Command("rm", "-rf", filepath.Join(dir, ".vagga")).Run() })
	testutil.BusyboxTar(t, filepath.Join(dir, "base.tar.gz"))
	files := map[string]string{"vagga.yaml": yaml, "src/run.sh": "#!/bin/sh\necho running\n", "src/data.txt": "data\n"}
	for name, text := range files {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// rootListing is the full listing of container name's root (times
// included), as a string.
func rootListing(t *testing.T, dir, name string) string {
	t.Helper()
	return strings.Join(testutil.FullTreeListing(t, filepath.Join(dir, ".vagga", name)+"/"), "\n")
}

var timeField = regexp.MustCompile(` ?mtime=\S+`)

// withoutTimes drops the times from a FullTreeListing.
func withoutTimes(listing string) string {
	return timeField.ReplaceAllString(listing, "")
}

// TestRegistryBuildCache: a build pushes its steps; after `ovl clean
// --everything`, and in another project directory, a build with
// --cache-from runs no step and gives a byte-identical root; after an
// edit of step 5 of base, steps 1-4 are pulled and the rest run.
func TestRegistryBuildCache(t *testing.T) {
	requireRegistryTools(t)
	reg := startRegistry(t)
	ref := reg.ref("proj/cache:main")
	dir := newRegistryProject(t, "")
	st, warnings, _ := buildEvents(t, dir, "app", "--insecure-registry", "--cache-to", ref, "--cache-from", ref)
	if countStatus(st, builder.StatusDone) != 8 || len(warnings) > 0 {
		t.Fatalf("first build: %v, warnings %v; want 8 steps done", st, warnings)
	}
	want := rootListing(t, dir, "app")

	mustOvl(t, dir, "clean", "--everything")
	st, warnings, _ = buildEvents(t, dir, "app", "--insecure-registry", "--cache-from", ref)
	if countStatus(st, builder.StatusPulled) != 8 || countStatus(st, builder.StatusDone) != 0 || len(warnings) > 0 {
		t.Errorf("after clean --everything: %v, warnings %v; want all 8 steps pulled, none run", st, warnings)
	}
	if got := rootListing(t, dir, "app"); got != want {
		t.Errorf("the root built from the cache differs:\nbuilt:\n%s\nfrom the cache:\n%s", want, got)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".vagga", ".layers", ".tmp", "*")); len(left) > 0 {
		t.Errorf("downloads or uploads left behind: %v", left)
	}

	other := newRegistryProject(t, "")
	st, _, _ = buildEvents(t, other, "app", "--insecure-registry", "--cache-from", ref)
	if countStatus(st, builder.StatusPulled) != 8 {
		t.Errorf("another project directory: %v; want all 8 steps pulled", st)
	}
	if got := rootListing(t, other, "app"); got != want {
		t.Errorf("the root in another directory differs:\nbuilt:\n%s\nthere:\n%s", want, got)
	}

	edited := strings.Replace(registryProject, "mode = test", "mode = edited", 1)
	if err := os.WriteFile(filepath.Join(other, "vagga.yaml"), []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	mustOvl(t, other, "clean", "--everything")
	st, _, _ = buildEvents(t, other, "app", "--insecure-registry", "--cache-from", ref)
	for k, s := range st {
		wantS := builder.StatusDone
		if strings.HasPrefix(k, "base/") && k < "base/5" {
			wantS = builder.StatusPulled
		}
		if s != wantS {
			t.Errorf("after editing step 5 of base: step %s %s, want %s (all: %v)", k, s, wantS, st)
		}
	}
}

// TestRegistryUnavailable: a registry that is down, one that never
// answers, and one that answers garbage each cost one warning line; the
// build runs every step and succeeds.
func TestRegistryUnavailable(t *testing.T) {
	requireRegistryTools(t)
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close() // hold every connection open, say nothing
		}
	}()
	garbage := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		w.Write([]byte("this is not a manifest"))
	})}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go garbage.Serve(gl)
	defer garbage.Close()
	for name, addr := range map[string]string{"down": freeLoopbackAddr(t), "silent": silent.Addr().String(), "garbage": gl.Addr().String()} {
		t.Run(name, func(t *testing.T) {
			dir := newRegistryProject(t, "")
			ref := addr + "/proj/cache:main"
			args := []string{"app", "--insecure-registry", "--registry-timeout", "2s", "--cache-from", ref, "--cache-to", ref}
			st, warnings, r := buildEvents(t, dir, args...)
			if countStatus(st, builder.StatusDone) != 8 {
				t.Errorf("%v; want all 8 steps run", st)
			}
			if len(warnings) != 2 || r.stderr != "" { // the lookup, then the push of the index
				t.Errorf("warnings: %q, stderr %q; want one warning for the lookup and one for the push, all on stdout", warnings, r.stderr)
			}
			text := mustOvl(t, newRegistryProject(t, ""), append([]string{"build"}, args...)...)
			if n := strings.Count(text.stderr, "warning"); n != 2 {
				t.Errorf("without --json, %d warning lines on stderr, want 2:\n%s", n, text.stderr)
			}
		})
	}
}

// bigProject is a project whose !Tar step unpacks 64 MiB of random
// bytes (incompressible, the same every time), so that a transfer
// through a throttle takes seconds.
func bigProject(t *testing.T) string {
	t.Helper()
	dir := newRegistryProject(t, `
containers:
  big:
    setup:
    - !Tar {url: ./base.tar.gz}
    - !Tar {url: ./big.tar.gz, path: /opt}
    - !Text {/etc/after: "after the big step\n"}
`)
	f, err := os.Create(filepath.Join(dir, "big.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	zw, _ := gzip.NewWriterLevel(f, gzip.NoCompression)
	tw := tar.NewWriter(zw)
	const size = 64 << 20
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "big.bin", Mode: 0o644, Size: size, ModTime: time.Unix(1700000000, 0)})
	io.Copy(tw, io.LimitReader(rand.New(rand.NewSource(1)), size))
	tw.Close()
	zw.Close()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestRegistryKilled kills the registry halfway through a push and
// halfway through a pull: the build goes on with a warning, keeps no
// partial layer, and the next push and pull finish the job.
func TestRegistryKilled(t *testing.T) {
	requireRegistryTools(t)
	regOvl(t) // built here, not in the goroutines below
	reg := startRegistry(t)
	dir := bigProject(t)

	// Mid-push: the registry dies when 8 MiB of the big layer are up.
	thr := startThrottle(t, reg.addr, 16<<20)
	ref := thr.addr + "/proj/big:main"
	done := make(chan ovlResult, 1)
	go func() { done <- ovlIn(t, dir, "--json", "build", "big", "--insecure-registry", "--cache-to", ref) }()
	waitFor(t, 2*time.Minute, "8 MiB pushed", func() bool { return thr.up.Load() > 8<<20 })
	reg.kill()
	thr.cut()
	r := <-done
	if _, w := parseEvents(r.stdout); r.err != nil || len(w) != 1 {
		t.Fatalf("build with the registry killed mid-push: %v, warnings %q (want success and one warning)\n%s", r.err, w, r.stderr)
	}
	want := rootListing(t, dir, "big")

	// The registry comes back: the next push uploads what is missing.
	reg.start()
	ref = reg.ref("proj/big:main")
	st, warnings, _ := buildEvents(t, dir, "big", "--insecure-registry", "--cache-to", ref)
	if countStatus(st, builder.StatusCached) != 3 || len(warnings) > 0 {
		t.Fatalf("push after the restart: %v, warnings %v", st, warnings)
	}

	// Mid-pull: the registry dies when 8 MiB of the big layer are down.
	mustOvl(t, dir, "clean", "--everything")
	thr = startThrottle(t, reg.addr, 16<<20)
	go func() {
		done <- ovlIn(t, dir, "--json", "build", "big", "--insecure-registry", "--cache-from", thr.addr+"/proj/big:main")
	}()
	waitFor(t, 2*time.Minute, "8 MiB pulled", func() bool { return thr.down.Load() > 8<<20 })
	reg.kill()
	thr.cut()
	r = <-done
	st, warnings = parseEvents(r.stdout)
	if r.err != nil || len(warnings) != 1 || st["big/2"] != builder.StatusDone {
		t.Fatalf("build with the registry killed mid-pull: %v, %v, warnings %q (want success, the big step run, one warning)\n%s", r.err, st, warnings, r.stderr)
	}
	// Steps 2 and 3 ran here: the same files, with this run's times.
	if got := withoutTimes(rootListing(t, dir, "big")); got != withoutTimes(want) {
		t.Errorf("the root after a cut pull differs:\nwant:\n%s\ngot:\n%s", withoutTimes(want), got)
	}
	if tmp, _ := os.ReadDir(filepath.Join(dir, ".vagga/.layers/.tmp")); len(tmp) > 0 {
		t.Errorf("the cut pull left pending layers: %v", tmp)
	}

	// Back again: a clean build pulls every step, the big one whole.
	reg.start()
	mustOvl(t, dir, "clean", "--everything")
	st, warnings, _ = buildEvents(t, dir, "big", "--insecure-registry", "--cache-from", ref)
	if countStatus(st, builder.StatusPulled) != 3 || len(warnings) > 0 {
		t.Errorf("pull after the restart: %v, warnings %v; want 3 steps pulled", st, warnings)
	}
	if got := rootListing(t, dir, "big"); got != want {
		t.Errorf("the root pulled after the restart differs:\nwant:\n%s\ngot:\n%s", want, got)
	}
}

// TestRegistryCorruptBlob corrupts a layer blob in the registry's
// storage: the digest check catches it, that step runs here (one
// warning), the others are pulled, and the root is what it was.
func TestRegistryCorruptBlob(t *testing.T) {
	requireRegistryTools(t)
	reg := startRegistry(t)
	ref := reg.ref("proj/cache:main")
	dir := newRegistryProject(t, "")
	buildEvents(t, dir, "app", "--insecure-registry", "--cache-to", ref)
	want := rootListing(t, dir, "app")

	// The !Tar layer is the largest blob: flip a byte in its middle.
	var biggest string
	var size int64
	filepath.Walk(filepath.Join(reg.storage, "docker/registry/v2/blobs"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && fi.Size() > size {
			biggest, size = p, fi.Size()
		}
		return nil
	})
	data, err := os.ReadFile(biggest)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(biggest, data, 0o644); err != nil {
		t.Fatal(err)
	}

	mustOvl(t, dir, "clean", "--everything")
	st, warnings, _ := buildEvents(t, dir, "app", "--insecure-registry", "--cache-from", ref)
	if st["base/1"] != builder.StatusDone || countStatus(st, builder.StatusPulled) != 7 {
		t.Errorf("%v; want the !Tar step run, the 7 others pulled", st)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "does not match its digest") {
		t.Errorf("warnings %q; want one about the digest", warnings)
	}
	if got := rootListing(t, dir, "app"); got != want {
		t.Errorf("root differs after the corrupt blob:\nwant:\n%s\ngot:\n%s", want, got)
	}
}

// findList is the sorted output of find, made relative, without what a
// runtime mounts over the image (/proc, /sys, /dev, /work, /run).
func findList(out string) []string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(l), "."), "/")
		skip := l == ""
		for _, m := range []string{"proc", "sys", "dev", "work", "run"} {
			skip = skip || l == m || strings.HasPrefix(l, m+"/")
		}
		if !skip {
			lines = append(lines, l)
		}
	}
	sort.Strings(lines)
	return lines
}

// TestRegistryImage: an image ovl push wrote, copied with skopeo and
// unpacked by umoci, is the container's root byte for byte and lists
// what `ovl run CONTAINER -- find /` lists; ovl pull and ovl export
// give the same tree.
func TestRegistryImage(t *testing.T) {
	requireRegistryTools(t, "skopeo", "umoci")
	reg := startRegistry(t)
	dir := newRegistryProject(t, "")
	ref := reg.ref("proj/app:v1")
	mustOvl(t, dir, "push", "--insecure-registry", "app", ref)
	want := rootListing(t, dir, "app")

	work := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), regTimeout)
	defer cancel()
	layout := filepath.Join(work, "layout")
	if out, err := exec.CommandContext(ctx, "skopeo", "copy", "--src-tls-verify=false", "docker://"+ref, "oci:"+layout+":app").CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy: %v\n%s", err, out)
	}
	unpack := func(layout, tag string) string {
		bundle := filepath.Join(t.TempDir(), "bundle")
		if out, err := exec.CommandContext(ctx, "umoci", "unpack", "--image", layout+":"+tag, bundle).CombinedOutput(); err != nil {
			t.Fatalf("umoci unpack: %v\n%s", err, out)
		}
		return filepath.Join(bundle, "rootfs")
	}
	rootfs := unpack(layout, "app")
	if got := strings.Join(testutil.FullTreeListing(t, rootfs), "\n"); got != want {
		t.Errorf("umoci's rootfs of the pushed image differs from the root:\nroot:\n%s\numoci:\n%s", want, got)
	}
	var cfg struct {
		Process struct {
			Env []string `json:"env"`
			Cwd string   `json:"cwd"`
		} `json:"process"`
	}
	if b, err := os.ReadFile(filepath.Join(filepath.Dir(rootfs), "config.json")); err == nil {
		json.Unmarshal(b, &cfg)
	}
	if !contains(cfg.Process.Env, "GREETING=hello") || !contains(cfg.Process.Env, "APP_MODE=test") || cfg.Process.Cwd != "/work" {
		t.Errorf("the image's runtime config: env %v, cwd %q; want GREETING, APP_MODE and /work", cfg.Process.Env, cfg.Process.Cwd)
	}

	run := mustOvl(t, dir, "run", "app", "--", "find", "/")
	cmd := exec.CommandContext(ctx, "find", ".")
	cmd.Dir = rootfs
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if a, b := findList(run.stdout), findList(string(out)); strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Errorf("ovl run app -- find / and the image list different files:\novl run:\n%s\nimage:\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
	}

	pulled := filepath.Join(t.TempDir(), "pulled")
	mustOvl(t, dir, "pull", "--insecure-registry", ref, pulled)
	if got := strings.Join(testutil.FullTreeListing(t, filepath.Join(pulled, "root")), "\n"); got != want {
		t.Errorf("ovl pull's root differs:\nroot:\n%s\npulled:\n%s", want, got)
	}

	exported := filepath.Join(t.TempDir(), "exported")
	mustOvl(t, dir, "export", "app", "--oci-layout", exported)
	if got := strings.Join(testutil.FullTreeListing(t, unpack(exported, "app")), "\n"); got != want {
		t.Errorf("umoci's rootfs of the exported image differs:\nroot:\n%s\numoci:\n%s", want, got)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// testUser is the registry user of TestRegistryAuth: its password is
// "ovl-test-password" (bcrypt, cost 4).
const testUser = "ovl:$2b$04$uQ87TNm.ZuVgHtCRnPCfee9fKxLMfMm1.u4.nzc1FYSqtkbGoV3kG\n"

// TestRegistryAuth: a registry that wants a login refuses a push without
// credentials (ovl push fails naming the cause; a build cache warns and
// builds) and takes one with $REGISTRY_AUTH_FILE, from which the next
// build pulls every step.
func TestRegistryAuth(t *testing.T) {
	requireRegistryTools(t)
	reg := startRegistry(t, testUser)
	dir := newRegistryProject(t, "")
	ref := reg.ref("proj/cache:main")

	st, warnings, _ := buildEvents(t, dir, "app", "--insecure-registry", "--cache-to", ref)
	if countStatus(st, builder.StatusDone) != 8 || len(warnings) != 1 || !strings.Contains(warnings[0], "login") {
		t.Errorf("build cache without credentials: %v, warnings %q; want the build and one warning saying to log in", st, warnings)
	}
	r := ovlIn(t, dir, "push", "--insecure-registry", "app", reg.ref("proj/app:v1"))
	if r.err == nil || !strings.Contains(r.stderr, "podman login") {
		t.Errorf("push without credentials: %v\n%s; want a failure saying how to log in", r.err, r.stderr)
	}

	auth := filepath.Join(t.TempDir(), "auth.json")
	cred := base64.StdEncoding.EncodeToString([]byte("ovl:ovl-test-password"))
	if err := os.WriteFile(auth, []byte(`{"auths": {"`+reg.addr+`": {"auth": "`+cred+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("REGISTRY_AUTH_FILE", auth)
	_, warnings, _ = buildEvents(t, dir, "app", "--insecure-registry", "--cache-to", ref)
	if len(warnings) > 0 {
		t.Fatalf("build cache with credentials: warnings %q", warnings)
	}
	mustOvl(t, dir, "clean", "--everything")
	st, warnings, _ = buildEvents(t, dir, "app", "--insecure-registry", "--cache-from", ref)
	if countStatus(st, builder.StatusPulled) != 8 || len(warnings) > 0 {
		t.Errorf("pull with credentials: %v, warnings %q; want all 8 steps pulled", st, warnings)
	}
	mustOvl(t, dir, "push", "--insecure-registry", "app", reg.ref("proj/app:v1"))
}
