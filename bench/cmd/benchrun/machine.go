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

// profiles takes a CPU profile of the front in each profile case while wrk
// loads it, and writes `go tool pprof -top` of it into dir.
func (r *runner) profiles(ctx context.Context, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("profiles folder: %w", err)
	}

	byKey := map[string]scenario{}
	for _, s := range scenarios() {
		byKey[s.key] = s
	}

	for _, c := range profileCases {
		s, ok := byKey[c.key]
		if !ok || !r.chosen(s) || r.p.targets[s.target].admin == "" {
			continue
		}
		say(r.log, "profiling %s\n", c.key)

		text, err := r.profile(ctx, s)
		if err != nil {
			return err
		}

		header := fmt.Sprintf("# CPU profile of the %s front (core 0) under scenario %s:\n"+
			"# wrk, 1 thread, %d connections; %s; taken by `%s`.\n"+
			"# Profile fetched from its admin listener (/debug/pprof/profile) during the "+
			"run.\n\n",
			s.target, c.key, r.cfg.conns, time.Now().UTC().Format("2006-01-02 15:04 MST"),
			r.cfg.command)
		if err := os.WriteFile(filepath.Join(dir, c.file), []byte(header+text),
			0o644); err != nil {
			return fmt.Errorf("write profile: %w", err)
		}
	}

	return nil
}

// profile loads s's target for the run length plus two seconds and
// fetches a CPU profile of the run length from its admin listener.
func (r *runner) profile(ctx context.Context, s scenario) (string, error) {
	t := r.p.targets[s.target]
	seconds := int(r.cfg.duration / time.Second)

	done := make(chan error, 1)
	go func() {
		_, err := runWrk(ctx, r.cfg.lua, r.wrkJob(s, r.cfg.duration+2*time.Second), r.raw)
		done <- err
	}()
	time.Sleep(time.Second)

	raw := filepath.Join(r.cfg.out, s.key+".pprof")
	fetchErr := fetchProfile(ctx,
		fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", t.admin, seconds), raw)
	if err := <-done; err != nil {
		return "", err
	}
	if fetchErr != nil {
		return "", fetchErr
	}

	var text strings.Builder
	views := []struct{ title, flags string }{
		{"Flat: where the CPU time is spent", "-top -nodecount=30"},
		{"Cumulative: what each frame and its callees cost", "-top -cum -nodecount=70"},
	}
	for _, v := range views {
		args := append([]string{"tool", "pprof"}, strings.Fields(v.flags)...)
		out, err := exec.CommandContext(ctx, "go", append(args, raw)...).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("go tool pprof: %w: %s", err, out)
		}
		fmt.Fprintf(&text, "## %s (go tool pprof %s)\n\n%s\n", v.title, v.flags, out)
	}

	return text.String(), nil
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
