package selector

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/internal/userns"
	"github.com/ovl-dev/ovl/layer"
)

// fakeReport is a report in which every probe passed, except those named
// in failing, which fail with an error naming them. Root holds
// CAP_SYS_ADMIN (real root on a host); its probes mount in place.
func fakeReport(uid int, kernel string, failing ...string) *Report {
	r := &Report{Kernel: kernel, UID: uid, CanMount: uid == 0, CanChroot: uid == 0, LayerDir: "/var/lib/ovl", LayerFS: "ext4"}
	names := append([]string{ProbeUserns}, namespaceProbeNames()...)
	names = append(names, ProbeDevFuse, ProbeFusermount, ProbeFuseHost)
	for _, n := range names {
		p := Result{Name: n, OK: true}
		if slices.Contains(failing, n) {
			p = Result{Name: n, Error: n + " refused"}
			if n == ProbeDevFuse {
				p.Hint = "make /dev/fuse 0666"
			}
		}
		r.Probes = append(r.Probes, p)
	}
	return r
}

// containerReport is a report of root without CAP_SYS_ADMIN in a
// podman container (its probes mount in a user namespace), or, with
// canMount, of root with it whose own mounts failed where those named
// in inPlaceFailing, then probed in a user namespace too. The probes
// named in failing fail in every mode.
func containerReport(canMount bool, inPlaceFailing []string, failing ...string) *Report {
	r := &Report{Kernel: "6.18.0", UID: 0, CanMount: canMount, CanChroot: true, LayerDir: "/var/lib/ovl", LayerFS: "tmpfs",
		Confinement: userns.Confinement{Seccomp: true, Container: "podman"}}
	add := func(n string, m Mode, fail bool) {
		p := Result{Name: n, Mode: m, OK: !fail}
		if fail {
			p.Error = n + " refused"
		}
		r.Probes = append(r.Probes, p)
	}
	if canMount {
		for _, n := range namespaceProbeNames() {
			add(n, ModeInPlace, slices.Contains(failing, n) || slices.Contains(inPlaceFailing, n))
		}
	}
	add(ProbeUserns, "", slices.Contains(failing, ProbeUserns))
	for _, n := range namespaceProbeNames() {
		add(n, ModeUserns, slices.Contains(failing, n) || slices.Contains(failing, ProbeUserns))
	}
	add(ProbeFusermount, "", true)
	if slices.Contains(failing, ProbeDevFuse) {
		why, hint := "no /dev/fuse device node in this container", "run the container with --device /dev/fuse"
		r.Probes = append(r.Probes, Result{Name: ProbeDevFuse, Detail: why, Hint: hint, Error: "open /dev/fuse: no such file or directory"})
	} else {
		add(ProbeDevFuse, "", false)
	}
	return r
}

