package securityevent

import (
	"container/list"
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-dev/gatehouse/httpcall"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
)

// refusedBody is the JSON google.rpc.Status sent to a blocked client.
const refusedBody = `{"code":8,"message":"too many failed attempts, try again later",` +
	`"details":[]}` + "\n"

// maxKey bounds the length of a client key that is not an IP address.
const maxKey = 64

// GuardConfig sets when AbuseGuard blocks a client and for how long.
type GuardConfig struct {
	// MaxFailures is how many failed authentications a client may have
	// within Window; one more blocks it.
	MaxFailures int
	// Window is the sliding period over which failures are counted.
	Window time.Duration
	// Cooldown is how long a blocked client is refused.
	Cooldown time.Duration
	// MaxTracked caps the clients remembered at once, blocked or not, so
	// memory stays bounded however many addresses an attacker uses.
	MaxTracked int
}

// DefaultGuardConfig returns the settings used when no flag says otherwise:
// more than 10 failures in a minute block a client for 5 minutes, and at
// most 10,000 clients are tracked.
func DefaultGuardConfig() GuardConfig {
	return GuardConfig{
		MaxFailures: 10,
		Window:      time.Minute,
		Cooldown:    5 * time.Minute,
		MaxTracked:  10_000,
	}
}

// Validate reports the first problem with c.
func (c GuardConfig) Validate() error {
	switch {
	case c.MaxFailures < 1:
		return fmt.Errorf("securityevent: abuse guard max failures %d: want at least 1",
			c.MaxFailures)
	case c.Window <= 0:
		return fmt.Errorf("securityevent: abuse guard window %v: want more than 0", c.Window)
	case c.Cooldown <= 0:
		return fmt.Errorf("securityevent: abuse guard cooldown %v: want more than 0", c.Cooldown)
	case c.MaxTracked < 1:
		return fmt.Errorf("securityevent: abuse guard max tracked %d: want at least 1",
			c.MaxTracked)
	}

	return nil
}

// RegisterFlags adds -abuse-max-failures, -abuse-window, -abuse-cooldown and
// -abuse-max-tracked to fs, with the current values of c as defaults.
func (c *GuardConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&c.MaxFailures, "abuse-max-failures", c.MaxFailures,
		"failed authentications a client may have within -abuse-window before it is blocked")
	fs.DurationVar(&c.Window, "abuse-window", c.Window,
		"period over which failed authentications are counted")
	fs.DurationVar(&c.Cooldown, "abuse-cooldown", c.Cooldown,
		"how long a blocked client is refused")
	fs.IntVar(&c.MaxTracked, "abuse-max-tracked", c.MaxTracked,
		"most clients the abuse guard remembers at once")
}

// ErrNilEmitter is returned by NewAbuseGuard when the emitter is nil.
var ErrNilEmitter = errors.New("securityevent: abuse guard needs an emitter")

// AbuseGuard refuses clients that fail authentication too often: a client
// with more than MaxFailures failures within Window is refused for Cooldown.
// Block start and end are security events. It is safe for concurrent use.
//
// Clients are keyed by IP address; IPv6 addresses are grouped by their /64
// prefix, which one user typically holds whole.
//
// Limitation: the end of a block is noticed when the client comes back or
// when Sweep runs (Run calls it periodically), so the end event can come
// later than the block's end; the entry carries the exact blocked_until.
//
// Limitation: when MaxTracked clients are all blocked, a further failing
// client is not tracked until a block ends; its failures are counted in the
// logs and metrics but do not block it.
type AbuseGuard struct {
	cfg      GuardConfig
	events   *Emitter
	now      func() time.Time
	clientIP func(*http.Request) string
	v6Bits   int

	// nBlocked mirrors blocked.Len(), written under mu, so the middleware
	// skips the client's address and the lock while nobody is blocked.
	nBlocked atomic.Int64

	// mu guards the fields below it.
	mu      sync.Mutex
	clients map[string]*client
	// watching holds unblocked clients, most recent failure first.
	watching list.List
	// blocked holds blocked clients in order of block start, which is also
	// the order of block end since Cooldown is fixed.
	blocked list.List
}

