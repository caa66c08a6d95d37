package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"
)

// Tables of the report, in order.
const (
	tableGET   = "GET /v1/products/p-1001"
	tablePOST  = "POST /v1/orders"
	tablePaced = "GET at half of saturation"
	tableGRPC  = "Direct gRPC (ghz), CatalogService.GetProduct"
)

// tokenSet names a token file of the run.
type tokenSet string

const (
	hotES256 tokenSet = "hot-es256"
	hotRS256 tokenSet = "hot-rs256"
	pool     tokenSet = "pool"
	beyond   tokenSet = "beyond-cache"
)

// scenario is one measured case: a load on one target.
type scenario struct {
	key    string
	table  string
	target string
	tokens tokenSet
	method string
	path   string
	body   bool
	paced  bool
	// grpcTLS, for a ghz scenario, says whether it calls over mutual TLS.
	grpc, grpcTLS bool
	quick         bool
}

const productPath = "/v1/products/p-1001"

// scenarios lists every case of a run, in the order they run in a round.
func scenarios() []scenario {
	get := func(target string, tokens tokenSet, quick bool) scenario {
		return scenario{key: "get-" + target + "-" + string(tokens), table: tableGET,
			target: target, tokens: tokens, method: "GET", path: productPath, quick: quick}
	}
	post := func(target string, quick bool) scenario {
		return scenario{key: "post-" + target, table: tablePOST, target: target,
			tokens: hotES256, method: "POST", path: "/v1/orders", body: true, quick: quick}
	}

	list := []scenario{get("bare", hotES256, true), get("bare-gogc", hotES256, true),
		get("edge", hotES256, true)}
	for _, l := range []string{"jwt", "ratelimit", "validation", "accesslog", "metrics",
		"tracing", "mtls"} {
		list = append(list, get(l, hotES256, true))
	}
	list = append(list,
		get("all", hotES256, false),
		get("full", hotES256, true),
		get("full", hotRS256, false),
		get("full", pool, true),
		get("full", beyond, true),
		get("haproxy", hotES256, true),
		get("haproxy", pool, true),
		get("haproxy", beyond, false),
		post("bare", true),
		post("edge", false),
		post("validation", false),
		post("full", true),
		post("haproxy", true),
		scenario{key: "grpc-bench-backend", table: tableGRPC, target: "bench-backend",
			grpc: true, quick: true},
		scenario{key: "grpc-full-catalog", table: tableGRPC, target: "full-catalog",
			grpc: true, grpcTLS: true},
	)
	for _, t := range []string{"bare", "full"} {
		list = append(list, scenario{key: "paced-" + t, table: tablePaced, target: t,
			tokens: hotES256, method: "GET", path: productPath, paced: true, quick: true})
	}

	return list
}

// sample is one measured run of a scenario.
type sample struct {
	load
	// serverCPU, backendCPU and generatorCPU are CPU time per request, in
	// microseconds, of the target (core 0), of its backends and of the load
	// generator (both core 1).
	serverCPU, backendCPU, generatorCPU float64
	// conns is the number of distinct backend connections the target held
	// during the run; newConns how many of them it opened during the run.
	conns, newConns int
	load1           float64
}

// runner runs the scenarios in interleaved rounds.
type runner struct {
	cfg     runConfig
	p       *platform
	log     io.Writer
	raw     io.Writer
	offsets map[string]int64
	samples map[string][]sample
	// cycles holds the runs of the paired phase: cycles[key][i] is the
	// run of key in cycle i.
	cycles map[string][]sample
	// paceMS and paceRate are the pause and the target rate of the paced
	// runs, set after the saturating rounds.
	paceMS   int
	paceRate float64
}

func newRunner(cfg runConfig, p *platform, log, raw io.Writer) *runner {
	return &runner{cfg: cfg, p: p, log: log, raw: raw, offsets: map[string]int64{},
		samples: map[string][]sample{}, cycles: map[string][]sample{}}
}

// selected are the scenarios of this run (all, the quick ones, or those
// -only matches).
func (r *runner) selected() []scenario {
	var out []scenario
	for _, s := range scenarios() {
		if r.chosen(s) {
			out = append(out, s)
		}
	}

	return out
}

// chosen reports whether s belongs to this run.
func (r *runner) chosen(s scenario) bool {
	if r.cfg.only != nil {
		return r.cfg.only.MatchString(s.key)
	}

	return !r.cfg.quick || s.quick
}

