package httplimit_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/clientip"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport"
	"github.com/gatehouse-dev/gatehouse/ratelimit"
	"github.com/gatehouse-dev/gatehouse/ratelimit/httplimit"
	"github.com/redis/go-redis/v9"
)

// slow refills one token per 1000s, so nothing comes back during a test.
func slow(burst int) ratelimit.Rule { return ratelimit.Rule{Rate: 0.001, Burst: burst} }

// principalHeader stands in for the authentication middleware: the test
// client names its principal (and class) in headers that a real gateway
// would get from a verified token.
func principalHeader(r *http.Request) (string, string, bool) {
	p := r.Header.Get("X-Test-Principal")
	return p, r.Header.Get("X-Test-Class"), p != ""
}

// edge builds the two stages the gateway places, on one shared Local
// limiter, around a handler that answers 200 "ok".
type edge struct {
	ip        *httplimit.Stage
	principal *httplimit.Stage
	srv       *httptest.Server
}

func newEdge(t *testing.T, trusted []string, ipPolicy, principalPolicy ratelimit.Policy) *edge {
	t.Helper()

	limiter, err := ratelimit.NewLocal()
	if err != nil {
		t.Fatalf("NewLocal: %v", err)
	}

	return newEdgeWith(t, limiter, trusted, ipPolicy, principalPolicy)
}

func newEdgeWith(
	t *testing.T,
	limiter ratelimit.Limiter,
	trusted []string,
	ipPolicy, principalPolicy ratelimit.Policy,
) *edge {
	t.Helper()

	ips, err := clientip.New(trusted)
	if err != nil {
		t.Fatalf("clientip.New: %v", err)
	}

	e := &edge{}
	e.ip, err = httplimit.NewIPStage(limiter, ipPolicy, ips)
	if err != nil {
		t.Fatalf("NewIPStage: %v", err)
	}

	e.principal, err = httplimit.NewPrincipalStage(limiter, principalPolicy, principalHeader)
	if err != nil {
		t.Fatalf("NewPrincipalStage: %v", err)
	}

	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	})
	// Order, first = outermost: per-IP, (authentication), per-principal.
	e.srv = httptest.NewServer(e.ip.Wrap(e.principal.Wrap(ok)))
	t.Cleanup(e.srv.Close)

	return e
}

type call struct {
	method    string
	path      string
	xff       string
	principal string
	class     string
}

// reply is a response with its body read and closed.
type reply struct {
	code   int
	header http.Header
	body   []byte
}

// do sends c to the edge on 127.0.0.1.
func (e *edge) do(t *testing.T, c call) reply {
	t.Helper()

	if c.method == "" {
		c.method = http.MethodGet
	}

	if c.path == "" {
		c.path = "/v1/products"
	}

	req, err := http.NewRequestWithContext(t.Context(), c.method, e.srv.URL+c.path, nil)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}

	if c.xff != "" {
		req.Header.Set("X-Forwarded-For", c.xff)
	}

	if c.principal != "" {
		req.Header.Set("X-Test-Principal", c.principal)
		req.Header.Set("X-Test-Class", c.class)
	}

	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", c.method, c.path, err)
	}
	defer func() { _ = resp.Body.Close() }()

	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}

	return reply{code: resp.StatusCode, header: resp.Header, body: body}
}

// codes sends every call and returns the status codes.
func (e *edge) codes(t *testing.T, calls ...call) []int {
	t.Helper()

	var got []int
	for _, c := range calls {
		got = append(got, e.do(t, c).code)
	}

	return got
}

func repeat(c call, n int) []call {
	out := make([]call, n)
	for i := range out {
		out[i] = c
	}

	return out
}

func codesOf(ok, refused int) []int {
	var out []int
	for range ok {
		out = append(out, http.StatusOK)
	}

	for range refused {
		out = append(out, http.StatusTooManyRequests)
	}

	return out
}

var lenient = ratelimit.Policy{Default: slow(100)}