func TestChoose(t *testing.T) {
	nativeMissing := []string{ProbeNative, ProbeWhiteout, ProbeOpaque, ProbeTwoLowers}
	fuseMissing := []string{ProbeDevFuse, ProbeFuseMount, ProbeFuseBackend}
	tests := []struct {
		name       string
		report     *Report
		req        Request
		want       string
		wantErr    error  // errors.Is target; nil: no error
		wantReason string // a substring of some reason
		wantHint   string // a substring of some hint; "" for no hints at all
	}{
		{name: "everything works: native", report: fakeReport(0, "6.18.0"), want: backend.Native, wantReason: "kernel overlay works for root"},
		{name: "user: native through a user namespace", report: fakeReport(1000, "6.18.0"), want: backend.Native, wantReason: "uid 1000 through a user namespace"},
		{name: "native missing: FUSE", report: fakeReport(1000, "5.4.0", nativeMissing...), want: backend.FUSE,
			wantReason: "native: probe native: no", wantHint: "unprivileged overlay needs Linux 5.11 (this is 5.4.0)"},
		{name: "native and FUSE missing: copy", report: fakeReport(1000, "5.4.0", append(nativeMissing, fuseMissing...)...), want: backend.Copy,
			wantReason: "fuse: /dev/fuse", wantHint: "make /dev/fuse 0666"},
		{name: "no user namespaces: FUSE needs them too, copy", report: fakeReport(1000, "6.1.0", append([]string{ProbeUserns}, namespaceProbeNames()...)...), want: backend.Copy,
			wantReason: "cannot make a user namespace", wantHint: "kernel.unprivileged_userns_clone"},
		{name: "FUSE backend not built: copy", report: fakeReport(0, "4.4.0", append(nativeMissing, ProbeFuseBackend)...), want: backend.Copy,
			wantReason: "ovl's FUSE backend: no: fuse_backend refused"},
		{name: "layers on nfs", report: func() *Report { r := fakeReport(0, "6.18.0", nativeMissing...); r.LayerFS = "nfs"; return r }(), want: backend.FUSE,
			wantHint: "is on nfs, which kernel overlay refuses as an upper: pass --layer-dir"},
		{name: "layers on ext4, native refused: no hint to move them", report: fakeReport(0, "6.18.0", nativeMissing...), want: backend.FUSE,
			wantReason: "native: probe native: no", wantHint: "-"},
		{name: "a project on a container's overlay root: move the project", report: func() *Report {
			r := containerReport(false, nil, append(nativeMissing, ProbeDevFuse)...)
			r.LayerFS = "overlay"
			return r
		}(), req: Request{Project: "/src"}, want: backend.Copy, wantHint: "the project /src is on the container's overlay root"},
		{name: "container root without CAP_SYS_ADMIN: native in a user namespace", report: containerReport(false, nil, ProbeDevFuse),
			want: backend.Native, wantReason: "root without CAP_SYS_ADMIN, through a user namespace"},
		{name: "root whose own mounts fail: native in a new user namespace", report: containerReport(true, nativeMissing),
			want: backend.Native, wantReason: "root through a new user namespace (userxattr), its own mounts refused"},
		{name: "root whose own native mounts fail, FUSE in place before FUSE in a user namespace", report: containerReport(true, nil, nativeMissing...),
			want: backend.FUSE, wantReason: "FUSE works for root"},
		{name: "no /dev/fuse in a container: the flag that adds it", report: containerReport(false, nil, append(nativeMissing, ProbeDevFuse)...),
			want: backend.Copy, wantReason: "no /dev/fuse device node in this container", wantHint: "--device /dev/fuse"},
		{name: "FUSE mounted through fusermount3 where a direct mount is refused", report: fakeReport(1000, "6.18.0", append(nativeMissing, ProbeFuseMount)...),
			want: backend.FUSE},
		{name: "ovl mount as a user: native cannot outlive its namespace, FUSE via fusermount3", report: fakeReport(1000, "6.18.0"),
			req: Request{HostMount: true}, want: backend.FUSE, wantReason: "only inside a user namespace"},
		{name: "ovl mount as a user without user namespaces: FUSE through fusermount3",
			report: fakeReport(1000, "6.1.0", append([]string{ProbeUserns}, namespaceProbeNames()...)...),
			req:    Request{HostMount: true}, want: backend.FUSE, wantReason: "FUSE works for uid 1000, mounted with fusermount3"},
		{name: "ovl mount as a user without fusermount3: copy", report: fakeReport(1000, "6.18.0", ProbeFusermount, ProbeFuseHost),
			req: Request{HostMount: true}, want: backend.Copy, wantHint: "install fuse3"},
		{name: "ovl mount as root: native in place", report: fakeReport(0, "6.18.0", ProbeFusermount), req: Request{HostMount: true}, want: backend.Native},
		{name: "spec deeper than the kernel's limit: FUSE", report: fakeReport(0, "6.18.0"),
			req: Request{Spec: &layer.Spec{Lowers: make([]string, 501)}}, want: backend.FUSE, wantReason: "501 lower layers exceed the kernel's limit of 500"},
		{name: "metacopy asked for as a user: FUSE", report: fakeReport(1000, "6.18.0", ProbeMetacopy, ProbeRedirectDir),
			req: Request{Spec: &layer.Spec{Lowers: []string{"a"}, Options: layer.Options{Metacopy: true}}}, want: backend.FUSE,
			wantReason: "metacopy was asked for", wantHint: "metacopy needs root"},
		{name: "forced FUSE that works", report: fakeReport(0, "6.18.0"), req: Request{Force: backend.FUSE, ForcedBy: "--backend"},
			want: backend.FUSE, wantReason: "fuse forced by --backend"},
		{name: "forced copy always works", report: fakeReport(1000, "4.4.0", append(nativeMissing, fuseMissing...)...),
			req: Request{Force: backend.Copy, ForcedBy: "OVL_BACKEND"}, want: backend.Copy},
		{name: "forced native unavailable: error", report: fakeReport(1000, "5.4.0", nativeMissing...), req: Request{Force: backend.Native, ForcedBy: "OVL_BACKEND"},
			want: backend.Native, wantErr: backend.ErrUnavailable, wantReason: "native: probe native: no", wantHint: "needs Linux 5.11"},
		{name: "forced FUSE unavailable: error", report: fakeReport(0, "6.18.0", ProbeFuseBackend), req: Request{Force: backend.FUSE},
			want: backend.FUSE, wantErr: backend.ErrUnavailable, wantReason: "fuse_backend refused"},
		{name: "auto is no force", report: fakeReport(0, "6.18.0"), req: Request{Force: "auto"}, want: backend.Native},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Choose(tt.report, tt.req)
			if tt.wantErr == nil && err != nil {
				t.Fatalf("Choose: %v", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Choose error = %v, want errors.Is %v", err, tt.wantErr)
			}
			if d.Backend != tt.want {
				t.Errorf("Backend = %q, want %q (reasons %q)", d.Backend, tt.want, d.Reasons)
			}
			if tt.wantReason != "" && !someContains(d.Reasons, tt.wantReason) {
				t.Errorf("Reasons = %q, want one containing %q", d.Reasons, tt.wantReason)
			}
			if tt.wantHint == "-" && len(d.Hints) > 0 {
				t.Errorf("Hints = %q, want none", d.Hints)
			}
			if tt.wantHint != "" && tt.wantHint != "-" && !someContains(d.Hints, tt.wantHint) {
				t.Errorf("Hints = %q, want one containing %q", d.Hints, tt.wantHint)
			}
			if tt.wantErr != nil && tt.wantHint != "" && !strings.Contains(err.Error(), tt.wantHint) {
				t.Errorf("error %q does not carry the hint %q", err, tt.wantHint)
			}
			if tt.want == backend.Native && tt.wantErr == nil && len(d.Hints) > 0 {
				t.Errorf("native chosen, yet hints %q", d.Hints)
			}
		})
	}
}