// client is the guard's memory of one client key.
type client struct {
	key      string
	failures []time.Time // within the window, oldest first
	until    time.Time   // end of the block; zero when not blocked
	elem     *list.Element
}

// GuardOption configures an AbuseGuard.
type GuardOption func(*AbuseGuard)

// WithGuardClock sets the guard's clock; tests use it to step through
// windows and cooldowns.
func WithGuardClock(now func() time.Time) GuardOption {
	return func(g *AbuseGuard) {
		if now != nil {
			g.now = now
		}
	}
}

// WithGuardClientIP sets how Middleware finds the client address of a
// request. The default uses the TCP peer.
func WithGuardClientIP(fn func(*http.Request) string) GuardOption {
	return func(g *AbuseGuard) {
		if fn != nil {
			g.clientIP = fn
		}
	}
}

// NewAbuseGuard returns a guard with cfg that reports through events.
func NewAbuseGuard(cfg GuardConfig, events *Emitter, opts ...GuardOption) (*AbuseGuard, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if events == nil {
		return nil, ErrNilEmitter
	}

	g := &AbuseGuard{
		cfg:      cfg,
		events:   events,
		now:      time.Now,
		clientIP: remoteIP,
		v6Bits:   64,
		clients:  make(map[string]*client),
	}
	for _, opt := range opts {
		opt(g)
	}

	return g, nil
}

// RecordFailure counts a failed authentication from ip and reports whether
// ip is blocked now. The failure that exceeds the limit starts the block and
// emits abuse_block_started. Failures during a block do not extend it.
func (g *AbuseGuard) RecordFailure(ip string) bool {
	key := g.key(ip)
	now := g.now()

	g.mu.Lock()
	ended := g.expireLocked(key, now)
	c := g.clients[key]
	if c != nil && !c.until.IsZero() {
		g.mu.Unlock()
		g.report(ended)
		return true
	}
	if c == nil {
		c = g.trackLocked(key)
	}
	if c == nil {
		g.mu.Unlock()
		g.report(ended)
		return false
	}

	c.failures = append(dropBefore(c.failures, now.Add(-g.cfg.Window)), now)
	if len(c.failures) <= g.cfg.MaxFailures {
		g.watching.MoveToFront(c.elem)
		g.mu.Unlock()
		g.report(ended)
		return false
	}

	failures := len(c.failures)
	until := now.Add(g.cfg.Cooldown)
	g.watching.Remove(c.elem)
	c.failures = nil
	c.until = until
	c.elem = g.blocked.PushBack(c)
	g.nBlocked.Store(int64(g.blocked.Len()))
	g.mu.Unlock()

	g.report(ended)
	g.events.abuseBlocked.Inc()
	g.events.emit(context.Background(), zap.WarnLevel, EventAbuseBlockStarted,
		zap.String("client", key),
		zap.Int("failures", failures),
		zap.Duration("window", g.cfg.Window),
		zap.Time("blocked_until", until),
	)

	return true
}

// Blocked reports whether ip is refused now. A block that has run out ends
// here (or in Sweep), with abuse_block_ended.
func (g *AbuseGuard) Blocked(ip string) bool {
	_, blocked := g.blockedUntil(ip)

	return blocked
}

// Sweep ends every block that has run out and forgets clients whose
// failures have all left the window. Run calls it periodically.
func (g *AbuseGuard) Sweep() {
	now := g.now()
	var ended []*client

	g.mu.Lock()
	for e := g.blocked.Front(); e != nil; e = g.blocked.Front() {
		c := e.Value.(*client)
		if now.Before(c.until) {
			break
		}
		g.blocked.Remove(e)
		g.nBlocked.Store(int64(g.blocked.Len()))
		delete(g.clients, c.key)
		ended = append(ended, c)
	}
	cutoff := now.Add(-g.cfg.Window)
	for e := g.watching.Back(); e != nil; e = g.watching.Back() {
		c := e.Value.(*client)
		if c.failures[len(c.failures)-1].After(cutoff) {
			break
		}
		g.watching.Remove(e)
		delete(g.clients, c.key)
	}
	g.mu.Unlock()

	g.report(ended...)
}

