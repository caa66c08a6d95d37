package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/devstack"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport"
	"github.com/hashicorp/consul/api"
)

// Load through the gateway: a few workers share a steady rate of product
// reads, well below what the machine can serve, so that every failure is
// the platform's and not the load's. At this rate each of two instances
// gets a request every 10ms, which is the resolution of the measured
// figures. The gateway runs with a per-IP rate limit above it (rateLimits),
// as the whole load comes from one IP.
const (
	loadWorkers = 4
	loadRate    = 200 // requests per second, all workers together
)

// rateLimits lifts the gateway's per-IP limit (50 a second by default)
// above the test's load.
const rateLimits = `{"perIP":{"default":{"rate":1000,"burst":1000}},` +
	`"perPrincipal":{"default":{"rate":10,"burst":20}}}`

// readURLs are the public product reads the load cycles through.
var readURLs = []string{
	"/v1/products/p-1002",
	"/v1/products?page_size=3",
	"/v1/products/p-1005",
}

// result is one request of the load.
type result struct {
	start, end time.Time
	path       string
	status     int    // 0 when the request failed without an answer
	instance   string // the catalog instance that answered, if any
	detail     string // what went wrong, for failures
	cancelled  bool   // the load was stopped under this request
}

func (r result) failed() bool { return r.status != http.StatusOK }

// load sends requests at a steady rate until stopped and keeps every
// result. It is safe for concurrent use.
type load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	results []result
}

// startLoad starts the load on base+paths, cycling through paths; it is
// stopped at the latest when the test ends.
func startLoad(t *testing.T, base string, paths []string) *load {
	t.Helper()

	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel}
	client := &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: loadWorkers}}
	ticks := time.NewTicker(time.Second / loadRate)

	for w := range loadWorkers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()

			for i := w; ; i += loadWorkers {
				select {
				case <-ctx.Done():
					return
				case <-ticks.C:
				}

				l.record(send(ctx, client, base, paths[i%len(paths)]))
			}
		}()
	}

	t.Cleanup(func() {
		l.stop()
		ticks.Stop()
		client.CloseIdleConnections()
	})

	return l
}

// send makes one GET request and describes its outcome.
func send(ctx context.Context, client *http.Client, base, path string) result {
	r := result{start: time.Now(), path: path}

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		r.detail, r.end = err.Error(), time.Now()
		return r
	}

	resp, err := client.Do(req)
	if err != nil {
		r.detail = err.Error()
		r.cancelled = ctx.Err() != nil
		r.end = time.Now()

		return r
	}
	defer func() { _ = resp.Body.Close() }()

	body, err := io.ReadAll(resp.Body)
	r.end = time.Now()

	switch {
	case err != nil:
		r.detail = "read body: " + err.Error()
		r.cancelled = ctx.Err() != nil
	case resp.StatusCode != http.StatusOK:
		r.status = resp.StatusCode
		r.detail = strings.TrimSpace(string(body))
	default:
		r.status = resp.StatusCode
		r.instance = resp.Header.Get(instanceHeader)
	}

	return r
}

func (l *load) record(r result) {
	if r.cancelled {
		return
	}

	l.mu.Lock()
	l.results = append(l.results, r)
	l.mu.Unlock()
}

// stop ends the load and waits for the workers.
func (l *load) stop() {
	l.cancel()
	l.wg.Wait()
}

// snapshot returns the results so far, in the order they completed.
func (l *load) snapshot() []result {
	l.mu.Lock()
	defer l.mu.Unlock()

	return append([]result(nil), l.results...)
}

// failures returns the failed results.
func failures(results []result) []result {
	var out []result

	for _, r := range results {
		if r.failed() {
			out = append(out, r)
		}
	}

	return out
}

