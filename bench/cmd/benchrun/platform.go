package main

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/template"
	"time"

	catalogv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/catalog/v1"
	"github.com/gatehouse-dev/gatehouse/identity"
	"github.com/gatehouse-dev/gatehouse/internal/devstack"
	"github.com/gatehouse-dev/gatehouse/internal/gctune"
	"github.com/gatehouse-dev/gatehouse/pki"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// gatewayCore is the core of the subject under test.
const gatewayCore = 0

// highLimit is a rate (per second) and burst no benchmark reaches.
const highLimit = 1_000_000

// fulfilmentStep is the orders services' -step-interval. Their demo
// fulfilment loop walks every stored order, under the store's lock, each
// quarter of it; with the hundreds of thousands of orders the POST runs
// create, the default 3s makes that walk a stall of tens of milliseconds on
// core 1 every 0.75s, which shows in every p99. An hour keeps it out of a run.
const fulfilmentStep = "1h"

//go:embed haproxy.cfg.tmpl
var haproxyTemplate string

// target is one configuration under test: an HTTP front on core 0 and the
// backends that serve it on core 1.
type target struct {
	name string
	base string
	proc *process
	// backends are the processes behind it, for their CPU time.
	backends []*process
	// exclude are remote ports of the front's own outbound connections
	// that do not go to a backend (Consul, the token issuer).
	exclude map[int]bool
	// admin is the address serving /debug/pprof/, if any.
	admin string
	// bodyBytes is the size of a GET answer's body.
	bodyBytes int
}

// platform is everything a run starts.
type platform struct {
	cfg     runConfig
	stack   *devstack.Stack
	procs   []*process
	tokens  tokenFiles
	targets map[string]*target
	// backend is the bench backend; catalog is the real one (full).
	backend, catalog         *process
	backendPlain, catalogTLS string
	// fullCatalog is the real catalog's gRPC address.
	fullCatalog            string
	protoset               string
	productBody, orderBody string
}

// start brings up the dev stack (Consul, token issuer), mints tokens, and
// starts every configuration. Stop it with stop, also after an error.
func (p *platform) start(ctx context.Context, log io.Writer) error {
	p.targets = map[string]*target{}
	stackLog, err := os.Create(filepath.Join(p.cfg.out, "stack.log"))
	if err != nil {
		return fmt.Errorf("stack log: %w", err)
	}

	say(log, "starting Consul and the token issuer\n")
	p.stack, err = devstack.Prepare(devstack.Config{
		BinDir: p.cfg.bin, ConsulBin: p.cfg.consul, Catalogs: 1, Output: stackLog,
	})
	if err != nil {
		return err
	}
	if err := p.stack.Consul.Start(ctx); err != nil {
		return err
	}
	if err := p.stack.StartIssuer(); err != nil {
		return err
	}

	say(log, "minting tokens\n")
	p.tokens, err = mintTokens(filepath.Join(p.stack.CertDir, "devissuer-keys.json"),
		p.stack.IssuerURL, p.cfg.out, p.cfg.poolSize, p.cfg.beyondSize)
	if err != nil {
		return err
	}
	if err := p.writeFiles(); err != nil {
		return err
	}

	steps := []struct {
		what string
		fn   func(context.Context) error
	}{
		{"full platform", p.startFull},
		{"bench backend and gateways", p.startBench},
		{"HAProxy", p.startHAProxy},
	}
	for _, s := range steps {
		say(log, "starting %s\n", s.what)
		if err := s.fn(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.what, err)
		}
	}

	return nil
}

