package selector

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ovl-dev/ovl/fusefs"
	"github.com/ovl-dev/ovl/internal/reexec"
	"github.com/ovl-dev/ovl/internal/userns"
	"github.com/ovl-dev/ovl/layer"
	"github.com/ovl-dev/ovl/native"
)

// probeEntry is the re-exec entry that runs the mount probes of an
// ordinary user inside a new user and mount namespace.
const probeEntry = "selector-probe"

func init() { reexec.Register(probeEntry, probeEntryMain) }

// ProbeFunc answers what works here for layers kept under layerDir. Probe
// is the real one; tests inject fakes through Options.Prober.
type ProbeFunc func(ctx context.Context, layerDir string) (*Report, error)

// Probe probes this kernel and user now, with test mounts under layerDir
// (which must exist and be writable), uncached. Probes run in parallel.
// A probe that fails is a "no" in the report, not an error; the error is
// for a report that could not be made at all.
func Probe(ctx context.Context, layerDir string) (*Report, error) {
	start := time.Now()
	r, err := newReport(layerDir)
	if err != nil {
		return nil, err
	}
	removeStale(layerDir)
	var wg sync.WaitGroup
	var mounts []Result
	wg.Go(func() { mounts = mountProbes(ctx, layerDir) })
	hostProbes := []func() Result{supportsDevFuse, timed(ProbeFusermount, hasFusermount3),
		timed(ProbeFuseOtherUIDs, func() (bool, string, error) { ok, why := fusefs.OtherUsers(); return ok, why, nil })}
	if !userns.CanMount() {
		hostProbes = append(hostProbes, timed(ProbeFuseHost, func() (bool, string, error) {
			return supportsFuseHost(ctx, layerDir, fusefs.NewBackend())
		}))
	}
	host := runProbes(hostProbes...)
	wg.Wait()
	r.Probes = append(mounts, host...)
	r.ProbedAt = time.Now().UTC()
	r.ProbeMillis = float64(time.Since(start).Microseconds()) / 1000
	return r, nil
}

// mountProbes runs the probes that mount: in place for a caller holding
// CAP_SYS_ADMIN, and in a new user namespace, as an ordinary user's are,
// for a caller without it (root in a default container is one) or whose
// own kernel overlay mounts failed, unless the layer dir's filesystem
// refused them. Capability, not uid, decides.
func mountProbes(ctx context.Context, dir string) []Result {
	if !userns.CanMount() {
		return probeInUserns(ctx, dir)
	}
	in := namespaceProbes(ctx, dir, ModeInPlace)
	for _, p := range in {
		if p.Name == ProbeNative && p.OK {
			return in
		}
	}
	if fs, _, err := layerFS(dir); err == nil && !upperCapable(fs) {
		// Refused for the layer dir's filesystem: a user namespace
		// cannot help, another directory can (place.go).
		return in
	}
	return append(in, probeInUserns(ctx, dir)...)
}

// newReport fills in who is asking, on what kernel, for which layer
// filesystem.
func newReport(layerDir string) (*Report, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return nil, fmt.Errorf("uname: %w", err)
	}
	fsType, _, err := layerFS(layerDir)
	if err != nil {
		return nil, err
	}
	return &Report{
		Kernel:          unix.ByteSliceToString(u.Release[:]),
		KernelVersion:   unix.ByteSliceToString(u.Version[:]),
		UID:             os.Geteuid(),
		InUserNamespace: userns.InUserNamespace(),
		CanMount:        userns.CanMount(),
		CanChroot:       userns.HasCap(unix.CAP_SYS_CHROOT),
		Confinement:     userns.Confined(),
		LayerDir:        layerDir,
		LayerFS:         fsType,
	}, nil
}