// TestDecisionCarries checks what a Decision carries besides the backend:
// the metadata namespace of the caller, the backend's depth limit, who
// forced it; and that it survives the JSON a run sends across its
// re-exec unchanged.
func TestDecisionCarries(t *testing.T) {
	inUserns := fakeReport(0, "6.18.0")
	inUserns.InUserNamespace = true
	tests := []struct {
		name     string
		report   *Report
		req      Request
		ns       layer.Namespace
		max      int
		forcedBy string
	}{
		{"real root: trusted", fakeReport(0, "6.18.0"), Request{}, layer.Trusted, layer.KernelMaxLayers, ""},
		{"ordinary user: user", fakeReport(1000, "6.18.0"), Request{}, layer.User, layer.KernelMaxLayers, ""},
		{"root in a user namespace: user", inUserns, Request{}, layer.User, layer.KernelMaxLayers, ""},
		{"forced fuse: no depth limit", fakeReport(0, "6.18.0"), Request{Force: backend.FUSE, ForcedBy: EnvBackend}, layer.Trusted, 0, EnvBackend},
		{"forced copy as a user", fakeReport(1000, "4.4.0"), Request{Force: backend.Copy, ForcedBy: "--backend"}, layer.User, 0, "--backend"},
		{"container root without CAP_SYS_ADMIN: user", containerReport(false, nil), Request{}, layer.User, layer.KernelMaxLayers, ""},
		{"root whose own mounts fail: user", containerReport(true, []string{ProbeNative}), Request{}, layer.User, layer.KernelMaxLayers, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Choose(tt.report, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if d.Namespace != tt.ns || d.MaxLayers != tt.max || d.ForcedBy != tt.forcedBy || d.Forced() != (tt.forcedBy != "") {
				t.Errorf("decision %+v: want namespace %v, max layers %d, forced by %q", d, tt.ns, tt.max, tt.forcedBy)
			}
			data, err := json.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			var got Decision
			if err := json.Unmarshal(data, &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, d) {
				t.Errorf("decoded %+v, want %+v", got, d)
			}
			b, err := got.Open()
			if err != nil || b.Name() != d.Backend {
				t.Errorf("Open() = %v, %v; want the %s backend", b, err, d.Backend)
			}
		})
	}
}