// writeFiles writes the rate-limit config, the POST body and the protoset.
func (p *platform) writeFiles() error {
	rule := fmt.Sprintf(`{"rate":%d,"burst":%d}`, highLimit, highLimit)
	limits := fmt.Sprintf(`{"perIP":{"default":%s},"perPrincipal":{"default":%s}}`, rule, rule)
	files := map[string]string{
		"ratelimit.json": limits,
		"order-request.json": `{"customerId":"bench","lineItems":` +
			`[{"productId":"p-1001","quantity":1}]}`,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(p.cfg.out, name), []byte(content), 0o600); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}

	p.protoset = filepath.Join(p.cfg.out, "catalog.protoset")

	return writeProtoset(p.protoset, catalogv1.File_gatehouse_catalog_v1_catalog_proto)
}

func (p *platform) file(name string) string { return filepath.Join(p.cfg.out, name) }

// serviceArgs are the flags every product binary of the stack takes.
func (p *platform) serviceArgs() []string {
	return []string{
		"-consul", p.stack.Consul.HTTPAddr(),
		"-log-format", "json",
		"-cert-dir", p.stack.CertDir,
		"-jwt-issuer", p.stack.IssuerURL,
	}
}

func (p *platform) launch(name string, core int, bin string, args ...string) (*process, error) {
	proc, err := startProcess(name, core, p.file(name+".log"), bin, args...)
	if err != nil {
		return nil, err
	}
	p.procs = append(p.procs, proc)

	return proc, nil
}

// startFull starts Gatehouse as shipped: catalog (with stock for the POST
// runs) and orders from cmd/, found through Consul, and cmd/gateway with
// every layer, its access log going to full-gateway.log.
func (p *platform) startFull(ctx context.Context) error {
	var err error
	if p.fullCatalog, err = freeAddr(); err != nil {
		return err
	}
	p.catalog, err = p.launch("full-catalog", loadCore, filepath.Join(p.cfg.bin, "catalog"),
		append(p.serviceArgs(), "-listen", p.fullCatalog, "-seed-stock", "1000000000")...)
	if err != nil {
		return err
	}
	orders, err := p.launch("full-orders", loadCore, filepath.Join(p.cfg.bin, "orders"),
		append(p.serviceArgs(), "-step-interval", fulfilmentStep)...)
	if err != nil {
		return err
	}

	admin, err := freeAddr()
	if err != nil {
		return err
	}
	gw, err := p.launch("full-gateway", gatewayCore, filepath.Join(p.cfg.bin, "gateway"),
		append(p.serviceArgs(),
			"-listen", strings.TrimPrefix(p.stack.GatewayURL, "http://"),
			"-ratelimit-config", p.file("ratelimit.json"),
			"-admin-listen", admin, "-admin-pprof")...)
	if err != nil {
		return err
	}

	waitCtx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if err := p.stack.WaitReady(waitCtx, 1, 1); err != nil {
		return fmt.Errorf("%w\n%s", err, gw.tail())
	}

	p.targets["full"] = &target{
		name: "full", base: p.stack.GatewayURL, proc: gw,
		backends: []*process{p.catalog, orders},
		exclude: map[int]bool{portOf(p.stack.Consul.HTTPAddr()): true,
			portOf(p.stack.IssuerURL): true},
		admin: admin,
	}

	return p.checkTarget(ctx, p.targets["full"])
}

// benchGateways are the bench gateway configurations: name and -layers.
var benchGateways = []struct {
	name, layers string
	env          []string // extra environment, as NAME=value
}{
	{"bare", "", nil},
	// Plain grpc-gateway with the collector target Gatehouse's binaries
	// pick (internal/gctune), to show what that setting alone is worth.
	{"bare-gogc", "", []string{fmt.Sprintf("GOGC=%d", gctune.DefaultPercent)}},
	{"edge", "edge", nil},
	{"jwt", "jwt", nil},
	{"ratelimit", "ratelimit", nil},
	{"validation", "validation", nil},
	{"accesslog", "accesslog", nil},
	{"metrics", "metrics", nil},
	{"tracing", "tracing", nil},
	{"mtls", "mtls", nil},
	{"all", "all", nil},
}

