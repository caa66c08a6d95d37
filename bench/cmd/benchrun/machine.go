package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// machine describes where and when a run happened.
type machine struct {
	cpus                     int
	model, kernel, goVersion string
	wrk, haproxy             string
	date                     time.Time
	elapsed                  time.Duration
	startLoad, endLoad       string
}

func describeMachine() *machine {
	m := &machine{date: time.Now().UTC(), goVersion: runtime.Version(),
		startLoad: loadAverages()}

	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), ":")
			switch strings.TrimSpace(k) {
			case "processor":
				m.cpus++
			case "model name":
				m.model = strings.TrimSpace(v)
			}
		}
		_ = f.Close()
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(data))
	}

	// "wrk debian/4.1.0-3+b2 [epoll] …" and "HAProxy version 2.6.12-1 …".
	m.wrk = "wrk " + field(firstLine("wrk", "-v"), 1)
	m.haproxy = "HAProxy " + field(firstLine("haproxy", "-v"), 2)

	return m
}

// finish records the end of the run.
func (m *machine) finish(started time.Time) {
	m.elapsed = time.Since(started).Round(time.Second)
	m.endLoad = loadAverages()
}

func (m *machine) summary() string {
	return fmt.Sprintf("%d CPUs (%s), Linux %s, %s; %s; %s; load average %s",
		m.cpus, m.model, m.kernel, m.goVersion, m.wrk, m.haproxy, m.startLoad)
}

// firstLine runs a command and returns the first line it prints.
func firstLine(name string, args ...string) string {
	out, _ := exec.Command(name, args...).CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")

	return strings.TrimSpace(line)
}

// field returns the i-th space-separated field of s, or "?".
func field(s string, i int) string {
	f := strings.Fields(s)
	if i >= len(f) {
		return "?"
	}

	return f[i]
}

// loadAverages returns the 1, 5 and 15-minute load averages.
func loadAverages() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}

	return strings.Join(f[:3], " ")
}

// loadAverage returns the 1-minute load average.
func loadAverage() float64 {
	var l float64
	_, _ = fmt.Sscan(loadAverages(), &l)

	return l
}

// profileCases are the runs whose CPU profile is summarised: file name and
// scenario key.
var profileCases = []struct{ file, key string }{
	{"full-get-hot-es256.txt", "get-full-hot-es256"},
	{"full-get-pool.txt", "get-full-pool"},
	{"full-get-beyond-cache.txt", "get-full-beyond-cache"},
	{"all-get-hot-es256.txt", "get-all-hot-es256"},
	{"bare-get-hot-es256.txt", "get-bare-hot-es256"},
}

// waitCases are the runs whose scheduler latency is summarised: how long
// the front's goroutines stood runnable, waiting for the core, which is
// where tail latency comes from when the CPU profile shows nothing slow.
var waitCases = []struct{ file, key string }{
	{"full-get-hot-es256-wait.txt", "get-full-hot-es256"},
	{"bare-get-hot-es256-wait.txt", "get-bare-hot-es256"},
	{"full-paced-wait.txt", "paced-full"},
	{"bare-paced-wait.txt", "paced-bare"},
}

// traceSeconds is the length of the execution traces the wait summaries
// come from; tracing slows the front, so it is kept short.
const traceSeconds = 3

// profiles takes a CPU profile of the front in each profile case, and an
// execution trace in each wait case, while wrk loads it, and writes their
// `go tool pprof -top` summaries into dir.
func (r *runner) profiles(ctx context.Context, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("profiles folder: %w", err)
	}

	byKey := map[string]scenario{}
	for _, s := range scenarios() {
		byKey[s.key] = s
	}
	profiled := func(key string) (scenario, bool) {
		s, ok := byKey[key]
		if !ok || !r.chosen(s) || r.p.targets[s.target].admin == "" {
			return s, false
		}

		// Paced runs need the pace their rounds set.
		return s, !s.paced || r.paceMS > 0
	}
	write := func(file, header, text string) error {
		err := os.WriteFile(filepath.Join(dir, file), []byte(header+text), 0o644)
		if err != nil {
			return fmt.Errorf("write profile: %w", err)
		}

		return nil
	}
	stamp := func(s scenario) string {
		return fmt.Sprintf("wrk, 1 thread, %d connections%s; %s; taken by `%s`",
			r.cfg.conns, r.paceText(s), time.Now().UTC().Format("2006-01-02 15:04 MST"),
			r.cfg.command)
	}

	for _, c := range profileCases {
		s, ok := profiled(c.key)
		if !ok {
			continue
		}
		say(r.log, "profiling %s\n", c.key)

		text, err := r.profile(ctx, s)
		if err != nil {
			return err
		}

		header := fmt.Sprintf("# CPU profile of the %s front (core 0) under scenario %s:\n"+
			"# %s.\n# Profile fetched from its admin listener (/debug/pprof/profile) "+
			"during the run.\n\n", s.target, c.key, stamp(s))
		if err := write(c.file, header, text); err != nil {
			return err
		}
	}

	for _, c := range waitCases {
		s, ok := profiled(c.key)
		if !ok {
			continue
		}
		say(r.log, "tracing %s\n", c.key)

		text, requests, err := r.waits(ctx, s)
		if err != nil {
			return err
		}

		header := fmt.Sprintf("# Scheduler latency of the %s front (core 0) under scenario "+
			"%s:\n# %s.\n# From a %d s execution trace (/debug/pprof/trace) during the "+
			"run, %d requests answered in it by wrk's count;\n# `go tool trace "+
			"-pprof=sched` charges the time each goroutine stood runnable, waiting\n"+
			"# for the core, to the stack that made it runnable (the reader that "+
			"delivered its\n# response, the netpoller that saw its socket ready, ...). "+
			"Tracing itself slows the front.\n\n",
			s.target, c.key, stamp(s), traceSeconds, requests)
		if err := write(c.file, header, text); err != nil {
			return err
		}
	}

	return nil
}

