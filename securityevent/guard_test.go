package securityevent_test

import (
	"context"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/securityevent"
	"github.com/prometheus/client_golang/prometheus"
)

// manualClock is an injected clock that moves only when told.
type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()

	return c.t
}

func (c *manualClock) Set(offset time.Duration) {
	c.mu.Lock()
	c.t = fixedNow.Add(offset)
	c.mu.Unlock()
}

func guardConfig() securityevent.GuardConfig {
	return securityevent.GuardConfig{
		MaxFailures: 3, Window: time.Minute, Cooldown: 5 * time.Minute, MaxTracked: 100,
	}
}

func newGuard(
	t *testing.T,
	cfg securityevent.GuardConfig,
	opts ...securityevent.GuardOption,
) (*securityevent.AbuseGuard, *manualClock, *prometheus.Registry, func() []map[string]any) {
	t.Helper()

	e, reg, sink := newEmitter(t)
	clock := &manualClock{t: fixedNow}
	opts = append([]securityevent.GuardOption{securityevent.WithGuardClock(clock.Now)}, opts...)
	g, err := securityevent.NewAbuseGuard(cfg, e, opts...)
	if err != nil {
		t.Fatalf("new guard: %v", err)
	}

	events := func() []map[string]any {
		var out []map[string]any
		for _, m := range sink.Entries(t) {
			if ev, _ := m["event"].(string); strings.HasPrefix(ev, "abuse_") {
				out = append(out, m)
			}
		}
		return out
	}

	return g, clock, reg, events
}

// TestGuardWindow checks when a series of failures blocks a client: more
// than MaxFailures (3) within the sliding one-minute window.
func TestGuardWindow(t *testing.T) {
	tests := []struct {
		name     string
		failures []time.Duration // offsets of the failures
		want     bool
	}{
		{"at the limit", []time.Duration{0, 10 * time.Second, 20 * time.Second}, false},
		{"one over the limit", []time.Duration{0, 10 * time.Second, 20 * time.Second,
			30 * time.Second}, true},
		{"spread over two windows", []time.Duration{0, 10 * time.Second, 50 * time.Second,
			70 * time.Second}, false},
		{"window slides", []time.Duration{0, 30 * time.Second, 65 * time.Second,
			70 * time.Second, 80 * time.Second}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, clock, _, _ := newGuard(t, guardConfig())

			var got bool
			for _, off := range tt.failures {
				clock.Set(off)
				got = g.RecordFailure("192.0.2.1")
			}

			if got != tt.want || g.Blocked("192.0.2.1") != tt.want {
				t.Errorf("blocked = %v (Blocked says %v), want %v", got,
					g.Blocked("192.0.2.1"), tt.want)
			}
			if g.Blocked("192.0.2.2") {
				t.Errorf("another client is blocked")
			}
		})
	}
}

// TestGuardBlockStartsAndEnds walks one client through a block with the
// injected clock, checking events and the gauge at each step.
func TestGuardBlockStartsAndEnds(t *testing.T) {
	g, clock, reg, events := newGuard(t, guardConfig())
	const ip = "198.51.100.4"

	for i := range 4 {
		clock.Set(time.Duration(i) * time.Second)
		g.RecordFailure(ip)
	}

	evs := events()
	if len(evs) != 1 || evs[0]["event"] != securityevent.EventAbuseBlockStarted {
		t.Fatalf("events after the 4th failure = %v, want one abuse_block_started", evs)
	}
	if evs[0]["client"] != ip || evs[0]["failures"] != 4.0 ||
		evs[0]["blocked_until"] != "2030-01-02T03:09:08Z" {
		t.Errorf("start event = %v", evs[0])
	}
	if got := metricValue(t, reg, "gatehouse_abuse_blocked_clients"); got != 1 {
		t.Errorf("blocked gauge = %v, want 1", got)
	}

	// Further failures during the block neither extend it nor emit again.
	clock.Set(4*time.Minute + 59*time.Second)
	if !g.RecordFailure(ip) || !g.Blocked(ip) {
		t.Fatalf("not blocked one second before the cooldown ends")
	}
	if n := len(events()); n != 1 {
		t.Errorf("%d events during the block, want 1", n)
	}

	clock.Set(5*time.Minute + 3*time.Second)
	if g.Blocked(ip) {
		t.Fatalf("still blocked after the cooldown")
	}
	evs = events()
	if len(evs) != 2 || evs[1]["event"] != securityevent.EventAbuseBlockEnded ||
		evs[1]["client"] != ip {
		t.Fatalf("events after the cooldown = %v, want abuse_block_ended last", evs)
	}
	if got := metricValue(t, reg, "gatehouse_abuse_blocked_clients"); got != 0 {
		t.Errorf("blocked gauge = %v, want 0", got)
	}

	// The client starts afresh: three failures are allowed again.
	for range 3 {
		if g.RecordFailure(ip) {
			t.Fatalf("blocked again before exceeding the limit")
		}
	}
}