// startBench starts the bench backend and one bench gateway per
// configuration.
func (p *platform) startBench(ctx context.Context) error {
	addrs := make([]string, 3)
	for i := range addrs {
		var err error
		if addrs[i], err = freeAddr(); err != nil {
			return err
		}
	}
	p.backendPlain, p.catalogTLS = addrs[0], addrs[1]
	ordersTLS := addrs[2]

	var err error
	p.backend, err = p.launch("bench-backend", loadCore, filepath.Join(p.cfg.benchBin,
		"benchbackend"), "-grpc-listen", p.backendPlain, "-catalog-tls-listen", p.catalogTLS,
		"-orders-tls-listen", ordersTLS, "-cert-dir", p.stack.CertDir,
		"-step-interval", fulfilmentStep)
	if err != nil {
		return err
	}

	for _, g := range benchGateways {
		listen, err := freeAddr()
		if err != nil {
			return err
		}
		admin, err := freeAddr()
		if err != nil {
			return err
		}

		catalog, orders := p.backendPlain, p.backendPlain
		if g.layers == "mtls" || g.layers == "all" {
			catalog, orders = p.catalogTLS, ordersTLS
		}
		// env(1) sets the environment and execs the gateway, so the
		// process measured is still the gateway.
		args := append(append([]string{}, g.env...), filepath.Join(p.cfg.benchBin,
			"benchgateway"))
		proc, err := p.launch("gw-"+g.name, gatewayCore, "env", append(args,
			"-listen", listen, "-catalog", catalog, "-orders", orders, "-layers", g.layers,
			"-cert-dir", p.stack.CertDir, "-jwt-issuer", p.stack.IssuerURL,
			"-ratelimit-config", p.file("ratelimit.json"),
			"-admin-listen", admin, "-admin-pprof")...)
		if err != nil {
			return err
		}

		p.targets[g.name] = &target{name: g.name, base: "http://" + listen, proc: proc,
			backends: []*process{p.backend},
			exclude:  map[int]bool{portOf(p.stack.IssuerURL): true}, admin: admin}
	}

	for _, g := range benchGateways {
		if err := p.checkTarget(ctx, p.targets[g.name]); err != nil {
			return err
		}
	}

	return nil
}

// startHAProxy takes the exact bytes the full gateway answers, starts the
// fixed-bytes HTTP backend with them and HAProxy in front of it.
func (p *platform) startHAProxy(ctx context.Context) error {
	full := p.targets["full"]
	product, err := p.fetch(ctx, full, http.MethodGet, "/v1/products/p-1001", nil)
	if err != nil {
		return err
	}
	orderRequest, err := os.ReadFile(p.file("order-request.json"))
	if err != nil {
		return fmt.Errorf("read order request: %w", err)
	}
	order, err := p.fetch(ctx, full, http.MethodPost, "/v1/orders", orderRequest)
	if err != nil {
		return err
	}
	p.productBody, p.orderBody = p.file("answer-product.json"), p.file("answer-order.json")
	if err := os.WriteFile(p.productBody, product, 0o600); err != nil {
		return fmt.Errorf("write product answer: %w", err)
	}
	if err := os.WriteFile(p.orderBody, order, 0o600); err != nil {
		return fmt.Errorf("write order answer: %w", err)
	}

	httpAddr, err := freeAddr()
	if err != nil {
		return err
	}
	httpBackend, err := p.launch("http-backend", loadCore,
		filepath.Join(p.cfg.benchBin, "benchbackend"), "-http-listen", httpAddr,
		"-http-product-body", p.productBody, "-http-order-body", p.orderBody)
	if err != nil {
		return err
	}

	listen, err := freeAddr()
	if err != nil {
		return err
	}
	cfgPath := p.file("haproxy.cfg")
	if err := renderHAProxy(cfgPath, map[string]any{
		"Listen": listen, "Backend": httpAddr, "Issuer": p.stack.IssuerURL,
		"ES256Key": p.tokens.es256PEM, "RS256Key": p.tokens.rs256PEM, "Limit": highLimit,
	}); err != nil {
		return err
	}
	proc, err := p.launch("haproxy", gatewayCore, "haproxy", "-db", "-f", cfgPath)
	if err != nil {
		return err
	}

	p.targets["haproxy"] = &target{name: "haproxy", base: "http://" + listen, proc: proc,
		backends: []*process{httpBackend}, exclude: map[int]bool{}}
	if err := p.checkTarget(ctx, p.targets["haproxy"]); err != nil {
		return err
	}

	got, err := p.fetch(ctx, p.targets["haproxy"], http.MethodGet, "/v1/products/p-1001", nil)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, product) {
		return errors.New("HAProxy's answer differs from the gateway's")
	}

	return nil
}

