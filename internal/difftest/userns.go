package difftest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/ovl-dev/ovl/internal/reexec"
	"github.com/ovl-dev/ovl/internal/userns"
)

const envConfig = "OVL_DIFFTEST_CONFIG"

// entryRequest is what RunInUserNamespace passes to its entry.
type entryRequest struct {
	Config  Config
	Seeds   []int64
	MaxFail int
}

// RegisterEntry registers a re-exec entry point, name, that runs seeds
// with the two mounters from mounters inside the new namespaces made by
// RunInUserNamespace. Call it from an init function of the test package,
// whose TestMain calls reexec.Init.
func RegisterEntry(name string, mounters func() (Mounter, Mounter)) {
	reexec.Register(name, func() {
		if err := runEntry(mounters); err != nil {
			fmt.Fprintln(os.Stderr, "difftest:", err)
			os.Exit(2)
		}
	})
}

func runEntry(mounters func() (Mounter, Mounter)) error {
	var req entryRequest
	if err := json.Unmarshal([]byte(os.Getenv(envConfig)), &req); err != nil {
		return fmt.Errorf("read %s: %w", envConfig, err)
	}
	if err := userns.MakePrivate(); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	m1, m2 := mounters()
	out := []entryResult{}
	for _, err := range RunSeeds(context.Background(), req.Config, req.Seeds, m1, m2, req.MaxFail) {
		out = append(out, entryResult{Msg: err.Error(), Diverged: errors.Is(err, ErrDiverged)})
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

// entryResult is one failed seed, as the entry reports it.
type entryResult struct {
	Msg      string
	Diverged bool
}

// RunInUserNamespace runs seeds through the entry registered as name in a
// new process, in new user (unless root) and mount namespaces, and returns
// what RunSeeds returns there: one error per failed seed, stopping after
// maxFail failures (0: never). The second result is set when the process
// itself fails.
func RunInUserNamespace(ctx context.Context, name string, cfg Config, seeds []int64, maxFail int) ([]error, error) {
	req, err := json.Marshal(entryRequest{Config: cfg, Seeds: seeds, MaxFail: maxFail})
	if err != nil {
		return nil, err
	}
	cmd := userns.Command(name)
	cmd.Env = append(cmd.Env, envConfig+"="+string(req))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("run %s in a user namespace: %w\n%s", name, err, stderr.String())
	}
	var res []entryResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return nil, fmt.Errorf("read the result of %s: %w (output %q, stderr %q)", name, err, stdout.String(), stderr.String())
	}
	errs := make([]error, len(res))
	for i, r := range res {
		errs[i] = errors.New(r.Msg)
		if r.Diverged {
			errs[i] = &entryError{msg: r.Msg}
		}
	}
	return errs, nil
}

// entryError is a divergence reported from the entry's process; it
// matches ErrDiverged.
type entryError struct{ msg string }

func (e *entryError) Error() string { return e.msg }
func (e *entryError) Unwrap() error { return ErrDiverged }