// TestGuardSweep checks that Sweep ends blocks and forgets quiet clients
// without anyone asking about them.
func TestGuardSweep(t *testing.T) {
	g, clock, _, events := newGuard(t, guardConfig())

	for range 4 {
		g.RecordFailure("192.0.2.10")
	}
	g.RecordFailure("192.0.2.11")
	if got := g.Tracked(); got != 2 {
		t.Fatalf("tracked = %d, want 2", got)
	}

	clock.Set(2 * time.Minute)
	g.Sweep()
	if got := g.Tracked(); got != 1 {
		t.Errorf("tracked after the window = %d, want 1 (the blocked client)", got)
	}

	clock.Set(6 * time.Minute)
	g.Sweep()
	if got := g.Tracked(); got != 0 {
		t.Errorf("tracked after the cooldown = %d, want 0", got)
	}
	evs := events()
	if len(evs) != 2 || evs[1]["event"] != securityevent.EventAbuseBlockEnded {
		t.Errorf("events = %v, want start then end", evs)
	}
}

// TestGuardMemoryIsBounded checks the cap on tracked clients.
func TestGuardMemoryIsBounded(t *testing.T) {
	cfg := guardConfig()
	cfg.MaxTracked = 2

	t.Run("oldest watched client is evicted", func(t *testing.T) {
		g, clock, _, _ := newGuard(t, cfg)

		g.RecordFailure("192.0.2.1")
		g.RecordFailure("192.0.2.1")
		g.RecordFailure("192.0.2.1")
		clock.Set(time.Second)
		g.RecordFailure("192.0.2.2")
		clock.Set(2 * time.Second)
		g.RecordFailure("192.0.2.3")

		if got := g.Tracked(); got != 2 {
			t.Errorf("tracked = %d, want 2", got)
		}
		// 192.0.2.1 was forgotten, so one more failure does not block it.
		if g.RecordFailure("192.0.2.1") {
			t.Errorf("evicted client blocked on its first new failure")
		}
	})

	t.Run("blocked clients are kept", func(t *testing.T) {
		g, _, _, _ := newGuard(t, cfg)

		for _, ip := range []string{"192.0.2.1", "192.0.2.2"} {
			for range 4 {
				g.RecordFailure(ip)
			}
		}
		for range 10 {
			if g.RecordFailure("192.0.2.3") {
				t.Fatalf("untracked client was blocked")
			}
		}

		if !g.Blocked("192.0.2.1") || !g.Blocked("192.0.2.2") || g.Tracked() != 2 {
			t.Errorf("blocked clients were evicted; tracked = %d", g.Tracked())
		}
	})
}

// TestGuardKeys checks that addresses of one client share a key.
func TestGuardKeys(t *testing.T) {
	tests := []struct {
		name  string
		ips   []string
		block bool
	}{
		{"ipv6 /64 is one client", []string{"2001:db8::1", "2001:db8::2",
			"2001:db8::ffff:1", "2001:db8::9"}, true},
		{"ipv4 mapped in ipv6", []string{"192.0.2.1", "::ffff:192.0.2.1", "192.0.2.1",
			"::ffff:192.0.2.1"}, true},
		{"different ipv6 /64s", []string{"2001:db8:0:1::1", "2001:db8:0:2::1",
			"2001:db8:0:3::1", "2001:db8:0:4::1"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, _, _, _ := newGuard(t, guardConfig())

			var blocked bool
			for _, ip := range tt.ips {
				blocked = g.RecordFailure(ip)
			}
			if blocked != tt.block {
				t.Errorf("blocked = %v, want %v", blocked, tt.block)
			}
		})
	}
}