// run measures the scenarios that only read: a warm-up of each, the
// rounds (each scenario in turn, after a short warm-up), the paced rounds
// at half the full gateway's median rate, and the paired phase. The
// scenarios that write (POST) wait for runWrites.
func (r *runner) run(ctx context.Context) error {
	var reads, paced []scenario
	for _, s := range r.selected() {
		switch {
		case s.paced:
			paced = append(paced, s)
		case !s.body:
			reads = append(reads, s)
		}
	}

	if err := r.measure(ctx, reads); err != nil {
		return err
	}
	if err := r.pacedRounds(ctx, paced); err != nil {
		return err
	}

	return r.pairedCycles(ctx)
}

// runWrites measures the scenarios that write (POST): a warm-up of each,
// then their rounds. They come after every read, profiles included: each
// order placed stays in the backends' memory (the order, and the
// catalog's reservation), and a backend's collector slows as its live
// heap grows. In a run that mixed them, the bench backend's own gRPC p99
// went from 6 to 18 ms, which fell on the configurations it serves.
func (r *runner) runWrites(ctx context.Context) error {
	var writes []scenario
	for _, s := range r.selected() {
		if s.body {
			writes = append(writes, s)
		}
	}

	return r.measure(ctx, writes)
}

// measure warms each of list up, then runs their rounds.
func (r *runner) measure(ctx context.Context, list []scenario) error {
	if len(list) == 0 {
		return nil
	}

	if r.cfg.warmup > 0 {
		say(r.log, "warming up %d scenarios\n", len(list))
		for _, s := range list {
			if _, err := r.once(ctx, s, r.cfg.warmup); err != nil {
				return err
			}
		}
	}

	return r.rounds(ctx, list)
}

// pacedRounds sets the pace from the full gateway's median saturated rate
// and runs the paced scenarios' rounds. Without that rate there is no pace,
// and the paced scenarios run neither here nor in the paired phase.
func (r *runner) pacedRounds(ctx context.Context, paced []scenario) error {
	if len(paced) == 0 {
		return nil
	}

	full := medianOf(r.samples["get-full-"+string(hotES256)], func(s sample) float64 {
		return s.RPS()
	})
	if full == 0 {
		say(r.log, "no paced runs: they need the full gateway's saturated rate\n")
		return nil
	}
	r.paceRate = full / 2
	r.paceMS = max(1, int(math.Round(float64(r.cfg.conns)*1000/r.paceRate-0.5)))
	say(r.log, "paced runs: %.0f req/s target, %d connections pausing %d ms\n",
		r.paceRate, r.cfg.conns, r.paceMS)

	return r.rounds(ctx, paced)
}

func (r *runner) rounds(ctx context.Context, list []scenario) error {
	for round := 1; round <= r.cfg.rounds; round++ {
		for _, s := range list {
			if _, err := r.once(ctx, s, r.cfg.roundWarmup); err != nil {
				return err
			}

			got, err := r.once(ctx, s, r.cfg.duration)
			if err != nil {
				return err
			}
			r.samples[s.key] = append(r.samples[s.key], got)
			say(r.log, "round %d/%d %-34s %8.0f req/s  p50 %6.2f ms  p99 %6.2f ms"+
				"  %6.1f µs/req  errors %d  new conns %d  load %.2f\n",
				round, r.cfg.rounds, s.key, got.RPS(), got.P50/1e3, got.P99/1e3,
				got.serverCPU, got.Errors, got.newConns, got.load1)
		}
	}

	return nil
}

// once runs scenario s for d and measures it.
func (r *runner) once(ctx context.Context, s scenario, d time.Duration) (sample, error) {
	subject, backends, exclude := r.subject(s)

	before, err := cpuOf(append([]*process{subject}, backends...))
	if err != nil {
		return sample{}, err
	}

	watch := newConnWatch(subject.pid(), exclude)
	stopWatch := watch.run(250 * time.Millisecond)

	var l load
	if s.grpc {
		l, err = runGhz(ctx, r.ghzJob(s, d), filepath.Join(r.cfg.out, "ghz-last.json"), r.raw)
	} else {
		l, err = runWrk(ctx, r.cfg.lua, r.wrkJob(s, d), r.raw)
	}
	stopWatch()
	if err != nil {
		return sample{}, err
	}

	after, err := cpuOf(append([]*process{subject}, backends...))
	if err != nil {
		return sample{}, err
	}

	if file := r.tokenFile(s.tokens); file != "" {
		r.offsets[file] += l.Requests + int64(r.cfg.conns)
	}

	out := sample{load: l, load1: loadAverage()}
	if l.Requests > 0 {
		perReq := 1e6 / clockTicks / float64(l.Requests)
		out.serverCPU = float64(after[0]-before[0]) * perReq
		for i := 1; i < len(after); i++ {
			out.backendCPU += float64(after[i]-before[i]) * perReq
		}
		out.generatorCPU = float64(l.GeneratorCPU.Microseconds()) / float64(l.Requests)
	}
	out.conns, out.newConns = watch.counts()

	return out, nil
}

