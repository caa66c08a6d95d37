package ratelimit_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/ratelimit"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// keySpy records the bucket keys a Guard asks a real Local for.
type keySpy struct {
	ratelimit.Limiter

	mu   sync.Mutex
	keys []string
}

func (s *keySpy) Allow(
	ctx context.Context,
	key string,
	rule ratelimit.Rule,
) (ratelimit.Decision, error) {
	s.mu.Lock()
	s.keys = append(s.keys, key)
	s.mu.Unlock()

	return s.Limiter.Allow(ctx, key, rule)
}

func TestGuardDryRunCountsAndLogsButRefusesNothing(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	clock := newFakeClock()
	p := ratelimit.Policy{Default: ratelimit.Rule{Rate: 0.01, Burst: 1}, DryRun: true}
	g := newGuard(t, "ip", p, ratelimit.WithLogger(zap.New(core)),
		ratelimit.WithClock(clock.Now))

	for i := range 4 {
		v, err := g.CheckMethod(context.Background(), "/a.B/C", "203.0.113.7", "")
		if err != nil {
			t.Fatalf("CheckMethod: %v", err)
		}

		if v.Refused() {
			t.Fatalf("request %d refused in dry run: %+v", i, v)
		}

		if wantAllowed := i == 0; v.Allowed != wantAllowed || !v.DryRun {
			t.Fatalf("request %d: Allowed %v DryRun %v, want %v true", i, v.Allowed, v.DryRun,
				wantAllowed)
		}
	}

	want := ratelimit.Stats{Allowed: 1, WouldRefuse: 3}
	if got := g.Stats(); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}

	// Three would-be refusals within one second: one line.
	lines := logs.FilterMessageSnippet("would refuse")
	if lines.Len() != 1 {
		t.Fatalf("got %d dry-run lines, want 1", lines.Len())
	}

	// A second later the next one is logged with the count of the others.
	clock.Advance(time.Second)
	if _, err := g.CheckMethod(context.Background(), "/a.B/C", "203.0.113.7", ""); err != nil {
		t.Fatalf("CheckMethod: %v", err)
	}

	lines = logs.FilterMessageSnippet("would refuse")
	if lines.Len() != 2 {
		t.Fatalf("got %d dry-run lines after a second, want 2", lines.Len())
	}

	if n := lines.All()[1].ContextMap()["unlogged_since_last"]; n != uint64(2) {
		t.Errorf("unlogged_since_last = %v, want 2", n)
	}
}

func TestGuardEnforcesAndCounts(t *testing.T) {
	g := newGuard(t, "principal", ratelimit.Policy{Default: ratelimit.Rule{Rate: 1, Burst: 2}})

	var refused int
	for range 5 {
		v, err := g.CheckMethod(context.Background(), "/a.B/C", "alice", "")
		if err != nil {
			t.Fatalf("CheckMethod: %v", err)
		}

		if v.Refused() {
			refused++
		}
	}

	if refused != 3 {
		t.Errorf("refused %d of 5, want 3", refused)
	}

	if got, want := g.Stats(), (ratelimit.Stats{Allowed: 2, Refused: 3}); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}

func TestGuardBucketKeys(t *testing.T) {
	local, err := ratelimit.NewLocal()
	if err != nil {
		t.Fatalf("NewLocal: %v", err)
	}

	spy := &keySpy{Limiter: local}
	p := ratelimit.Policy{
		Default: ratelimit.Rule{Rate: 1, Burst: 1},
		Methods: map[string]ratelimit.Rule{"/a.B/Expensive": {Rate: 1, Burst: 1}},
	}
	g, err := ratelimit.NewGuard("principal", spy, p)
	if err != nil {
		t.Fatalf("NewGuard: %v", err)
	}

	long := strings.Repeat("s", 500)
	calls := []struct{ method, id string }{
		{"/a.B/Cheap", "alice"},
		{"/a.B/Expensive", "alice"},
		{"/a.B/Cheap", long + "1"},
		{"/a.B/Cheap", long + "2"},
	}
	for _, c := range calls {
		v, err := g.CheckMethod(context.Background(), c.method, c.id, "")
		if err != nil {
			t.Fatalf("CheckMethod: %v", err)
		}

		// Every first call of a bucket is allowed: no two calls share one.
		if !v.Allowed {
			t.Errorf("%s by %.10s… refused; it should have a bucket of its own", c.method, c.id)
		}
	}

	if spy.keys[0] != "principal|*|alice" || spy.keys[1] != "principal|/a.B/Expensive|alice" {
		t.Errorf("keys = %q, want the shared and the per-method bucket of alice", spy.keys[:2])
	}

	for _, k := range spy.keys[2:] {
		if len(k) > 128 || !strings.HasPrefix(k, "principal|#") {
			t.Errorf("key for a long id = %q, want a hashed key of at most 128 bytes", k)
		}
	}
}

// TestGuardCountsLimiterErrors makes a real Redis limiter fail the only
// way a valid rule can: the caller's context has ended.
func TestGuardCountsLimiterErrors(t *testing.T) {
	_, client := startRedis(t)
	r, err := ratelimit.NewRedis(client)
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}

	g, err := ratelimit.NewGuard("ip", r, ratelimit.Policy{Default: rule(1)})
	if err != nil {
		t.Fatalf("NewGuard: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	_, err = g.CheckMethod(ctx, "/a.B/C", "x", "")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("CheckMethod: got %v, want context.Canceled", err)
	}

	if got := g.Stats(); got != (ratelimit.Stats{Errors: 1}) {
		t.Errorf("Stats = %+v, want one error and nothing else", got)
	}

	if !r.Reachable() {
		t.Errorf("a cancelled caller marked Redis unreachable")
	}
}

func TestNewGuardValidates(t *testing.T) {
	local, err := ratelimit.NewLocal()
	if err != nil {
		t.Fatalf("NewLocal: %v", err)
	}

	tests := []struct {
		name    string
		stage   string
		limiter ratelimit.Limiter
		policy  ratelimit.Policy
		want    error
	}{
		{name: "empty name", stage: "", limiter: local, policy: ratelimit.Policy{Default: rule(1)},
			want: ratelimit.ErrInvalidOption},
		{name: "name with separator", stage: "a|b", limiter: local,
			policy: ratelimit.Policy{Default: rule(1)}, want: ratelimit.ErrInvalidOption},
		{name: "nil limiter", stage: "ip", policy: ratelimit.Policy{Default: rule(1)},
			want: ratelimit.ErrInvalidOption},
		{name: "invalid policy", stage: "ip", limiter: local, want: ratelimit.ErrInvalidPolicy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ratelimit.NewGuard(tt.stage, tt.limiter, tt.policy); !errors.Is(err,
				tt.want) {
				t.Fatalf("NewGuard: got %v, want %v", err, tt.want)
			}
		})
	}
}
