# ovl: see README.md. `make demo` and `make test` are all a fresh machine needs.
GO      ?= go
BIN     := bin/ovl
# The slim FUSE binary: the daemon of every FUSE mount bin/ovl makes (it
# is found next to it) and the drop-in mode alone (podman's
# mount_program). Static and stripped: it starts in a third of ovl's time.
DAEMON  := bin/ovl-fuse
PKGS    := ./...

.PHONY: all build deps test test-integration stress demo bench bench-quick lint clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/ovl
	CGO_ENABLED=0 $(GO) build -ldflags='-s -w' -o $(DAEMON) ./cmd/ovl-fuse

deps:
	@./scripts/deps.sh

# The tests spend most of their time waiting on mounts, FUSE round trips,
# child processes and the disk, not on the CPU: four packages run at once,
# and four tests of a package that may go side by side. scripts/gotest
# prints each test and package as it ends, and every 30 s what is still
# running. The timeout is far above the run's few minutes, so that a busy
# machine does not fail it.
TEST_FLAGS ?= -p 4 -parallel 4 -count=1 -timeout 30m
GOTEST     := $(GO) run ./scripts/gotest

test: deps build lint
	$(GOTEST) $(TEST_FLAGS) $(PKGS)

# Tests with real third-party clients (podman with ovl as mount_program,
# against kernel overlay and fuse-overlayfs). Root; each client command is
# bounded in time. .ci/run runs it after `make test`.
test-integration: deps build
	@./scripts/deps.sh integration
	OVL_INTEGRATION=1 $(GOTEST) -count=1 -timeout 60m ./integration/

# Many more random operation sequences: the differential fusefs test
# (3000 per run) and the harness's own agreement test, seeds printed.
stress: deps build
	OVL_STRESS=1 $(GOTEST) -count=1 -timeout 180m -run 'Differential|Agree' ./fusefs/ ./internal/difftest/

demo: deps build
	./scripts/demo.sh

# Side-by-side measurements (bench/README.md). Root. BENCH_FLAGS passes
# more flags, e.g. make bench BENCH_FLAGS='--tree ~/src/x --workloads grep'.
bench: deps build
	@./scripts/deps.sh bench
	$(GO) run ./bench/cmd/ovl-bench --ovl $(BIN) $(BENCH_FLAGS)

bench-quick: deps build
	@./scripts/deps.sh bench
	$(GO) run ./bench/cmd/ovl-bench --quick --ovl $(BIN) $(BENCH_FLAGS)

# staticcheck at a fixed version, through the Go module proxy: nothing
# to install by hand on a fresh machine.
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2

# gofmt, go vet, staticcheck, and go.mod/go.sum exactly as go mod tidy
# leaves them (CI fails on a dependency added or dropped by hand).
lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(STATICCHECK) $(PKGS)
	@$(GO) mod tidy -diff >/dev/null || { echo "go.mod/go.sum are not tidy: run go mod tidy and commit the result"; $(GO) mod tidy -diff; exit 1; }

clean:
	rm -rf bin