// settledAt returns when traffic settled on exactly the instances want
// after from: the moment from which results all succeeded, came only from
// those of want that name an instance, and had come from every one of
// want, for at least window consecutive results. ok is false when that has
// not happened yet.
func settledAt(results []result, from time.Time, window int, want ...string) (time.Time, bool) {
	wanted := map[string]bool{}
	for _, id := range want {
		wanted[id] = true
	}

	sorted := slices.Clone(results)
	slices.SortFunc(sorted, func(a, b result) int { return a.start.Compare(b.start) })

	var (
		run      int            // length of the current run of good results
		complete int            // index in the run from which every wanted one had answered
		seen     map[string]int // wanted instance → index in the run of its first answer
	)

	for i, r := range sorted {
		if r.start.Before(from) {
			continue
		}

		if r.failed() || (r.instance != "" && !wanted[r.instance]) {
			run, seen = 0, nil
			continue
		}

		if run == 0 {
			seen, complete = map[string]int{}, 0
		}

		if _, ok := seen[r.instance]; !ok && r.instance != "" {
			seen[r.instance] = run
			complete = max(complete, run)
		}

		run++

		if len(seen) == len(wanted) && run-complete >= window {
			// sorted[i-run+1] is the run's first result.
			return sorted[i-run+1+complete].start, true
		}
	}

	return time.Time{}, false
}

// waitSettled waits until the load has settled on exactly the instances
// want since from, and returns when it did.
func waitSettled(t *testing.T, l *load, from time.Time, want ...string) time.Time {
	t.Helper()

	var at time.Time

	waitUntil(t, 30*time.Second, fmt.Sprintf("traffic settled on %v", want), func() bool {
		var ok bool
		at, ok = settledAt(l.snapshot(), from, settleWindow, want...)

		return ok
	})

	return at
}

// settleWindow is how many consecutive good results make traffic settled:
// half a second of load.
const settleWindow = 100

// lastFrom returns the start of the last request answered by instance, and
// firstFrom the start of the first; ok is false when there is none.
func lastFrom(results []result, instance string) (time.Time, bool) {
	var last time.Time

	for _, r := range results {
		if r.instance == instance && r.start.After(last) {
			last = r.start
		}
	}

	return last, !last.IsZero()
}

func firstFrom(results []result, instance string) (time.Time, bool) {
	var first time.Time

	for _, r := range results {
		if r.instance == instance && (first.IsZero() || r.start.Before(first)) {
			first = r.start
		}
	}

	return first, !first.IsZero()
}

// report logs what the issue asks of every test: requests sent and failed,
// and the time until traffic settled.
func report(t *testing.T, phase string, results []result, settle time.Duration) {
	t.Helper()

	t.Logf("%s: %d requests sent, %d failed, traffic settled %v after the disruption",
		phase, len(results), len(failures(results)), settle.Round(time.Millisecond))
}

// describeFailures lists up to ten failed results, for an error message.
func describeFailures(failed []result) string {
	var b strings.Builder

	for i, r := range failed {
		if i == 10 {
			fmt.Fprintf(&b, "\n  … %d more", len(failed)-i)
			break
		}

		fmt.Fprintf(&b, "\n  started %s: %s status %d %s", r.start.Format("15:04:05.000"),
			r.path, r.status, r.detail)
	}

	return b.String()
}

// waitUntil polls cond every 20ms until it holds, failing the test after
// timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()

	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %v", what, timeout)
		}

		time.Sleep(20 * time.Millisecond)
	}
}

// watchedStack is a stack whose processes' output is kept, so that tests
// can find the Consul instance id of a process.
type watchedStack struct {
	*devstack.Stack
	out *lockedBuffer
}

