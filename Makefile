# ovl: see README.md. `make demo` and `make test` are all a fresh machine needs.
GO      ?= go
BIN     := bin/ovl
PKGS    := ./...

.PHONY: all build deps test test-integration stress demo bench bench-quick lint clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/ovl

deps:
	@./scripts/deps.sh

test: deps build lint
	$(GO) test -count=1 -timeout 9m $(PKGS)

# Tests with real third-party clients (podman with ovl as mount_program,
# against kernel overlay and fuse-overlayfs). Root; each client command is
# bounded in time. .ci/run runs it after `make test`.
test-integration: deps build
	@./scripts/deps.sh integration
	OVL_INTEGRATION=1 $(GO) test -count=1 -timeout 30m -v ./integration/

# Many more random operation sequences for the differential fusefs test.
stress: deps build
	OVL_STRESS=1 $(GO) test -count=1 -timeout 60m -run Differential -v ./fusefs/

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

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

clean:
	rm -rf bin
