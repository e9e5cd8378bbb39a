package selector_test

import (
	"context"
	"fmt"

	"github.com/ovl-dev/ovl/selector"
)

// A kernel without unprivileged overlay (before 5.11), where FUSE works:
// an ordinary user gets the FUSE backend, and a hint says why not native.
func ExampleSelect() {
	oldKernel := func(ctx context.Context, layerDir string) (*selector.Report, error) {
		r := &selector.Report{Kernel: "5.4.0", UID: 1000, LayerDir: layerDir, LayerFS: "ext4"}
		for _, ok := range []string{selector.ProbeUserns, selector.ProbeDevFuse, selector.ProbeFuseMount, selector.ProbeFuseBackend} {
			r.Probes = append(r.Probes, selector.Result{Name: ok, OK: true})
		}
		r.Probes = append(r.Probes, selector.Result{Name: selector.ProbeNative, Error: "mount overlay: operation not permitted"})
		return r, nil
	}
	d, err := selector.Select(context.Background(), selector.Options{
		LayerDir: "/", Backend: "auto", NoCache: true, Prober: oldKernel,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("backend:", d.Backend, "with", d.Namespace, "xattrs")
	for _, r := range d.Reasons {
		fmt.Println("because", r)
	}
	for _, h := range d.Hints {
		fmt.Println("hint:", h)
	}
	// Output:
	// backend: fuse with user xattrs
	// because native: probe native: no: mount overlay: operation not permitted
	// because FUSE works for uid 1000 in a user namespace
	// hint: unprivileged overlay needs Linux 5.11 (this is 5.4.0): upgrade the kernel, or run as root
}