// TestGuardMiddleware drives the guard through a real HTTP server with a
// stand-in authentication handler that fails requests carrying X-Bad.
func TestGuardMiddleware(t *testing.T) {
	g, clock, _, _ := newGuard(t, guardConfig())
	auth := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Bad") != "" {
			g.RecordFailure("127.0.0.1")
			http.Error(w, "unauthenticated", http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	srv := httptest.NewServer(g.Middleware(auth))
	t.Cleanup(srv.Close)

	// get sends one request and returns its status, Retry-After and body.
	get := func(bad bool) (int, string, string) {
		t.Helper()

		req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
		if err != nil {
			t.Fatalf("new request: %v", err)
		}
		if bad {
			req.Header.Set("X-Bad", "1")
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		defer func() { _ = resp.Body.Close() }()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("read body: %v", err)
		}

		return resp.StatusCode, resp.Header.Get("Retry-After"), string(body)
	}

	for i := range 4 {
		if got, _, _ := get(true); got != http.StatusUnauthorized {
			t.Fatalf("bad request %d: status %d, want 401", i, got)
		}
	}

	clock.Set(90 * time.Second)
	status, retry, body := get(false)
	if status != http.StatusTooManyRequests {
		t.Fatalf("good request while blocked: status %d, want 429", status)
	}
	if retry != "210" {
		t.Errorf("Retry-After = %q, want 210", retry)
	}
	if !strings.Contains(body, `"code":8`) {
		t.Errorf("body = %s, want a RESOURCE_EXHAUSTED status", body)
	}

	clock.Set(5*time.Minute + time.Second)
	if got, _, _ := get(false); got != http.StatusOK {
		t.Errorf("good request after the cooldown: status %d, want 200", got)
	}

	// The middleware skips its look-up while nobody is blocked; a second
	// block must still be seen, and one ended by Sweep must be let go.
	for i := range 4 {
		if got, _, _ := get(true); got != http.StatusUnauthorized {
			t.Fatalf("bad request %d after the first block: status %d, want 401", i, got)
		}
	}
	if got, _, _ := get(false); got != http.StatusTooManyRequests {
		t.Fatalf("good request during the second block: status %d, want 429", got)
	}
	clock.Set(11*time.Minute + time.Second)
	g.Sweep()
	if got, _, _ := get(false); got != http.StatusOK {
		t.Errorf("good request after Sweep ended the second block: status %d, want 200", got)
	}
}

// TestGuardRunStops checks that Run returns once its context is done.
func TestGuardRunStops(t *testing.T) {
	g, _, _, _ := newGuard(t, guardConfig())
	ctx, cancel := context.WithCancel(context.Background())

	done := make(chan struct{})
	go func() {
		g.Run(ctx, time.Millisecond)
		close(done)
	}()
	cancel()

	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("Run did not return after cancel")
	}
}

func TestGuardConfig(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*securityevent.GuardConfig)
		wantErr bool
	}{
		{"defaults", func(*securityevent.GuardConfig) {}, false},
		{"zero failures", func(c *securityevent.GuardConfig) { c.MaxFailures = 0 }, true},
		{"zero window", func(c *securityevent.GuardConfig) { c.Window = 0 }, true},
		{"negative cooldown", func(c *securityevent.GuardConfig) { c.Cooldown = -1 }, true},
		{"zero tracked", func(c *securityevent.GuardConfig) { c.MaxTracked = 0 }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := securityevent.DefaultGuardConfig()
			tt.edit(&cfg)

			err := cfg.Validate()
			if (err != nil) != tt.wantErr {
				t.Errorf("Validate() = %v, want error %v", err, tt.wantErr)
			}
		})
	}

	t.Run("flags", func(t *testing.T) {
		cfg := securityevent.DefaultGuardConfig()
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		cfg.RegisterFlags(fs)
		err := fs.Parse([]string{"-abuse-max-failures=5", "-abuse-window=30s",
			"-abuse-cooldown=2m", "-abuse-max-tracked=50"})
		if err != nil {
			t.Fatalf("parse: %v", err)
		}

		want := securityevent.GuardConfig{MaxFailures: 5, Window: 30 * time.Second,
			Cooldown: 2 * time.Minute, MaxTracked: 50}
		if cfg != want {
			t.Errorf("config = %+v, want %+v", cfg, want)
		}
	})

	t.Run("constructor refuses", func(t *testing.T) {
		e, _, _ := newEmitter(t)
		if _, err := securityevent.NewAbuseGuard(securityevent.GuardConfig{}, e); err == nil {
			t.Errorf("zero config accepted")
		}
		if _, err := securityevent.NewAbuseGuard(guardConfig(), nil); err == nil {
			t.Errorf("nil emitter accepted")
		}
	})
}