func TestSpoofedForwardedForFromUntrustedPeer(t *testing.T) {
	// The test client (127.0.0.1) is not a trusted proxy.
	e := newEdge(t, []string{"192.0.2.0/24"}, ratelimit.Policy{Default: slow(3)}, lenient)

	var calls []call
	for i := range 5 {
		calls = append(calls, call{xff: "198.51.100." + strconv.Itoa(i)})
	}

	if got, want := e.codes(t, calls...), codesOf(3, 2); !slices.Equal(got, want) {
		t.Errorf("codes = %v, want %v: a new X-Forwarded-For each time must change nothing",
			got, want)
	}
}

func TestTrustedProxyChain(t *testing.T) {
	// The test client plays the load balancer (127.0.0.1), behind a CDN
	// in 192.0.2.0/24; the left-most entry is what the client wrote.
	e := newEdge(t, []string{"127.0.0.1", "192.0.2.0/24"},
		ratelimit.Policy{Default: slow(2)}, lenient)

	tests := []struct {
		name  string
		calls []call
		want  []int
	}{
		{
			name: "client behind the chain, spoofing a new left part each time",
			calls: []call{
				{xff: "6.6.6.1, 198.51.100.7, 192.0.2.10"},
				{xff: "6.6.6.2, 198.51.100.7, 192.0.2.11"},
				{xff: "6.6.6.3, 198.51.100.7, 192.0.2.10"},
			},
			want: codesOf(2, 1),
		},
		{
			name:  "another client through the same proxies",
			calls: repeat(call{xff: "198.51.100.8, 192.0.2.10"}, 3),
			want:  codesOf(2, 1),
		},
		{
			name:  "the proxy's own requests",
			calls: repeat(call{}, 3),
			want:  codesOf(2, 1),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := e.codes(t, tt.calls...); !slices.Equal(got, tt.want) {
				t.Errorf("codes = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestTwoPrincipalsOnOneIP(t *testing.T) {
	e := newEdge(t, nil, lenient, ratelimit.Policy{Default: slow(2)})

	got := e.codes(t,
		call{principal: "alice"}, call{principal: "alice"}, call{principal: "alice"},
		call{principal: "bob"}, call{principal: "bob"}, call{principal: "bob"},
	)
	if want := []int{200, 200, 429, 200, 200, 429}; !slices.Equal(got, want) {
		t.Errorf("codes = %v, want %v: each principal has its own bucket", got, want)
	}
}

func TestOnePrincipalOnManyIPs(t *testing.T) {
	e := newEdge(t, []string{"127.0.0.1"}, ratelimit.Policy{Default: slow(2)},
		ratelimit.Policy{Default: slow(3)})

	var calls []call
	for i := range 6 {
		calls = append(calls, call{principal: "alice", xff: "198.51.100." + strconv.Itoa(i)})
	}

	if got, want := e.codes(t, calls...), codesOf(3, 3); !slices.Equal(got, want) {
		t.Errorf("codes = %v, want %v: six addresses, one quota", got, want)
	}

	if got := e.ip.Stats(); got.Refused != 0 || got.Allowed != 6 {
		t.Errorf("IP stage stats %+v: each address was within its own limit", got)
	}
}

func TestPerRouteOverride(t *testing.T) {
	e := newEdge(t, nil, lenient, ratelimit.Policy{
		Default: slow(3),
		Routes:  map[string]ratelimit.Rule{"POST /v1/orders": slow(1)},
		Classes: map[string]ratelimit.ClassPolicy{
			"gold": {Routes: map[string]ratelimit.Rule{"POST /v1/orders": slow(2)}},
		},
	})

	orders := call{method: http.MethodPost, path: "/v1/orders", principal: "alice"}
	products := call{path: "/v1/products/p-1", principal: "alice"}
	goldOrders := call{method: http.MethodPost, path: "/v1/orders", principal: "carol",
		class: "gold"}

	tests := []struct {
		name  string
		calls []call
		want  []int
	}{
		{name: "the overridden route", calls: repeat(orders, 2), want: codesOf(1, 1)},
		{name: "other routes keep the default", calls: repeat(products, 4),
			want: codesOf(3, 1)},
		{name: "the class's own rule for the route", calls: repeat(goldOrders, 3),
			want: codesOf(2, 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := e.codes(t, tt.calls...); !slices.Equal(got, tt.want) {
				t.Errorf("codes = %v, want %v", got, tt.want)
			}
		})
	}
}

// statusBody is the JSON error body the gateway uses.
type statusBody struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Details []struct {
		Type       string `json:"@type"`
		RetryDelay string `json:"retryDelay"`
	} `json:"details"`
}

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()

	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()

	c.now = c.now.Add(d)
}

func TestResponsesClientsCanActOn(t *testing.T) {
	clock := &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	limiter, err := ratelimit.NewLocal(ratelimit.WithClock(clock.Now))
	if err != nil {
		t.Fatalf("NewLocal: %v", err)
	}

	// A bucket of 2 refilling one token per 2s.
	e := newEdgeWith(t, limiter, nil,
		ratelimit.Policy{Default: ratelimit.Rule{Rate: 0.5, Burst: 2}}, lenient)

	tests := []struct {
		name          string
		advance       time.Duration
		wantCode      int
		wantRemaining string
		wantReset     string
		wantRetry     string
		wantDelay     string
	}{
		{name: "first", wantCode: 200, wantRemaining: "1", wantReset: "2"},
		{name: "second", wantCode: 200, wantRemaining: "0", wantReset: "4"},
		{name: "refused at once", wantCode: 429, wantRemaining: "0", wantReset: "4",
			wantRetry: "2", wantDelay: "2s"},
		{name: "refused half a second later", advance: 500 * time.Millisecond, wantCode: 429,
			wantRemaining: "0", wantReset: "4", wantRetry: "2", wantDelay: "1.500s"},
		{name: "allowed once a token is back", advance: 1500 * time.Millisecond,
			wantCode: 200, wantRemaining: "0", wantReset: "4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock.Advance(tt.advance)
			resp := e.do(t, call{})
			if resp.code != tt.wantCode {
				t.Fatalf("status %d, want %d", resp.code, tt.wantCode)
			}

			h := resp.header
			got := []string{h.Get("RateLimit-Limit"), h.Get("RateLimit-Remaining"),
				h.Get("RateLimit-Reset"), h.Get("Retry-After")}
			want := []string{"2", tt.wantRemaining, tt.wantReset, tt.wantRetry}
			if !slices.Equal(got, want) {
				t.Errorf("RateLimit-Limit, -Remaining, -Reset, Retry-After = %q, want %q",
					got, want)
			}

			if tt.wantCode == http.StatusTooManyRequests {
				checkRefusalBody(t, resp, tt.wantDelay)
			}
		})
	}
}

func checkRefusalBody(t *testing.T, resp reply, wantDelay string) {
	t.Helper()

	body := resp.body
	if ct := resp.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}

	var st statusBody
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}

	if st.Code != 8 || st.Message != "rate limit exceeded" || len(st.Details) != 1 {
		t.Fatalf("body %s: want code 8, the message and one detail", body)
	}

	d := st.Details[0]
	if d.Type != "type.googleapis.com/google.rpc.RetryInfo" || d.RetryDelay != wantDelay {
		t.Errorf("detail %+v, want a RetryInfo with retryDelay %q", d, wantDelay)
	}
}

