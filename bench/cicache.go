package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/ovl-dev/ovl/internal/busybox"
)

// The CI workloads time what a CI job on a fresh machine pays to build a
// project: `ovl build` with an empty .vagga, running every step ("full"),
// or with --cache-from a registry that a job before it filled with
// --cache-to ("warm registry cache"), which pulls every step instead.
// The registry is Debian's docker-registry, started once per bench run
// on a loopback port with its storage in the scratch directory.

// ciWorkloads are the four CI rows: examples/ and the project whose
// !Tar step unpacks the bench's tree (~220 MB with make bench), each
// built in full and from a warm registry cache.
func ciWorkloads() []Workload {
	var out []Workload
	for _, p := range []struct{ name, about string }{
		{"examples", "the examples/ project (busybox base, 8 steps)"},
		{"tree step", "a project whose !Tar step is the tree (the !Container child build's project)"},
	} {
		for _, warm := range []bool{false, true} {
			name, about := "CI build, "+p.name+": full", "ovl build with an empty .vagga: "+p.about+", every step run"
			if warm {
				name, about = "CI build, "+p.name+": warm registry cache", "the same with --cache-from a loopback registry: every step pulled"
			}
			out = append(out, Workload{Name: name, About: about, Phase: "ci", OvlOnly: true, NoWarmup: true,
				Rep: repCI(p.name, warm)})
		}
	}
	return out
}

// repCI builds project (clean first, untimed) in full or from the
// registry cache, which the first warm repetition fills (untimed).
func repCI(project string, warm bool) func(ctx context.Context, e *Env, c *Contestant, rep int) (time.Duration, error) {
	return func(ctx context.Context, e *Env, c *Contestant, rep int) (time.Duration, error) {
		if _, err := e.ovlVerb("build"); err != nil {
			return 0, err
		}
		dir, container, err := e.ciProject(c, project)
		if err != nil {
			return 0, err
		}
		args := []string{container}
		if warm {
			addr, err := e.registry(ctx)
			if err != nil {
				return 0, err
			}
			ref := fmt.Sprintf("%s/bench/%s-%s:cache", addr, c.Slug(), strings.ReplaceAll(project, " ", "-"))
			args = append(args, "--insecure-registry", "--cache-from", ref)
			key := c.Slug() + "/" + project
			if !e.ciFilled[key] {
				if _, err := e.ovl(ctx, c, dir, "build", container, "--insecure-registry", "--cache-to", ref); err != nil {
					return 0, err
				}
				e.ciFilled[key] = true
			}
		}
		if _, err := e.ovl(ctx, c, dir, "clean", "--everything"); err != nil {
			return 0, err
		}
		return e.ovl(ctx, c, dir, "build", args...)
	}
}

// ciProject returns c's directory of project and the container to build.
func (e *Env) ciProject(c *Contestant, project string) (string, string, error) {
	if e.ciFilled == nil {
		e.ciFilled = map[string]bool{}
	}
	if project != "examples" {
		// The build workloads' project, in a directory of its own
		// (each repetition cleans it).
		d := filepath.Join(e.scratch, c.Slug()+"-ci-tree")
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", "", err
		}
		base := filepath.Join(d, "base.tar")
		if _, err := os.Stat(base); err != nil {
			if err := os.Link(e.Fix.RootTar, base); err != nil {
				return "", "", err
			}
		}
		yaml := "containers:\n  base:\n    setup:\n    - !Tar {url: base.tar}\n  child:\n    setup:\n    - !Container base\n    - !Sh \"echo ci > /marker\"\n"
		return d, "child", os.WriteFile(filepath.Join(d, "vagga.yaml"), []byte(yaml), 0o644)
	}
	d := filepath.Join(e.scratch, c.Slug()+"-ci-examples")
	if _, err := os.Stat(filepath.Join(d, "base.tar.gz")); err == nil {
		return d, "app", nil
	}
	src, err := filepath.Abs("examples")
	if _, serr := os.Stat(filepath.Join(src, "vagga.yaml")); err != nil || serr != nil {
		return "", "", errors.New("examples/vagga.yaml not found: run the bench from ovl's source tree")
	}
	if e.Fix.Busybox == "" {
		return "", "", errors.New("no busybox-static for the examples' base tarball")
	}
	if err := os.MkdirAll(d, 0o755); err != nil {
		return "", "", err
	}
	if out, err := exec.Command("cp", "-a", src+"/.", d+"/").CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("copy examples: %w: %s", err, out)
	}
	return d, "app", busybox.WriteTar(filepath.Join(d, "base.tar.gz"), e.Fix.Busybox)
}

// registry starts the bench's registry once and returns its address.
func (e *Env) registry(ctx context.Context) (string, error) {
	if e.regAddr != "" || e.regErr != nil {
		return e.regAddr, e.regErr
	}
	e.regAddr, e.regErr = e.startRegistry(ctx)
	return e.regAddr, e.regErr
}

func (e *Env) startRegistry(ctx context.Context) (string, error) {
	if _, err := exec.LookPath("docker-registry"); err != nil {
		return "", errors.New("docker-registry is not installed (Debian package docker-registry)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	l.Close()
	dir := filepath.Join(e.scratch, "registry")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	cfg := filepath.Join(dir, "config.yml")
	text := fmt.Sprintf("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", filepath.Join(dir, "storage"), addr)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		return "", err
	}
	cmd := exec.Command("docker-registry", "serve", cfg)
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start docker-registry: %w", err)
	}
	e.Jan.Add("stop docker-registry on "+addr, func() error {
		cmd.Process.Kill()
		cmd.Wait()
		return os.RemoveAll(dir)
	})
	client := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err := client.Get("http://" + addr + "/v2/"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr, nil
			}
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
	}
	return "", fmt.Errorf("docker-registry on %s did not answer within 20 s", addr)
}