// Run calls Sweep every interval of wall-clock time until ctx is done. The
// caller owns the goroutine it runs in.
func (g *AbuseGuard) Run(ctx context.Context, interval time.Duration) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()

	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			g.Sweep()
		}
	}
}

// Middleware refuses requests from blocked clients with 429, a Retry-After
// header and a JSON google.rpc.Status (RESOURCE_EXHAUSTED), before they reach
// authentication. Recording failures is up to the authentication layer,
// which calls RecordFailure.
func (g *AbuseGuard) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.nBlocked.Load() == 0 {
			next.ServeHTTP(w, r)
			return
		}

		until, blocked := g.blockedUntil(g.clientIP(r))
		if !blocked {
			next.ServeHTTP(w, r)
			return
		}

		g.events.abuseRefusals.Inc()
		httpcall.SetCode(r.Context(), codes.ResourceExhausted)

		wait := math.Ceil(until.Sub(g.now()).Seconds())
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(wait))))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte(refusedBody))
	})
}

// Tracked is how many clients the guard remembers, blocked or not.
func (g *AbuseGuard) Tracked() int {
	g.mu.Lock()
	defer g.mu.Unlock()

	return len(g.clients)
}

func (g *AbuseGuard) blockedUntil(ip string) (time.Time, bool) {
	key := g.key(ip)
	now := g.now()

	g.mu.Lock()
	ended := g.expireLocked(key, now)
	var until time.Time
	if c := g.clients[key]; c != nil {
		until = c.until
	}
	g.mu.Unlock()

	g.report(ended)

	return until, !until.IsZero()
}

// expireLocked ends the block of key if it has run out and returns the
// client whose block ended, or nil.
func (g *AbuseGuard) expireLocked(key string, now time.Time) *client {
	c := g.clients[key]
	if c == nil || c.until.IsZero() || now.Before(c.until) {
		return nil
	}

	g.blocked.Remove(c.elem)
	g.nBlocked.Store(int64(g.blocked.Len()))
	delete(g.clients, key)

	return c
}

// trackLocked starts tracking key, evicting the client with the oldest
// failure if the guard is full. It returns nil when every tracked client is
// blocked.
func (g *AbuseGuard) trackLocked(key string) *client {
	if len(g.clients) >= g.cfg.MaxTracked {
		oldest := g.watching.Back()
		if oldest == nil {
			return nil
		}
		g.watching.Remove(oldest)
		delete(g.clients, oldest.Value.(*client).key)
	}

	c := &client{key: key, failures: make([]time.Time, 0, g.cfg.MaxFailures+1)}
	c.elem = g.watching.PushFront(c)
	g.clients[key] = c

	return c
}

// report emits abuse_block_ended for each client given.
func (g *AbuseGuard) report(ended ...*client) {
	for _, c := range ended {
		if c == nil {
			continue
		}

		g.events.abuseBlocked.Dec()
		g.events.emit(context.Background(), zap.InfoLevel, EventAbuseBlockEnded,
			zap.String("client", c.key),
			zap.Time("blocked_until", c.until),
		)
	}
}

// key maps an address to the guard's client key: the IP itself, or the /64
// prefix of an IPv6 address. Strings that are not IP addresses are used as
// they are, cut to maxKey bytes.
func (g *AbuseGuard) key(ip string) string {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		if len(ip) > maxKey {
			return ip[:maxKey]
		}
		return ip
	}

	if addr.Is4() {
		// ParseAddr takes IPv4 only in its canonical dotted form.
		return ip
	}
	addr = addr.Unmap().WithZone("")
	if addr.Is4() {
		return addr.String()
	}

	prefix, _ := addr.Prefix(g.v6Bits)

	return prefix.String()
}

// dropBefore removes the times before cutoff from ts, which is sorted.
func dropBefore(ts []time.Time, cutoff time.Time) []time.Time {
	i := 0
	for i < len(ts) && !ts[i].After(cutoff) {
		i++
	}

	return append(ts[:0], ts[i:]...)
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}

	return host
}