// paceText describes a paced scenario's pause, "" for a saturating one.
func (r *runner) paceText(s scenario) string {
	if !s.paced {
		return ""
	}

	return fmt.Sprintf(" each pausing %d ms after every answer", r.paceMS)
}

// loadWhile runs wrk on s for d while fetch takes something from the front,
// starting a second in, and returns wrk's figures.
func (r *runner) loadWhile(ctx context.Context, s scenario, d time.Duration,
	fetch func() error,
) (load, error) {
	type result struct {
		l   load
		err error
	}
	done := make(chan result, 1)
	go func() {
		l, err := runWrk(ctx, r.cfg.lua, r.wrkJob(s, d), r.raw)
		done <- result{l, err}
	}()
	time.Sleep(time.Second)

	fetchErr := fetch()
	res := <-done
	if res.err != nil {
		return load{}, res.err
	}

	return res.l, fetchErr
}

// profile loads s's target for the run length plus two seconds and
// fetches a CPU profile of the run length from its admin listener.
func (r *runner) profile(ctx context.Context, s scenario) (string, error) {
	t := r.p.targets[s.target]
	seconds := int(r.cfg.duration / time.Second)

	raw := filepath.Join(r.cfg.out, s.key+".pprof")
	_, err := r.loadWhile(ctx, s, r.cfg.duration+2*time.Second, func() error {
		return fetchProfile(ctx,
			fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", t.admin, seconds), raw)
	})
	if err != nil {
		return "", err
	}

	var text strings.Builder
	views := []struct{ title, flags string }{
		{"Flat: where the CPU time is spent", "-top -nodecount=30"},
		{"Cumulative: what each frame and its callees cost", "-top -cum -nodecount=70"},
	}
	for _, v := range views {
		out, err := goTool(ctx, append([]string{"pprof"}, append(strings.Fields(v.flags),
			raw)...)...)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&text, "## %s (go tool pprof %s)\n\n%s\n", v.title, v.flags, out)
	}

	return text.String(), nil
}

// waits loads s's target for traceSeconds plus two, fetches an execution
// trace of traceSeconds, and summarises its scheduler latency. It returns
// the summary and about how many requests the trace covers.
func (r *runner) waits(ctx context.Context, s scenario) (string, int64, error) {
	t := r.p.targets[s.target]
	d := traceSeconds * time.Second

	raw := filepath.Join(r.cfg.out, s.key+".trace")
	l, err := r.loadWhile(ctx, s, d+2*time.Second, func() error {
		return fetchProfile(ctx,
			fmt.Sprintf("http://%s/debug/pprof/trace?seconds=%d", t.admin, traceSeconds), raw)
	})
	if err != nil {
		return "", 0, err
	}

	sched, err := goTool(ctx, "trace", "-pprof=sched", raw)
	if err != nil {
		return "", 0, err
	}
	schedFile := raw + ".sched.pprof"
	if err := os.WriteFile(schedFile, []byte(sched), 0o600); err != nil {
		return "", 0, fmt.Errorf("save scheduler profile: %w", err)
	}

	const flags = "-top -nodecount=25"
	out, err := goTool(ctx, append([]string{"pprof"}, append(strings.Fields(flags),
		schedFile)...)...)
	if err != nil {
		return "", 0, err
	}
	text := fmt.Sprintf("## Runnable, waiting for the core (go tool pprof %s)\n\n%s\n",
		flags, out)

	return text, int64(l.RPS() * traceSeconds), nil
}

// goTool runs `go tool` with args and returns its standard output.
func goTool(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", append([]string{"tool"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go tool %s: %w: %s", args[0], err, stderr.String())
	}

	return string(out), nil
}

func fetchProfile(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}

	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("fetch profile: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch profile: %s", resp.Status)
	}

	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("save profile: %w", err)
	}
	defer func() { _ = f.Close() }()

	if _, err := io.Copy(f, resp.Body); err != nil {
		return fmt.Errorf("save profile: %w", err)
	}

	return nil
}
