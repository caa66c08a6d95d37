# Gatehouse developer targets. `make run` starts the whole platform locally,
# `make test` is what CI runs (through .ci/run).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO        ?= go
BIN       := $(CURDIR)/bin
DEPS      := $(CURDIR)/.deps
export BUF_CACHE_DIR := $(DEPS)/buf-cache

# An installed consul binary can be used instead of building one.
CONSUL_BIN ?= $(BIN)/consul
export CONSUL_BIN

PROTOVALIDATE_MOD := github.com/bufbuild/protovalidate@v1.2.2
GOOGLEAPIS_MOD    := github.com/grpc-ecosystem/grpc-gateway@v1.16.0

PLUGINS := protoc-gen-go protoc-gen-go-grpc protoc-gen-grpc-gateway protoc-gen-openapiv2
BUF_TOOLS := $(BIN)/buf $(addprefix $(BIN)/,$(PLUGINS))
BINARIES := catalog orders gateway gatehouse-dev gatehouse devissuer

# Packages whose tests start goroutines, servers or processes run under -race.
RACE_PKGS := ./discovery/... ./interceptors/... ./services/... ./gateway/... ./internal/... \
	./certsource/... ./mtls/...

.PHONY: help
help: ## List targets.
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

.PHONY: tools
tools: $(BUF_TOOLS) $(BIN)/golangci-lint ## Build buf, the protoc plugins and golangci-lint into bin/.

$(BUF_TOOLS) &: tools/go.mod tools/go.sum
	$(GO) -C tools build -o $(BIN)/ github.com/bufbuild/buf/cmd/buf \
		google.golang.org/protobuf/cmd/protoc-gen-go \
		google.golang.org/grpc/cmd/protoc-gen-go-grpc \
		github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway \
		github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2
	@touch $(BUF_TOOLS)

$(BIN)/golangci-lint: tools/lint/go.mod tools/lint/go.sum
	$(GO) -C tools/lint build -o $(BIN)/golangci-lint github.com/golangci/golangci-lint/v2/cmd/golangci-lint

# Consul v1.14.11 is built from its own module so its dependency graph never
# touches ours. A cold build takes about four minutes; the binary is cached.
$(BIN)/consul: tools/consul/go.mod tools/consul/go.sum
	$(GO) -C tools/consul build -o $(BIN)/consul github.com/hashicorp/consul

.PHONY: consul
consul: ## Build the Consul agent into bin/ unless CONSUL_BIN names another one.
	@if [ "$(CONSUL_BIN)" = "$(BIN)/consul" ]; then $(MAKE) --no-print-directory $(BIN)/consul; \
	else test -x "$(CONSUL_BIN)" || { echo "CONSUL_BIN=$(CONSUL_BIN) is not executable"; exit 1; }; fi

.PHONY: protodeps
protodeps: ## Copy third-party protos from the Go module cache into .deps/proto.
	@mkdir -p $(DEPS)/proto/buf/validate $(DEPS)/proto/google/api
	@pv=$$($(GO) mod download -json $(PROTOVALIDATE_MOD) | sed -n 's/.*"Dir": "\(.*\)",/\1/p'); \
	ga=$$($(GO) mod download -json $(GOOGLEAPIS_MOD) | sed -n 's/.*"Dir": "\(.*\)",/\1/p'); \
	install -m 0644 $$pv/proto/protovalidate/buf/validate/validate.proto $(DEPS)/proto/buf/validate/; \
	for f in annotations http httpbody; do \
		install -m 0644 $$ga/third_party/googleapis/google/api/$$f.proto $(DEPS)/proto/google/api/; \
	done

.PHONY: generate
generate: $(BUF_TOOLS) protodeps ## Regenerate gen/ from proto/.
	$(BIN)/buf generate

.PHONY: check-generated
check-generated: generate ## Fail when gen/ differs from what proto/ generates.
	@if [ -n "$$(git status --porcelain -- gen)" ]; then \
		git status --short -- gen; git --no-pager diff --stat -- gen; \
		echo "gen/ is stale: run 'make generate' and commit the result"; exit 1; fi

.PHONY: lint
lint: $(BUF_TOOLS) $(BIN)/golangci-lint protodeps ## buf lint and golangci-lint.
	$(BIN)/buf lint
	$(BIN)/golangci-lint run ./...

.PHONY: tidy-check
tidy-check: ## Fail when go mod tidy would change go.mod or go.sum.
	$(GO) mod tidy
	@git diff --exit-code -- go.mod go.sum || { echo "go.mod/go.sum not tidy"; exit 1; }

.PHONY: build
build: ## Build the binaries into bin/.
	$(GO) build -o $(BIN)/ $(addprefix ./cmd/,$(BINARIES))

.PHONY: test
test: check-generated tidy-check lint consul build ## Everything CI checks.
	$(GO) test -count=1 -race ./...

.PHONY: fuzz
fuzz: ## Fuzz the gateway's request path and the token path for FUZZTIME each (default 5m).
	$(GO) test ./gateway -run '^$$' -fuzz '^FuzzGatewayRequest$$' -fuzztime $(FUZZTIME) -parallel 2

.PHONY: run
# The development PKI is kept in .run/certs; gatehouse-dev creates what is
# missing or expiring there before anything starts.
run: consul build ## Start Consul, two catalogs, orders and the gateway; Ctrl-C stops all.
	$(BIN)/gatehouse-dev -consul "$(CONSUL_BIN)" -bin $(BIN)

.PHONY: clean
clean: ## Remove built tools, binaries and copied protos.
	rm -rf $(BIN) $(DEPS) .run

.PHONY: bench
# Flags for bench/cmd/benchrun, e.g. BENCH_FLAGS="-rounds 5 -duration 15s".
BENCH_FLAGS ?=
bench: consul ## Gateway beside bare grpc-gateway and HAProxy (~20 min); updates docs/benchmarks.md.
	bench/bench.sh -docs docs/benchmarks.md -profiles bench/profiles $(BENCH_FLAGS)

.PHONY: bench-quick
bench-quick: consul ## Quick subset of make bench (under 2 min); writes .run/bench/results.md.
	bench/bench.sh -quick -command "make bench-quick" $(BENCH_FLAGS)