func TestDryRunAddsNothing(t *testing.T) {
	e := newEdge(t, nil, ratelimit.Policy{Default: slow(1), DryRun: true}, lenient)

	for i := range 3 {
		resp := e.do(t, call{})
		if resp.code != 200 || resp.header.Get("RateLimit-Limit") != "" {
			t.Fatalf("request %d: status %d, RateLimit-Limit %q; want 200 and no header", i,
				resp.code, resp.header.Get("RateLimit-Limit"))
		}
	}

	if got, want := e.ip.Stats(), (ratelimit.Stats{Allowed: 1, WouldRefuse: 2}); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}

func TestAnonymousRequestsSkipThePrincipalStage(t *testing.T) {
	e := newEdge(t, nil, lenient, ratelimit.Policy{Default: slow(1)})

	if got, want := e.codes(t, repeat(call{}, 3)...), codesOf(3, 0); !slices.Equal(got, want) {
		t.Errorf("codes = %v, want %v", got, want)
	}

	if got := e.principal.Stats(); got != (ratelimit.Stats{}) {
		t.Errorf("principal stage counted anonymous requests: %+v", got)
	}
}

func TestMostRestrictiveHeadersWin(t *testing.T) {
	// Per-IP has 5, per-principal 2: the principal's numbers are shown
	// while they are the tighter ones.
	e := newEdge(t, nil, ratelimit.Policy{Default: slow(5)}, ratelimit.Policy{Default: slow(2)})

	resp := e.do(t, call{principal: "alice"})
	if got := resp.header.Get("RateLimit-Remaining"); got != "1" {
		t.Errorf("RateLimit-Remaining %q, want the principal's 1", got)
	}

	resp = e.do(t, call{})
	if got := resp.header.Get("RateLimit-Remaining"); got != "3" {
		t.Errorf("RateLimit-Remaining %q for an anonymous call, want the IP's 3", got)
	}
}