func TestChooseUnknownBackend(t *testing.T) {
	_, err := Choose(fakeReport(0, "6.18.0"), Request{Force: "zfs", ForcedBy: "--backend"})
	if err == nil || !strings.Contains(err.Error(), `unknown backend "zfs"`) || !strings.Contains(err.Error(), "native, fuse, copy") {
		t.Fatalf("Choose(zfs) error = %v, want one naming the backend and the choices", err)
	}
	if _, err := Force("zfs", "--backend"); err == nil || !strings.Contains(err.Error(), `--backend: unknown backend "zfs"`) {
		t.Fatalf("Force(zfs) error = %v, want one naming the flag and the backend", err)
	}
}

func TestKernelAtLeast(t *testing.T) {
	tests := []struct {
		release      string
		major, minor int
		want         bool
	}{
		{"6.18.44-fc-v769", 5, 11, true},
		{"5.11.0", 5, 11, true},
		{"5.10.200-lts", 5, 11, false},
		{"4.18.0-553.el8", 5, 8, false},
		{"garbage", 5, 11, true},
	}
	for _, tt := range tests {
		if got := kernelAtLeast(tt.release, tt.major, tt.minor); got != tt.want {
			t.Errorf("kernelAtLeast(%q, %d, %d) = %v, want %v", tt.release, tt.major, tt.minor, got, tt.want)
		}
	}
}

func someContains(ss []string, sub string) bool {
	for _, s := range ss {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// TestIsolation checks how runs isolate their command: in namespaces of
// their own with CAP_SYS_ADMIN, in a user namespace without it, with
// chroot on the copy backend where no namespace can be made (a seccomp
// filter forbids them) and CAP_SYS_CHROOT is held, and not at all
// without that either, with a reason saying so.
func TestIsolation(t *testing.T) {
	noChroot := containerReport(false, nil, ProbeUserns, ProbeDevFuse)
	noChroot.CanChroot = false
	user := fakeReport(1000, "6.18.0", append([]string{ProbeUserns, ProbeDevFuse}, namespaceProbeNames()...)...)
	user.CanChroot = false
	tests := []struct {
		name       string
		report     *Report
		backend    string
		isolation  Isolation
		wantReason string
	}{
		{"root on a host", fakeReport(0, "6.18.0"), backend.Native, IsolateNamespaces, ""},
		{"root in a default container", containerReport(false, nil, ProbeDevFuse), backend.Native, IsolateUserns, ""},
		{"root with CAP_SYS_ADMIN, nothing but copy: its own namespaces", containerReport(true, nil, append(namespaceProbeNames(), ProbeDevFuse)...),
			backend.Copy, IsolateNamespaces, ""},
		{"root where seccomp forbids namespaces: chroot", containerReport(false, nil, ProbeUserns, ProbeDevFuse), backend.Copy, IsolateChroot, "runs enter a copy with chroot"},
		{"root without CAP_SYS_CHROOT either: none", noChroot, backend.Copy, IsolateNone, "runs cannot start here"},
		{"a user where namespaces are forbidden: none", user, backend.Copy, IsolateNone, "chroot needs CAP_SYS_CHROOT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Choose(tt.report, Request{})
			if err != nil {
				t.Fatal(err)
			}
			if d.Backend != tt.backend || d.Isolation != tt.isolation {
				t.Errorf("decision %s isolated by %s, want %s by %s (reasons %q)", d.Backend, d.Isolation, tt.backend, tt.isolation, d.Reasons)
			}
			if tt.wantReason != "" && !someContains(d.Reasons, tt.wantReason) {
				t.Errorf("Reasons = %q, want one containing %q", d.Reasons, tt.wantReason)
			}
		})
	}
}