// subject returns the process under test in s, its backends, and the
// remote ports not counted as backend connections.
func (r *runner) subject(s scenario) (*process, []*process, map[int]bool) {
	switch s.target {
	case "bench-backend":
		return r.p.backend, nil, map[int]bool{}
	case "full-catalog":
		return r.p.catalog, nil, r.p.targets["full"].exclude
	}

	t := r.p.targets[s.target]

	return t.proc, t.backends, t.exclude
}

func (r *runner) tokenFile(t tokenSet) string {
	switch t {
	case hotES256:
		return r.p.tokens.hotES256
	case hotRS256:
		return r.p.tokens.hotRS256
	case pool:
		return r.p.tokens.pool
	case beyond:
		return r.p.tokens.beyond
	}

	return ""
}

func (r *runner) wrkJob(s scenario, d time.Duration) wrkJob {
	j := wrkJob{base: r.p.targets[s.target].base, method: s.method, path: s.path,
		tokens: r.tokenFile(s.tokens), conns: r.cfg.conns, duration: d}
	j.start = r.offsets[j.tokens]
	if s.body {
		j.body = r.p.file("order-request.json")
	}
	if s.paced {
		j.pauseMS = r.paceMS
	}

	return j
}

func (r *runner) ghzJob(s scenario, d time.Duration) ghzJob {
	j := ghzJob{bin: filepath.Join(r.cfg.bin, "ghz"), protoset: r.p.protoset,
		addr: r.p.backendPlain, conns: r.cfg.conns, duration: d}
	if s.grpcTLS {
		j.addr = r.p.catalogAddr()
		j.tls = r.p.ghzTLSFor("catalog")
	}

	return j
}

// cpuOf returns the CPU ticks of each process.
func cpuOf(procs []*process) ([]int64, error) {
	out := make([]int64, len(procs))
	for i, p := range procs {
		t, err := cpuTicks(p.pid())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.name, err)
		}
		out[i] = t
	}

	return out, nil
}

// connWatch samples a process's backend connections during a run.
//
// Limitation: it samples, so a connection opened and closed between two
// samples (250ms apart) goes unseen; a front that dialed per request would
// still show new connections in nearly every sample, but one that churned
// rarely might not.
type connWatch struct {
	pid     int
	exclude map[int]bool

	mu      sync.Mutex
	initial map[string]bool
	seen    map[string]bool
}

func newConnWatch(pid int, exclude map[int]bool) *connWatch {
	w := &connWatch{pid: pid, exclude: exclude, seen: map[string]bool{}}
	w.initial, _ = outboundConns(pid, exclude)

	return w
}

// run samples every interval until the returned function is called, which
// takes a last sample.
func (w *connWatch) run(interval time.Duration) func() {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			w.sample()
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()

	return func() {
		close(stop)
		<-done
		w.sample()
	}
}

func (w *connWatch) sample() {
	conns, err := outboundConns(w.pid, w.exclude)
	if err != nil {
		return
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	maps.Copy(w.seen, conns)
}

// counts returns the distinct connections seen and how many of them were
// not there when the watch began.
func (w *connWatch) counts() (int, int) {
	w.mu.Lock()
	defer w.mu.Unlock()

	fresh := 0
	for c := range w.seen {
		if !w.initial[c] {
			fresh++
		}
	}

	return len(w.seen), fresh
}

// medianOf returns the median of f over samples (0 for none).
func medianOf(samples []sample, f func(sample) float64) float64 {
	if len(samples) == 0 {
		return 0
	}

	vals := make([]float64, len(samples))
	for i, s := range samples {
		vals[i] = f(s)
	}
	sort.Float64s(vals)

	mid := len(vals) / 2
	if len(vals)%2 == 1 {
		return vals[mid]
	}

	return (vals[mid-1] + vals[mid]) / 2
}

// maxOf returns the largest f over samples.
func maxOf(samples []sample, f func(sample) float64) float64 {
	vals := make([]float64, 0, len(samples))
	for _, s := range samples {
		vals = append(vals, f(s))
	}
	if len(vals) == 0 {
		return 0
	}

	return slices.Max(vals)
}
