package main

import (
	"context"
	"fmt"
	"io"
	"os/user"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ovl-dev/ovl/selector"
)

func init() { register(checkNewCmd) }

// checkOptions are `ovl check`'s parsed flags and what it depends on.
type checkOptions struct {
	JSON     bool
	Refresh  bool
	LayerDir string
	// Prober replaces the real probes (tests); nil probes for real.
	Prober selector.ProbeFunc
}

func checkNewCmd(g *globalOptions) *cobra.Command {
	o := &checkOptions{}
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Say which overlay backend works here for you, and why",
		Long: `check probes, by doing it, what this kernel and this user allow: kernel
overlay mounts (as root in place, as an ordinary user inside a user namespace
with userxattr), whiteouts and opaque directories, lowerdir+, the optional
overlay features, /dev/fuse and FUSE mounts. It prints each probe with its
result, the backend ovl would use (native, fuse or copy) and why, and what
you could change to get a faster one.

The answer is cached under ovl's runtime directory per kernel, user and layer
filesystem; --refresh probes again.

Exit status: 0 when an overlay backend (native or fuse) works, 1 when only
the copy fallback is left.`,
		Example: `  ovl check
  ovl check --json | jq -r .backend
  ovl check --refresh --layer-dir /srv/layers
  setpriv --reuid=65534 --regid=65534 --clear-groups ovl check --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.JSON = g.JSON
			return checkRun(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&o.Refresh, "refresh", false, "probe again instead of using the cached answer")
	cmd.Flags().StringVar(&o.LayerDir, "layer-dir", "", "probe the filesystem of this directory, where layers will be kept (default: ovl's state directory)")
	return cmd
}

// checkJSON is what `ovl check --json` prints: the probe report (kernel,
// user, layer filesystem, each probe, whether it came from the cache)
// and the decision.
type checkJSON struct {
	*selector.Report
	User      string   `json:"user"`
	Backend   string   `json:"backend"`
	Namespace string   `json:"xattr_namespace"` // where layers keep overlay metadata: trusted or user
	Reasons   []string `json:"reasons"`
	Hints     []string `json:"hints"`
	Supported bool     `json:"supported"` // native or fuse works: vagga's "overlayfs supported"
	// Forced is set when OVL_BACKEND names a backend, which mounts, runs
	// and builds then use instead of Backend.
	Forced *checkForced `json:"forced,omitempty"`
}

// checkForced says what OVL_BACKEND forces, and why it cannot work if it
// cannot.
type checkForced struct {
	Backend string `json:"backend"`
	Error   string `json:"error,omitempty"`
}

// checkForcedBackend says what OVL_BACKEND forces, judged against r.
func checkForcedBackend(r *selector.Report) *checkForced {
	d, ok, err := selector.EnvForced(r)
	if !ok {
		return nil
	}
	f := &checkForced{Backend: d.Backend}
	if err != nil {
		f.Error = err.Error()
	}
	return f
}

func checkRun(ctx context.Context, o *checkOptions, w io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	r, d, err := selector.Inspect(ctx, selector.Options{LayerDir: o.LayerDir, Refresh: o.Refresh, Backend: "auto", Prober: o.Prober})
	if err != nil {
		return err
	}
	if o.JSON {
		hints := d.Hints
		if hints == nil {
			hints = []string{}
		}
		out := checkJSON{Report: r, User: checkUserName(r.UID), Backend: d.Backend, Namespace: d.Namespace.String(), Reasons: d.Reasons, Hints: hints,
			Supported: d.Overlay(), Forced: checkForcedBackend(r)}
		if err := writeJSON(w, out); err != nil {
			return err
		}
	} else {
		checkPrint(w, r, d)
	}
	if !d.Overlay() {
		return &exitError{code: 1, msg: "no overlay backend works here: only the copy fallback is left (see the hints above)"}
	}
	return nil
}

func checkUserName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return ""
}

// checkPrint writes the report for a person.
func checkPrint(w io.Writer, r *selector.Report, d selector.Decision) {
	who := fmt.Sprintf("uid %d", r.UID)
	if name := checkUserName(r.UID); name != "" {
		who = fmt.Sprintf("%s (uid %d)", name, r.UID)
	}
	if r.InUserNamespace {
		who += ", inside a user namespace"
	} else {
		who += ", initial user namespace"
	}
	fmt.Fprintf(w, "kernel     %s (%s)\n", r.Kernel, r.KernelVersion)
	fmt.Fprintf(w, "user       %s\n", who)
	fmt.Fprintf(w, "layer dir  %s (%s)\n", r.LayerDir, r.LayerFS)
	fmt.Fprintf(w, "whiteouts  %s\n", r.Whiteouts())
	if r.Cached {
		fmt.Fprintf(w, "probed     from the cache %s (probed %s in %.1f ms; --refresh to probe again)\n",
			r.CacheFile, r.ProbedAt.Local().Format("2006-01-02 15:04:05"), r.ProbeMillis)
	} else {
		fmt.Fprintf(w, "probed     now, in %.1f ms\n", r.ProbeMillis)
	}
	fmt.Fprintln(w, "\nprobes")
	for _, p := range r.Probes {
		fmt.Fprintf(w, "  %-15s %s\n", p.Name, p)
	}
	fmt.Fprintf(w, "\nbackend    %s\n", d.Backend)
	for _, reason := range d.Reasons {
		fmt.Fprintf(w, "  because  %s\n", reason)
	}
	fmt.Fprintf(w, "  layers   keep overlay metadata in %s xattrs\n", d.Namespace.Xattr("*"))
	if f := checkForcedBackend(r); f != nil {
		if f.Error != "" {
			fmt.Fprintf(w, "\nOVL_BACKEND=%s is set, but: %s\n", f.Backend, f.Error)
		} else {
			fmt.Fprintf(w, "\nOVL_BACKEND=%s is set: mounts, runs and builds use %s instead\n", f.Backend, f.Backend)
		}
	}
	if len(d.Hints) > 0 {
		fmt.Fprintln(w, "\nfor a faster backend")
		for _, h := range d.Hints {
			fmt.Fprintf(w, "  - %s\n", strings.TrimSpace(h))
		}
	}
}
