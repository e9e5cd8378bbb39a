package selector

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/layer"
)

// fakeReport is a report in which every probe passed, except those named
// in failing, which fail with an error naming them.
func fakeReport(uid int, kernel string, failing ...string) *Report {
	r := &Report{Kernel: kernel, UID: uid, LayerDir: "/var/lib/ovl", LayerFS: "ext4"}
	names := append([]string{ProbeUserns}, namespaceProbeNames()...)
	names = append(names, ProbeDevFuse, ProbeFusermount, ProbeFuseHost)
	for _, n := range names {
		p := Result{Name: n, OK: true}
		if slices.Contains(failing, n) {
			p = Result{Name: n, Error: n + " refused"}
		}
		r.Probes = append(r.Probes, p)
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
			wantHint: "keep layers on a local filesystem"},
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
			if tt.wantHint != "" && !someContains(d.Hints, tt.wantHint) {
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