// prepareStack builds the binaries and prepares a stack of two catalog
// instances, orders and the gateway without starting anything; it is
// stopped when the test ends, and its output logged if the test failed.
func prepareStack(t *testing.T) *watchedStack {
	t.Helper()

	consulBin, err := testsupport.ConsulBin()
	if err != nil {
		t.Fatalf("consul binary: %v", err)
	}

	out := &lockedBuffer{buf: &bytes.Buffer{}}

	limits := filepath.Join(t.TempDir(), "ratelimits.json")
	if err := os.WriteFile(limits, []byte(rateLimits), 0o600); err != nil {
		t.Fatal(err)
	}

	stack, err := devstack.Prepare(devstack.Config{
		BinDir:    binDir,
		ConsulBin: consulBin,
		// Another stack (another engineer's test run) may hold the default
		// admin port.
		GatewayArgs:  []string{"-admin-listen", "127.0.0.1:0", "-ratelimit-config", limits},
		Catalogs:     2,
		StepInterval: 100 * time.Millisecond,
		Output:       out,
		CertDir:      t.TempDir(),
	})
	if err != nil {
		t.Fatalf("prepare stack: %v", err)
	}

	t.Cleanup(func() {
		if err := stack.Stop(); err != nil {
			t.Errorf("stop stack: %v", err)
		}

		if t.Failed() {
			t.Logf("process output:\n%s", out.String())
		}
	})

	return &watchedStack{Stack: stack, out: out}
}

// startWatchedStack starts a prepared stack in the usual order and waits
// until it is ready.
func startWatchedStack(t *testing.T) *watchedStack {
	t.Helper()

	s := prepareStack(t)
	ctx := testContext(t, 90*time.Second)

	for _, step := range []func() error{
		func() error { return s.Consul.Start(ctx) },
		s.StartIssuer,
		s.StartServices,
		s.StartGateway,
		func() error { return s.WaitReady(ctx, 2, 1) },
	} {
		if err := step(); err != nil {
			t.Fatalf("start stack: %v", err)
		}
	}

	return s
}

// instanceID returns the Consul instance id of the process called name,
// from the "instance" field of its JSON log lines.
func (s *watchedStack) instanceID(t *testing.T, name string) string {
	t.Helper()

	prefix := fmt.Sprintf("%-10s| ", name)
	var id string

	waitUntil(t, 10*time.Second, "instance id of "+name, func() bool {
		for line := range strings.Lines(s.out.String()) {
			rest, ok := strings.CutPrefix(line, prefix)
			if !ok {
				continue
			}

			var fields struct {
				Instance string `json:"instance"`
			}
			if json.Unmarshal([]byte(rest), &fields) == nil && fields.Instance != "" {
				id = fields.Instance
				return true
			}
		}

		return false
	})

	return id
}

// testContext returns a context that ends after d or with the test.
func testContext(t *testing.T, d time.Duration) context.Context {
	t.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)

	return ctx
}

// healthWatch follows the health of every instance of a service in Consul
// with blocking queries and records when each was first seen passing, and
// first seen failing after that. It keeps asking through Consul outages.
type healthWatch struct {
	mu       sync.Mutex
	passing  map[string]time.Time
	critical map[string]time.Time
}

func watchHealth(t *testing.T, client *api.Client, service string) *healthWatch {
	t.Helper()

	w := &healthWatch{passing: map[string]time.Time{}, critical: map[string]time.Time{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})

	go func() {
		defer close(done)

		var index uint64
		for ctx.Err() == nil {
			q := (&api.QueryOptions{WaitIndex: index, WaitTime: 10 * time.Second}).WithContext(ctx)

			entries, meta, err := client.Health().Service(service, "", false, q)
			if err != nil {
				index = 0
				select {
				case <-ctx.Done():
				case <-time.After(50 * time.Millisecond):
				}

				continue
			}

			w.observe(entries, time.Now())

			index = meta.LastIndex
		}
	}()

	t.Cleanup(func() {
		cancel()
		<-done
	})

	return w
}

func (w *healthWatch) observe(entries []*api.ServiceEntry, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()

	for _, e := range entries {
		id := e.Service.ID
		_, passed := w.passing[id]

		switch {
		case e.Checks.AggregatedStatus() == api.HealthPassing:
			if !passed {
				w.passing[id] = now
			}
		case passed:
			// Critical after passing; a new instance starts critical.
			if _, ok := w.critical[id]; !ok {
				w.critical[id] = now
			}
		}
	}
}

// passingAt and criticalAt return when id was first seen in that state.
func (w *healthWatch) passingAt(id string) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()

	at, ok := w.passing[id]

	return at, ok
}

func (w *healthWatch) criticalAt(id string) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()

	at, ok := w.critical[id]

	return at, ok
}
