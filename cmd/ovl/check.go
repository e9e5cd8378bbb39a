package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
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
overlay mounts (in place with CAP_SYS_ADMIN; otherwise, as for an ordinary
user or root in a default container, inside a user namespace with
userxattr), whiteouts and opaque directories, lowerdir+, the optional
overlay features, /dev/fuse and FUSE mounts. It prints each probe with its
result, the backend ovl would use (native, fuse or copy) and why, how runs
isolate their command, and the one flag or mount that would give a faster
backend.

The probes mount in the layer directory, on the filesystem that will hold
the layers: --layer-dir (or $OVL_STATE_DIR) names it; by default it is ovl's
state directory, or, where kernel overlay refuses uppers there (a
container's overlay root), the project's .vagga or ovl's directory on a
tmpfs (/dev/shm, /tmp): check says which it chose and why. Inside a
vagga project it also says what builds get, whose layers live in the
project's .vagga.

The answer is cached under ovl's runtime directory per kernel, user,
capabilities and layer filesystem; --refresh probes again.

Exit status: 0 when mounts, runs and builds work here, on whichever backend
(copy included: read backend, or --json's supported, for overlay); 1 when
they cannot: no backend can isolate a run (no namespace can be made and
chroot is not allowed), or $OVL_BACKEND forces a backend that does not work.
Whether overlay works (vagga's question) is what _check_overlayfs_support
answers: supported (exit 0) for native or fuse, unsupported (exit 1) for
copy.`,
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
	layerDirFlag(cmd.Flags(), &o.LayerDir)
	return cmd
}

// checkJSON is what `ovl check --json` prints: the probe report (kernel,
// user, layer filesystem, each probe, whether it came from the cache)
// and the decision.
type checkJSON struct {
	*selector.Report
	User        string             `json:"user"`
	Backend     string             `json:"backend"`
	Namespace   string             `json:"xattr_namespace"` // where layers keep overlay metadata: trusted or user
	Isolation   selector.Isolation `json:"isolation"`       // how runs isolate their command
	LayerDirWhy string             `json:"layer_dir_why"`   // why the layer dir was chosen
	Reasons     []string           `json:"reasons"`
	Hints       []string           `json:"hints"`
	Supported   bool               `json:"supported"` // native or fuse works: vagga's "overlayfs supported"
	// Forced is set when OVL_BACKEND names a backend, which mounts, runs
	// and builds then use instead of Backend.
	Forced *checkForced `json:"forced,omitempty"`
	// Build is what builds of the project in the working directory get,
	// their layers being in its .vagga; nil outside a project.
	Build *checkBuild `json:"build,omitempty"`
}

// checkBuild is the decision for a project's builds.
type checkBuild struct {
	Project   string   `json:"project"`
	LayerDir  string   `json:"layer_dir"`
	LayerFS   string   `json:"layer_fs"`
	Backend   string   `json:"backend"`
	Supported bool     `json:"supported"`
	Reasons   []string `json:"reasons"`
	Hints     []string `json:"hints"`
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
	project := cwdProject()
	r, d, err := selector.Inspect(ctx, selector.Options{LayerDir: o.LayerDir, Project: project, Refresh: o.Refresh, Backend: "auto", Prober: o.Prober})
	if err != nil {
		return err
	}
	var build *checkBuild
	if project != "" && o.LayerDir == "" {
		build = checkBuildOf(ctx, o, project)
	}
	forced := checkForcedBackend(r)
	if o.JSON {
		out := checkJSON{Report: r, User: checkUserName(r.UID), Backend: d.Backend, Namespace: d.Namespace.String(), Isolation: d.Isolation,
			LayerDirWhy: d.LayerDirWhy, Reasons: d.Reasons, Hints: nonNil(d.Hints), Supported: d.Overlay(), Forced: forced, Build: build}
		if err := writeJSON(w, out); err != nil {
			return err
		}
	} else {
		checkPrint(w, r, d, build)
	}
	switch {
	case d.Isolation == selector.IsolateNone:
		return &exitError{code: 1, msg: "ovl cannot run containers here: no namespace can be made and chroot is not allowed (see the reasons above)"}
	case forced != nil && forced.Error != "":
		return &exitError{code: 1, msg: "OVL_BACKEND=" + forced.Backend + " cannot work here: " + forced.Error}
	}
	return nil
}

// checkBuildOf is what builds of project get: the decision of the
// probes in its .vagga (made if missing, as a build makes it), or nil
// when that cannot be probed.
func checkBuildOf(ctx context.Context, o *checkOptions, project string) *checkBuild {
	dir := filepath.Join(project, ".vagga")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		slog.Debug("check: no build decision", "err", err)
		return nil
	}
	r, d, err := selector.Inspect(ctx, selector.Options{LayerDir: dir, Project: project, Refresh: o.Refresh, Backend: "auto", Prober: o.Prober})
	if err != nil {
		slog.Debug("check: no build decision", "err", err)
		return nil
	}
	return &checkBuild{Project: project, LayerDir: r.LayerDir, LayerFS: r.LayerFS, Backend: d.Backend, Supported: d.Overlay(),
		Reasons: d.Reasons, Hints: nonNil(d.Hints)}
}

// nonNil is ss, or an empty list for JSON's [] rather than null.
func nonNil(ss []string) []string {
	if ss == nil {
		return []string{}
	}
	return ss
}

func checkUserName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return ""
}

// checkPrint writes the report for a person.
func checkPrint(w io.Writer, r *selector.Report, d selector.Decision, build *checkBuild) {
	who := fmt.Sprintf("uid %d", r.UID)
	if name := checkUserName(r.UID); name != "" {
		who = fmt.Sprintf("%s (uid %d)", name, r.UID)
	}
	if r.InUserNamespace {
		who += ", inside a user namespace"
	} else {
		who += ", initial user namespace"
	}
	if !r.CanMount {
		who += ", without CAP_SYS_ADMIN"
	}
	if c := r.Confinement; c.Container != "" {
		who += ", in a " + c.Container + " container"
	}
	if r.Confinement.Seccomp {
		who += ", seccomp filter on"
	}
	fmt.Fprintf(w, "kernel     %s (%s)\n", r.Kernel, r.KernelVersion)
	fmt.Fprintf(w, "user       %s\n", who)
	fmt.Fprintf(w, "layer dir  %s (%s)", r.LayerDir, r.LayerFS)
	if d.LayerDirWhy != "" {
		fmt.Fprintf(w, ": %s", d.LayerDirWhy)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "whiteouts  %s\n", r.Whiteouts())
	if r.Cached {
		fmt.Fprintf(w, "probed     from the cache %s (probed %s in %.1f ms; --refresh to probe again)\n",
			r.CacheFile, r.ProbedAt.Local().Format("2006-01-02 15:04:05"), r.ProbeMillis)
	} else {
		fmt.Fprintf(w, "probed     now, in %.1f ms\n", r.ProbeMillis)
	}
	fmt.Fprintln(w, "\nprobes")
	for _, p := range r.Probes {
		where := ""
		switch p.Mode {
		case selector.ModeInPlace:
			where = "in place"
		case selector.ModeUserns:
			where = "userns"
		}
		fmt.Fprintf(w, "  %-15s %-9s %s\n", p.Name, where, p)
	}
	fmt.Fprintf(w, "\nbackend    %s\n", d.Backend)
	for _, reason := range d.Reasons {
		fmt.Fprintf(w, "  because  %s\n", reason)
	}
	fmt.Fprintf(w, "  layers   keep overlay metadata in %s xattrs\n", d.Namespace.Xattr("*"))
	fmt.Fprintf(w, "  runs     %s\n", checkIsolation(d.Isolation))
	if f := checkForcedBackend(r); f != nil {
		if f.Error != "" {
			fmt.Fprintf(w, "\nOVL_BACKEND=%s is set, but: %s\n", f.Backend, f.Error)
		} else {
			fmt.Fprintf(w, "\nOVL_BACKEND=%s is set: mounts, runs and builds use %s instead\n", f.Backend, f.Backend)
		}
	}
	checkPrintHints(w, d.Hints)
	if build != nil {
		fmt.Fprintf(w, "\nbuilds     %s, layers in %s (%s)\n", build.Backend, build.LayerDir, build.LayerFS)
		if build.Backend != d.Backend {
			for _, reason := range build.Reasons {
				fmt.Fprintf(w, "  because  %s\n", reason)
			}
			checkPrintHints(w, build.Hints)
		}
	}
}

// checkPrintHints prints what would give a faster backend, if anything.
func checkPrintHints(w io.Writer, hints []string) {
	if len(hints) == 0 {
		return
	}
	fmt.Fprintln(w, "\nfor a faster backend")
	for _, h := range hints {
		fmt.Fprintf(w, "  - %s\n", strings.TrimSpace(h))
	}
}

// checkIsolation says in words how runs isolate their command.
func checkIsolation(iso selector.Isolation) string {
	switch iso {
	case selector.IsolateNamespaces:
		return "in mount and pid namespaces of their own"
	case selector.IsolateUserns:
		return "in a user namespace (with mount and pid namespaces)"
	case selector.IsolateChroot:
		return "in a copy entered with chroot: no namespace can be made here (no /proc, no bind volumes)"
	}
	return "cannot start here: no namespace can be made and chroot is not allowed"
}