// namespaceProbes runs every probe that mounts, in this process's mount
// namespace, in parallel, and tags their results with mode.
func namespaceProbes(ctx context.Context, dir string, mode Mode) []Result {
	ns := layer.NamespaceFor(userns.Privileged())
	p := &overlayProber{dir: dir, ns: ns, mount: native.New().Mount}
	with := func(f func(context.Context) (bool, string, error)) func() (bool, string, error) {
		return func() (bool, string, error) { return f(ctx) }
	}
	fns := []func() Result{
		timed(ProbeNative, with(p.supportsNative)),
		timed(ProbeUserxattr, with(p.supportsUserxattr)),
		timed(ProbeTwoLowers, with(p.supportsTwoLowers)),
		timed(ProbeWhiteout, with(p.supportsWhiteout)),
		timed(ProbeOpaque, with(p.supportsOpaqueDir)),
		timed(ProbeMknod, with(p.supportsMknodWhiteout)),
		timed(ProbeLowerdirPlus, with(p.supportsLowerdirPlus)),
	}
	for _, f := range features {
		fns = append(fns, timed(f.probe, func() (bool, string, error) { return p.supportsFeature(ctx, f) }))
	}
	fns = append(fns,
		timed(ProbeFuseMount, func() (bool, string, error) { return supportsFuseMount(dir) }),
		timed(ProbeFuseBackend, func() (bool, string, error) {
			return supportsFuseBackend(ctx, dir, ns, fusefs.NewBackend())
		}),
	)
	out := runProbes(fns...)
	for i := range out {
		out[i].Mode = mode
	}
	return out
}

// timed makes a yes/no probe into one that returns its named, timed
// Result.
func timed(name string, probe func() (ok bool, detail string, err error)) func() Result {
	return func() Result {
		start := time.Now()
		ok, detail, err := probe()
		return result(name, start, ok, detail, err)
	}
}

// runProbes runs fns in parallel and returns their results in order.
func runProbes(fns ...func() Result) []Result {
	out := make([]Result, len(fns))
	var wg sync.WaitGroup
	for i, f := range fns {
		wg.Go(func() { out[i] = f() })
	}
	wg.Wait()
	return out
}

// probeInUserns runs namespaceProbes in a new user and mount namespace
// (an ordinary user's only way to mount) and returns its results, tagged
// ModeUserns, with ProbeUserns first. If the namespace cannot be made,
// every mount probe fails with that reason.
func probeInUserns(ctx context.Context, dir string) []Result {
	start := time.Now()
	results, err := runProbeEntry(ctx, dir)
	if err == nil {
		return append([]Result{result(ProbeUserns, start, true, "", nil)}, results...)
	}
	out := []Result{result(ProbeUserns, start, false, usernsRefusal(err), err)}
	for _, name := range namespaceProbeNames() {
		out = append(out, Result{Name: name, Mode: ModeUserns, Detail: "needs a user namespace", Error: err.Error()})
	}
	return out
}

func namespaceProbeNames() []string {
	names := []string{ProbeNative, ProbeUserxattr, ProbeTwoLowers, ProbeWhiteout, ProbeOpaque, ProbeMknod, ProbeLowerdirPlus}
	for _, f := range features {
		names = append(names, f.probe)
	}
	return append(names, ProbeFuseMount, ProbeFuseBackend)
}

// runProbeEntry starts probeEntryMain in a new user and mount namespace
// and reads the results it writes to its fd 3.
func runProbeEntry(ctx context.Context, dir string) ([]Result, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer pr.Close()
	cmd := userns.UserCommand(probeEntry, dir)
	cmd.ExtraFiles = []*os.File{pw}
	var stderr reexec.LimitedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		pw.Close()
		return nil, fmt.Errorf("start a process in a new user namespace: %w", err)
	}
	pw.Close()
	stop := context.AfterFunc(ctx, func() { cmd.Process.Kill() })
	defer stop()
	var results []Result
	decErr := json.NewDecoder(pr).Decode(&results)
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("probe in a user namespace: %w: %s", err, stderr.String())
	}
	if decErr != nil {
		return nil, fmt.Errorf("probe in a user namespace: read its results: %w: %s", decErr, stderr.String())
	}
	return results, nil
}

// probeEntryMain runs in the new namespaces: os.Args[1] is the layer dir.
// It writes the results as JSON to fd 3.
func probeEntryMain() {
	out := os.NewFile(3, "results")
	unix.CloseOnExec(3) // daemons started by the probes must not hold it
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "selector-probe: no layer dir given")
		os.Exit(2)
	}
	if err := userns.MakePrivate(); err != nil {
		fmt.Fprintln(os.Stderr, "selector-probe: make mounts private:", err)
		os.Exit(1)
	}
	results := namespaceProbes(context.Background(), os.Args[1], ModeUserns)
	if err := json.NewEncoder(out).Encode(results); err != nil {
		fmt.Fprintln(os.Stderr, "selector-probe: write results:", err)
		os.Exit(1)
	}
}