func renderHAProxy(path string, data map[string]any) error {
	tmpl, err := template.New("haproxy").Option("missingkey=error").Parse(haproxyTemplate)
	if err != nil {
		return fmt.Errorf("haproxy template: %w", err)
	}

	var b bytes.Buffer
	if err := tmpl.Execute(&b, data); err != nil {
		return fmt.Errorf("haproxy template: %w", err)
	}

	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		return fmt.Errorf("write haproxy config: %w", err)
	}

	return nil
}

// checkTarget waits up to 60s until the target answers GET with the hot
// token with 200, and records the body size.
func (p *platform) checkTarget(ctx context.Context, t *target) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		body, err := p.fetch(ctx, t, http.MethodGet, "/v1/products/p-1001", nil)
		if err == nil {
			t.bodyBytes = len(body)
			return nil
		}
		if t.proc.exited() {
			return fmt.Errorf("%s exited: %w\n%s", t.name, err, t.proc.tail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not answering: %w\n%s", t.name, err, t.proc.tail())
		}

		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// fetch sends one request with the hot ES256 token and returns the body of
// a 200 answer.
func (p *platform) fetch(
	ctx context.Context,
	t *target,
	method, path string,
	body []byte,
) ([]byte, error) {
	token, err := os.ReadFile(p.tokens.hotES256)
	if err != nil {
		return nil, fmt.Errorf("read hot token: %w", err)
	}

	req, err := http.NewRequestWithContext(ctx, method, t.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}

	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()

	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s %s%s: %s: %s", method, t.base, path, resp.Status, data)
	}

	return data, nil
}

func (p *platform) catalogAddr() string { return p.fullCatalog }

// ghzTLSFor is the client side of mutual TLS with the gateway's identity,
// for calling the real catalog directly.
func (p *platform) ghzTLSFor(service string) *ghzTLS {
	dir := pki.Dir(p.stack.CertDir)
	id, err := identity.New(identity.DefaultTrustDomain, service)
	if err != nil {
		return nil
	}

	return &ghzTLS{ca: dir.CACert(), cert: dir.Cert("gateway"), key: dir.Key("gateway"),
		serverName: id.DNSName()}
}

// stop stops every process this run started, all at once, then the dev
// stack.
func (p *platform) stop() {
	var wg sync.WaitGroup
	for _, proc := range p.procs {
		wg.Go(func() { proc.stop(15 * time.Second) })
	}
	wg.Wait()

	if p.stack != nil {
		_ = p.stack.Stop()
	}
}

// writeProtoset writes fd and every file it imports as a
// FileDescriptorSet, for ghz.
func writeProtoset(path string, fd protoreflect.FileDescriptor) error {
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}

	var add func(protoreflect.FileDescriptor)
	add = func(f protoreflect.FileDescriptor) {
		if seen[f.Path()] {
			return
		}
		seen[f.Path()] = true
		for i := range f.Imports().Len() {
			add(f.Imports().Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(f))
	}
	add(fd)

	data, err := proto.Marshal(set)
	if err != nil {
		return fmt.Errorf("encode protoset: %w", err)
	}

	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("write protoset: %w", err)
	}

	return nil
}