// TestIPv6ClientsAreKeyedByPrefix drives the handler directly: the source
// addresses cannot be produced on 127.0.0.1.
func TestIPv6ClientsAreKeyedByPrefix(t *testing.T) {
	limiter, err := ratelimit.NewLocal()
	if err != nil {
		t.Fatalf("NewLocal: %v", err)
	}

	ips, err := clientip.New(nil)
	if err != nil {
		t.Fatalf("clientip.New: %v", err)
	}

	stage, err := httplimit.NewIPStage(limiter, ratelimit.Policy{Default: slow(1)}, ips)
	if err != nil {
		t.Fatalf("NewIPStage: %v", err)
	}

	h := stage.Wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))

	tests := []struct {
		name string
		peer string
		want int
	}{
		{name: "first address of a /64", peer: "[2001:db8:1:2::1]:5000", want: 200},
		{name: "another address in the same /64", peer: "[2001:db8:1:2::99]:5000", want: 429},
		{name: "the next /64", peer: "[2001:db8:1:3::1]:5000", want: 200},
		{name: "IPv4", peer: "198.51.100.7:5000", want: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1/", nil)
			req.RemoteAddr = tt.peer
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)

			if rec.Code != tt.want {
				t.Errorf("status %d, want %d", rec.Code, tt.want)
			}
		})
	}
}

