package e2e

import (
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// consulOutage is how long TestConsulOutage keeps Consul away.
const consulOutage = 10 * time.Second

// tail is how many more results the load collects after a test's last
// disruption settled, to catch failures that come late: two seconds.
const tail = 400

// waitMore waits until the load has n more results than now.
func waitMore(t *testing.T, l *load, n int) {
	t.Helper()

	target := len(l.snapshot()) + n
	waitUntil(t, 30*time.Second, "more load", func() bool { return len(l.snapshot()) >= target })
}

// TestConsulOutage stops the Consul agent for ten seconds under load and
// starts it again, with none of its registrations (a -dev agent keeps
// nothing): no request may fail, and every instance must register again.
func TestConsulOutage(t *testing.T) {
	s := startWatchedStack(t)
	ctx := testContext(t, 2*time.Minute)
	ids := []string{s.instanceID(t, "catalog-1"), s.instanceID(t, "catalog-2")}

	l := startLoad(t, s.GatewayURL, readURLs)
	waitSettled(t, l, time.Now(), ids...)

	if err := s.Consul.Stop(); err != nil {
		t.Fatalf("stop consul: %v", err)
	}

	// The outage itself is the fault being injected: a fixed ten seconds.
	outage := time.NewTimer(consulOutage)
	<-outage.C

	if r := call(t, "GET", s.GatewayURL+"/readyz", ""); r.status != http.StatusOK {
		t.Errorf("/readyz during the outage = %d %s, want 200: the backends still serve",
			r.status, r.body)
	}

	restarted := time.Now()
	if err := s.Consul.Start(ctx); err != nil {
		t.Fatalf("start consul again: %v", err)
	}

	// A fresh agent: the instances must register again to be listed.
	if err := s.WaitReady(ctx, 2, 1); err != nil {
		t.Fatalf("instances did not come back into consul: %v", err)
	}

	recovered := time.Since(restarted)
	settled := waitSettled(t, l, restarted, ids...)
	waitMore(t, l, tail)
	l.stop()

	results := l.snapshot()
	report(t, "consul stopped for 10s and restarted", results, settled.Sub(restarted))
	t.Logf("every instance registered and passing again %v after consul restarted",
		recovered.Round(time.Millisecond))

	if failed := failures(results); len(failed) != 0 {
		t.Errorf("%d of %d requests failed across the consul outage, want none:%s",
			len(failed), len(results), describeFailures(failed))
	}
}

// TestCrashedInstance kills one of two catalog instances with SIGKILL under
// load: only calls in flight at the kill may fail, and reads are retried on
// the other instance, so none should.
func TestCrashedInstance(t *testing.T) {
	s := startWatchedStack(t)
	client, err := s.Consul.Client()
	if err != nil {
		t.Fatal(err)
	}

	watch := watchHealth(t, client, "catalog")
	victim, survivor := s.instanceID(t, "catalog-1"), s.instanceID(t, "catalog-2")

	l := startLoad(t, s.GatewayURL, readURLs)
	waitSettled(t, l, time.Now(), victim, survivor)

	// Killed from outside the stack, as a crash would end it: make run must
	// notice (Stack.Died) rather than keep serving half a platform.
	killed := time.Now()
	if err := syscall.Kill(-s.Process("catalog-1").Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}

	killDone := time.Now()
	select {
	case p := <-s.Died():
		if p.Name != "catalog-1" {
			t.Errorf("Died reported %s, want catalog-1", p.Name)
		}
	case <-time.After(10 * time.Second):
		t.Error("Died did not report the killed catalog-1")
	}
	settled := waitSettled(t, l, killed, survivor)

	var critical time.Time
	waitUntil(t, 15*time.Second, "consul sees the killed instance critical", func() bool {
		var ok bool
		critical, ok = watch.criticalAt(victim)

		return ok
	})

	waitMore(t, l, tail)
	l.stop()

	results := l.snapshot()
	report(t, "SIGKILL of one of two catalog instances", results, settled.Sub(killed))

	last, _ := lastFrom(results, victim)
	t.Logf("last request answered by the killed instance started %v before the kill; "+
		"consul saw its check critical %v after the kill",
		killed.Sub(last).Round(time.Millisecond), critical.Sub(killed).Round(time.Millisecond))

	failed := failures(results)
	if len(failed) > loadWorkers {
		t.Errorf("%d requests failed; at most the %d in flight at the kill may:%s",
			len(failed), loadWorkers, describeFailures(failed))
	}

	for _, r := range failed {
		if r.start.After(killDone) {
			t.Errorf("a request started %v after the kill failed (%d %s); only calls in "+
				"flight at the kill may fail", r.start.Sub(killDone), r.status, r.detail)
		}
	}
}

// TestRollingRestart stops each catalog instance in turn with SIGTERM and
// starts a replacement, then replaces orders (a new instance first, as it
// has only one), all under load with /readyz among the requests: no
// request may fail. It also measures how fast the gateway follows Consul.
func TestRollingRestart(t *testing.T) {
	s := startWatchedStack(t)
	ctx := testContext(t, 2*time.Minute)
	client, err := s.Consul.Client()
	if err != nil {
		t.Fatal(err)
	}

	watch := watchHealth(t, client, "catalog")
	live := map[string]string{
		"catalog-1": s.instanceID(t, "catalog-1"),
		"catalog-2": s.instanceID(t, "catalog-2"),
	}

	l := startLoad(t, s.GatewayURL, append(slices.Clone(readURLs), "/readyz"))
	begun := time.Now()
	waitSettled(t, l, begun, values(live)...)

	type swap struct{ old, new string }
	var (
		swaps   []swap
		slowest time.Duration // the longest time traffic took to settle after a step
	)

	for _, name := range []string{"catalog-1", "catalog-2"} {
		old := live[name]

		stopped := time.Now()
		if err := s.Process(name).Stop(30 * time.Second); err != nil {
			t.Fatalf("SIGTERM %s: %v", name, err)
		}

		delete(live, name)
		off := waitSettled(t, l, stopped, values(live)...).Sub(stopped)
		slowest = max(slowest, off)
		t.Logf("%s stopped: traffic settled on the rest %v after SIGTERM",
			name, off.Round(time.Millisecond))

		replacement := name + "r"
		started := time.Now()
		if _, err := s.StartProcess(replacement, "catalog"); err != nil {
			t.Fatal(err)
		}

		if err := s.WaitReady(ctx, 2, 1); err != nil {
			t.Fatalf("%s never became ready: %v", replacement, err)
		}

		live[replacement] = s.instanceID(t, replacement)
		on := waitSettled(t, l, started, values(live)...).Sub(started)
		slowest = max(slowest, on)
		t.Logf("%s started: traffic settled on it and the rest %v after it started",
			replacement, on.Round(time.Millisecond))

		swaps = append(swaps, swap{old: old, new: live[replacement]})
	}

	// orders has one instance: its replacement starts first.
	if _, err := s.StartProcess("orders-2", "orders", "-step-interval", "100ms"); err != nil {
		t.Fatal(err)
	}

	if err := s.WaitReady(ctx, 2, 2); err != nil {
		t.Fatalf("orders-2 never became ready: %v", err)
	}

	if err := s.Process("orders-1").Stop(30 * time.Second); err != nil {
		t.Fatalf("SIGTERM orders-1: %v", err)
	}

	if err := s.WaitReady(ctx, 2, 1); err != nil {
		t.Fatalf("not ready after orders-1 left: %v", err)
	}

	waitMore(t, l, tail)
	l.stop()

	results := l.snapshot()
	report(t, "rolling restart of catalog-1, catalog-2 and orders-1 (slowest step)", results,
		slowest)

	for _, sw := range swaps {
		reportFollow(t, watch, results, sw.old, sw.new)
	}

	if failed := failures(results); len(failed) != 0 {
		t.Errorf("%d of %d requests failed across the rolling restart, want none:%s",
			len(failed), len(results), describeFailures(failed))
	}
}

// reportFollow logs how fast the gateway followed Consul: from old's check
// turning critical to its last request, and from new's check passing to
// its first.
func reportFollow(t *testing.T, watch *healthWatch, results []result, old, new string) {
	t.Helper()

	critical, okC := watch.criticalAt(old)
	last, okL := lastFrom(results, old)
	passing, okP := watch.passingAt(new)
	first, okF := firstFrom(results, new)

	if !okC || !okL || !okP || !okF {
		t.Errorf("incomplete timeline for %s → %s: critical %v, last %v, passing %v, first %v",
			old, new, okC, okL, okP, okF)
		return
	}

	t.Logf("gateway follows consul: critical→no traffic %v (last request to %s; "+
		"negative: sent before the test saw the check fail), passing→traffic %v (%s)",
		last.Sub(critical).Round(time.Millisecond), old,
		first.Sub(passing).Round(time.Millisecond), new)
}

// TestGatewayBeforeConsul starts the gateway and orders before Consul and
// the catalog: each waits, says it is not ready, and becomes ready when
// what it needs appears.
func TestGatewayBeforeConsul(t *testing.T) {
	s := prepareStack(t)
	ctx := testContext(t, 2*time.Minute)

	if err := s.StartIssuer(); err != nil {
		t.Fatal(err)
	}

	if err := s.StartGateway(); err != nil {
		t.Fatal(err)
	}

	if _, err := s.StartProcess("orders-1", "orders", "-step-interval", "100ms"); err != nil {
		t.Fatal(err)
	}

	waitUntil(t, 30*time.Second, "gateway answers /healthz", func() bool {
		resp, err := httpClient.Get(s.GatewayURL + "/healthz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()

		return resp.StatusCode == http.StatusOK
	})

	l := startLoad(t, s.GatewayURL, readURLs)

	tests := []struct {
		name, path string
		status     int
	}{
		{name: "not ready", path: "/readyz", status: http.StatusServiceUnavailable},
		{name: "reads fail fast", path: "/v1/products/p-1002",
			status: http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r := call(t, "GET", s.GatewayURL+tt.path, ""); r.status != tt.status {
				t.Errorf("%s before consul = %d %s, want %d", tt.path, r.status, r.body, tt.status)
			}
		})
	}

	consulStarted := time.Now()
	if err := s.Consul.Start(ctx); err != nil {
		t.Fatal(err)
	}

	client, err := s.Consul.Client()
	if err != nil {
		t.Fatal(err)
	}

	// orders registers once Consul is there, but its check fails: it is
	// not serving until a catalog instance answers. The agent's own view
	// has the check's output at once (the catalog's lags behind).
	var check *api.AgentCheck
	waitUntil(t, 30*time.Second, "orders registered and checked", func() bool {
		checks, err := client.Agent().ChecksWithFilter(`ServiceName == "orders"`)
		if err != nil {
			return false
		}

		for _, c := range checks {
			if c.Output != "" {
				check = c
				return true
			}
		}

		return false
	})

	if check.Status != api.HealthCritical {
		t.Errorf("orders without catalog is %q in consul (%s), want critical",
			check.Status, check.Output)
	}

	t.Logf("orders without catalog: %s, %q", check.Status, check.Output)

	if r := call(t, "GET", s.GatewayURL+"/readyz", ""); r.status != http.StatusServiceUnavailable ||
		!strings.Contains(string(r.body), "catalog") {
		t.Errorf("/readyz without catalog = %d %s, want 503 naming catalog", r.status, r.body)
	}

	catalogsStarted := time.Now()
	for _, name := range []string{"catalog-1", "catalog-2"} {
		if _, err := s.StartProcess(name, "catalog"); err != nil {
			t.Fatal(err)
		}
	}

	if err := s.WaitReady(ctx, 2, 1); err != nil {
		t.Fatalf("stack never became ready: %v", err)
	}

	ready := time.Now()
	ids := []string{s.instanceID(t, "catalog-1"), s.instanceID(t, "catalog-2")}
	settled := waitSettled(t, l, catalogsStarted, ids...)
	waitMore(t, l, tail)
	l.stop()

	results := l.snapshot()
	report(t, "gateway and orders started before consul and catalog", results,
		settled.Sub(catalogsStarted))
	t.Logf("ready %v after consul started, %v after the catalog instances started",
		ready.Sub(consulStarted).Round(time.Millisecond),
		ready.Sub(catalogsStarted).Round(time.Millisecond))

	for _, r := range failures(results) {
		if r.start.After(settled) {
			t.Errorf("request started after traffic settled failed: %d %s", r.status, r.detail)
		}

		if r.status != http.StatusServiceUnavailable {
			t.Errorf("request failed with %d %s before the stack was ready, want 503",
				r.status, r.detail)
		}
	}
}

// values returns the values of m, sorted.
func values(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}

	slices.Sort(out)

	return out
}
