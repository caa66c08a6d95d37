// Command benchrun is the benchmark harness behind `make bench` and
// `make bench-quick` (see bench/bench.sh and docs/benchmarks.md). On
// 127.0.0.1 only, it starts every configuration at once: the bare
// grpc-gateway and one gateway per layer (bench/cmd/benchgateway) over the
// bench backend (bench/cmd/benchbackend), Gatehouse as shipped (Consul,
// token issuer, catalog, orders and cmd/gateway with every layer), and
// HAProxy doing the same security work natively. Each front is pinned to
// core 0, load generators and backends to core 1. It then runs wrk (and ghz
// for direct gRPC) in rounds interleaved across configurations, so load
// from other processes hits them alike, and reports medians.
//
// It must itself run on the load core (bench.sh starts it under taskset),
// so Consul and the token issuer, started as its children, stay off core 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"syscall"
	"time"
)

func main() {
	err := run(os.Stdout)
	switch {
	case errors.Is(err, flag.ErrHelp):
		// The flag set has printed the usage.
	case err != nil:
		fmt.Fprintln(os.Stderr, "benchrun:", err)
		os.Exit(1)
	}
}

// runConfig are the settings of a run.
type runConfig struct {
	bin, benchBin, consul, lua, out string
	rounds                          int
	duration, warmup, roundWarmup   time.Duration
	conns                           int
	poolSize, beyondSize            int
	quick                           bool
	pairs                           int
	pairDuration                    time.Duration
	only                            *regexp.Regexp
	docs, profiles, command         string
}

func parseFlags(args []string) (runConfig, error) {
	fs := flag.NewFlagSet("benchrun", flag.ContinueOnError)
	var c runConfig
	fs.StringVar(&c.bin, "bin", "bin", "folder of the product binaries and ghz")
	fs.StringVar(&c.benchBin, "bench-bin", "bin/bench", "folder of the bench binaries")
	fs.StringVar(&c.consul, "consul", envOr("CONSUL_BIN", "bin/consul"), "consul binary")
	fs.StringVar(&c.lua, "lua", "bench/wrk", "folder of the wrk scripts")
	fs.StringVar(&c.out, "out", ".run/bench", "folder for logs, tokens and raw output")
	fs.IntVar(&c.rounds, "rounds", 5, "measured rounds per scenario")
	fs.DurationVar(&c.duration, "duration", 6*time.Second, "length of each measured run")
	fs.DurationVar(&c.warmup, "warmup", 3*time.Second,
		"first warm-up of each scenario, before the rounds (0 for none)")
	fs.DurationVar(&c.roundWarmup, "round-warmup", time.Second,
		"warm-up before each measured run")
	fs.IntVar(&c.conns, "connections", 32, "connections (wrk) or workers (ghz)")
	fs.IntVar(&c.poolSize, "pool", 2000, "distinct tokens in the pool (within the cache)")
	fs.IntVar(&c.beyondSize, "beyond", 15000,
		"distinct tokens in the pool larger than the verifier's cache (10,000)")
	fs.BoolVar(&c.quick, "quick", false, "the quick subset, one short round")
	fs.IntVar(&c.pairs, "pairs", 9,
		"cycles of the paired phase, which runs the targets' scenarios back to back (0: none)")
	fs.DurationVar(&c.pairDuration, "pair-duration", 3*time.Second,
		"length of each run of the paired phase")
	fs.StringVar(&c.docs, "docs", "", "markdown file whose generated section is replaced")
	fs.StringVar(&c.profiles, "profiles", "", "folder for pprof text summaries")
	fs.StringVar(&c.command, "command", "make bench", "the command to record in the report")
	only := fs.String("only", "",
		"run only the scenarios whose key matches this regular expression "+
			"(e.g. 'get-(bare|full)-hot'), for checking a change; no -docs with it")
	if err := fs.Parse(args); err != nil {
		return c, err
	}

	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q: every setting is a flag (see -h)",
			fs.Args())
	}

	if *only != "" {
		re, err := regexp.Compile(*only)
		if err != nil {
			return c, fmt.Errorf("-only %q: %w", *only, err)
		}
		if c.docs != "" {
			return c, errors.New("-only runs a subset: it cannot rewrite -docs")
		}
		c.only = re
	}

	if c.quick {
		// One round, whose own warm-up is the only one needed; flags given
		// explicitly still win.
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		quick := []struct {
			name string
			fn   func()
		}{
			{"rounds", func() { c.rounds = 1 }},
			{"duration", func() { c.duration = 2 * time.Second }},
			{"warmup", func() { c.warmup = 0 }},
			{"round-warmup", func() { c.roundWarmup = time.Second }},
			{"pairs", func() { c.pairs = 0 }},
		}
		for _, q := range quick {
			if !set[q.name] {
				q.fn()
			}
		}
	}
	if c.rounds < 1 || c.conns < 1 || c.duration < time.Second {
		return c, errors.New("need at least 1 round, 1 connection and 1s per run")
	}
	if c.pairs < 0 || (c.pairs > 0 && c.pairDuration < time.Second) {
		return c, errors.New("-pairs must be 0 or more, with -pair-duration of 1s or more")
	}
	if c.beyondSize <= 10_000 {
		return c, errors.New("-beyond must exceed the verifier's cache of 10,000 tokens")
	}
	if c.poolSize < 2 || c.poolSize > 10_000 {
		return c, errors.New("-pool must be 2 to 10,000 tokens: more than one, and " +
			"within the verifier's cache")
	}
	if c.warmup < 0 || c.roundWarmup < 0 {
		return c, errors.New("-warmup and -round-warmup cannot be negative")
	}
	if c.only != nil && !slices.ContainsFunc(scenarios(), func(s scenario) bool {
		return c.only.MatchString(s.key)
	}) {
		return c, fmt.Errorf("-only %q matches no scenario", c.only)
	}

	for _, p := range []*string{&c.bin, &c.benchBin, &c.consul, &c.lua, &c.out} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return c, fmt.Errorf("path %s: %w", *p, err)
		}
		*p = abs
	}

	return c, os.MkdirAll(c.out, 0o700)
}

func run(stdout io.Writer) error {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	raw, err := os.Create(filepath.Join(cfg.out, "loadgen.log"))
	if err != nil {
		return fmt.Errorf("raw output: %w", err)
	}
	defer func() { _ = raw.Close() }()

	m := describeMachine()
	say(stdout, "machine: %s\n", m.summary())

	p := &platform{cfg: cfg}
	defer p.stop()
	if err := p.start(ctx, stdout); err != nil {
		return err
	}

	started := time.Now()
	r := newRunner(cfg, p, stdout, raw)
	if err := r.run(ctx); err != nil {
		return err
	}

	if cfg.profiles != "" {
		if err := r.profiles(ctx, cfg.profiles); err != nil {
			return err
		}
	}
	if err := r.runWrites(ctx); err != nil {
		return err
	}
	m.finish(started)

	report := newReport(cfg, m, r).markdown()
	if err := os.WriteFile(filepath.Join(cfg.out, "results.md"), []byte(report), 0o600); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	say(stdout, "\n")
	say(stdout, "%s", report)

	if cfg.docs != "" {
		if err := replaceSection(cfg.docs, report); err != nil {
			return err
		}
		say(stdout, "\nupdated %s\n", cfg.docs)
	}

	return nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}

	return def
}

// say prints progress; a terminal that went away is no reason to stop.
func say(w io.Writer, format string, args ...any) {
	_, _ = fmt.Fprintf(w, format, args...)
}