func TestNewStagesValidate(t *testing.T) {
	limiter, err := ratelimit.NewLocal()
	if err != nil {
		t.Fatalf("NewLocal: %v", err)
	}

	ips, err := clientip.New(nil)
	if err != nil {
		t.Fatalf("clientip.New: %v", err)
	}

	good := ratelimit.Policy{Default: slow(1)}
	tests := []struct {
		name  string
		build func() error
		want  error
	}{
		{name: "nil resolver", want: ratelimit.ErrInvalidOption, build: func() error {
			_, err := httplimit.NewIPStage(limiter, good, nil)
			return err
		}},
		{name: "IPv6 prefix out of range", want: ratelimit.ErrInvalidOption, build: func() error {
			_, err := httplimit.NewIPStage(limiter, good, ips, httplimit.WithIPv6Prefix(0))
			return err
		}},
		{name: "nil principal function", want: ratelimit.ErrInvalidOption, build: func() error {
			_, err := httplimit.NewPrincipalStage(limiter, good, nil)
			return err
		}},
		{name: "invalid policy", want: ratelimit.ErrInvalidPolicy, build: func() error {
			_, err := httplimit.NewPrincipalStage(limiter, ratelimit.Policy{}, principalHeader)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.build(); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestWriteRefusedRoundsUp(t *testing.T) {
	rec := httptest.NewRecorder()
	httplimit.WriteRefused(rec, 1500*time.Microsecond)

	if got := rec.Header().Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After %q, want at least 1", got)
	}

	if !strings.Contains(rec.Body.String(), `"0.002s"`) {
		t.Errorf("body %s, want retryDelay rounded up to 0.002s", rec.Body)
	}
}

// TestMethodRulesApplyThroughResolver checks that a policy written in RPC
// names limits the HTTP routes those RPCs are served on.
func TestMethodRulesApplyThroughResolver(t *testing.T) {
	limiter, err := ratelimit.NewLocal()
	if err != nil {
		t.Fatalf("NewLocal: %v", err)
	}

	resolve := func(r *http.Request) (string, bool) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/orders" {
			return "/gatehouse.orders.v1.OrderService/CreateOrder", true
		}

		return "", false
	}
	p := ratelimit.Policy{
		Default: slow(3),
		Methods: map[string]ratelimit.Rule{
			"/gatehouse.orders.v1.OrderService/CreateOrder": slow(1),
		},
	}
	stage, err := httplimit.NewPrincipalStage(limiter, p, principalHeader,
		httplimit.WithMethodResolver(resolve))
	if err != nil {
		t.Fatalf("NewPrincipalStage: %v", err)
	}

	srv := httptest.NewServer(stage.Wrap(http.HandlerFunc(func(http.ResponseWriter,
		*http.Request) {
	})))
	t.Cleanup(srv.Close)
	e := &edge{principal: stage, srv: srv}

	create := call{method: http.MethodPost, path: "/v1/orders", principal: "alice"}
	list := call{path: "/v1/orders", principal: "alice"}
	got := e.codes(t, create, create, list, list, list, list)
	if want := []int{200, 429, 200, 200, 200, 429}; !slices.Equal(got, want) {
		t.Errorf("codes = %v, want %v", got, want)
	}
}

// TestLimiterFailureAnswers503 uses a real Redis limiter and a request
// whose context has ended, the one way a valid rule fails to be decided.
func TestLimiterFailureAnswers503(t *testing.T) {
	srv := testsupport.StartRedis(t)
	client := redis.NewClient(ratelimit.RedisClientOptions(srv.Addr(), time.Second))
	t.Cleanup(func() { _ = client.Close() })

	limiter, err := ratelimit.NewRedis(client)
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}

	stage, err := httplimit.NewPrincipalStage(limiter, ratelimit.Policy{Default: slow(5)},
		principalHeader)
	if err != nil {
		t.Fatalf("NewPrincipalStage: %v", err)
	}

	reached := false
	h := stage.Wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true }))

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1/v1/products", nil)
	req.Header.Set("X-Test-Principal", "alice")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)

	var st statusBody
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatalf("body %s: %v", rec.Body, err)
	}

	if rec.Code != http.StatusServiceUnavailable || st.Code != 14 || reached {
		t.Errorf("status %d, body %s, handler reached %v; want 503, code 14, not reached",
			rec.Code, rec.Body, reached)
	}

	if got := stage.Stats().Errors; got != 1 {
		t.Errorf("Stats().Errors = %d, want 1", got)
	}
}

func TestRefusalHook(t *testing.T) {
	limiter, err := ratelimit.NewLocal()
	if err != nil {
		t.Fatal(err)
	}
	ips, err := clientip.New(nil)
	if err != nil {
		t.Fatal(err)
	}

	type refusal struct{ stage, key string }
	var got []refusal
	stage, err := httplimit.NewIPStage(limiter,
		ratelimit.Policy{Default: ratelimit.Rule{Rate: 1, Burst: 2}}, ips,
		httplimit.WithRefusalHook(func(_ *http.Request, stage, key string) {
			got = append(got, refusal{stage, key})
		}))
	if err != nil {
		t.Fatal(err)
	}

	h := stage.Wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	codes := map[int]int{}
	for range 5 {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodGet, "/v1/products", nil)
		r.RemoteAddr = "192.0.2.7:4000"
		h.ServeHTTP(w, r)
		codes[w.Code]++
	}

	if codes[http.StatusTooManyRequests] != 3 || len(got) != 3 {
		t.Fatalf("statuses %v and %d hook calls, want 3 refusals reported", codes, len(got))
	}
	if got[0] != (refusal{"ip", "192.0.2.7"}) {
		t.Fatalf("hook got %+v, want stage ip and key 192.0.2.7", got[0])
	}
}
