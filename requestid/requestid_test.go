package requestid_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/testsupport"
	"github.com/gatehouse-dev/gatehouse/requestid"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
)

// testTimeout bounds each call to the in-process server.
const testTimeout = 10 * time.Second

func TestValid(t *testing.T) {
	tests := []struct {
		name string
		id   string
		want bool
	}{
		{"simple", "abc-123", true},
		{"all allowed characters", "AZaz09._-", true},
		{"max length", strings.Repeat("a", requestid.MaxLen), true},
		{"empty", "", false},
		{"too long", strings.Repeat("a", requestid.MaxLen+1), false},
		{"space", "abc 123", false},
		{"newline", "abc\n123", false},
		{"json breaker", `abc"}`, false},
		{"non ascii", "abcé", false},
		{"slash", "a/b", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := requestid.Valid(tt.id); got != tt.want {
				t.Errorf("Valid(%q) = %v, want %v", tt.id, got, tt.want)
			}
		})
	}
}

func TestNewIsValidAndUnique(t *testing.T) {
	a, b := requestid.New(), requestid.New()
	if !requestid.Valid(a) || !requestid.Valid(b) {
		t.Fatalf("New() gave invalid ids %q, %q", a, b)
	}
	if a == b {
		t.Errorf("New() gave %q twice", a)
	}
}

// TestMiddleware sends requests over a real HTTP server and checks which id
// the handler sees and the client gets back.
func TestMiddleware(t *testing.T) {
	var (
		mu   sync.Mutex
		seen string
	)
	srv := httptest.NewServer(requestid.Middleware(http.HandlerFunc(
		func(_ http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen = requestid.FromContext(r.Context())
			mu.Unlock()
		})))
	t.Cleanup(srv.Close)

	tests := []struct {
		name   string
		header string
		keep   bool
	}{
		{"well formed is kept", "client-id.42_x", true},
		{"absent is generated", "", false},
		{"too long is replaced", strings.Repeat("x", 65), false},
		{"bad characters are replaced", "id;drop table", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
			if err != nil {
				t.Fatalf("new request: %v", err)
			}
			if tt.header != "" {
				req.Header.Set(requestid.Header, tt.header)
			}

			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatalf("get: %v", err)
			}
			_ = resp.Body.Close()

			got := resp.Header.Get(requestid.Header)
			mu.Lock()
			handlerSaw := seen
			mu.Unlock()

			if got != handlerSaw {
				t.Errorf("response id %q, handler saw %q", got, handlerSaw)
			}
			if !requestid.Valid(got) {
				t.Errorf("response id %q is not valid", got)
			}
			if (got == tt.header) != tt.keep {
				t.Errorf("response id %q, sent %q, want kept=%v", got, tt.header, tt.keep)
			}
		})
	}
}

func TestGatewayMetadata(t *testing.T) {
	tests := []struct {
		name string
		ctx  context.Context
		want []string
	}{
		{"with id", requestid.NewContext(context.Background(), "abc"), []string{"abc"}},
		{"without id", context.Background(), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			md := requestid.GatewayMetadata(tt.ctx, nil)
			got := md.Get(requestid.MetadataKey)
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("x-request-id = %q, want %q", got, tt.want)
			}
		})
	}
}

// mdHealth is a health server that remembers the x-request-id values of the
// last call it got.
type mdHealth struct {
	healthpb.UnimplementedHealthServer
	mu  sync.Mutex
	ids []string
}

func (h *mdHealth) Check(
	ctx context.Context,
	_ *healthpb.HealthCheckRequest,
) (*healthpb.HealthCheckResponse, error) {
	h.mu.Lock()
	h.ids = metadata.ValueFromIncomingContext(ctx, requestid.MetadataKey)
	h.mu.Unlock()

	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func (h *mdHealth) Watch(
	_ *healthpb.HealthCheckRequest,
	ss grpc.ServerStreamingServer[healthpb.HealthCheckResponse],
) error {
	h.mu.Lock()
	h.ids = metadata.ValueFromIncomingContext(ss.Context(), requestid.MetadataKey)
	h.mu.Unlock()

	return ss.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING})
}

func (h *mdHealth) last() []string {
	h.mu.Lock()
	defer h.mu.Unlock()

	return h.ids
}

// TestClientInterceptors calls a real gRPC server through the interceptors
// and checks the metadata it receives.
func TestClientInterceptors(t *testing.T) {
	health := &mdHealth{}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health)
	addr := testsupport.ServeGRPC(t, srv)
	conn := testsupport.DialGRPC(t, addr,
		grpc.WithChainUnaryInterceptor(requestid.UnaryClientInterceptor()),
		grpc.WithChainStreamInterceptor(requestid.StreamClientInterceptor()),
	)
	client := healthpb.NewHealthClient(conn)

	tests := []struct {
		name   string
		ctx    context.Context
		stream bool
		want   string
	}{
		{"unary carries id", requestid.NewContext(context.Background(), "id-1"), false, "id-1"},
		{"stream carries id", requestid.NewContext(context.Background(), "id-2"), true, "id-2"},
		{
			"client value is replaced",
			metadata.AppendToOutgoingContext(
				requestid.NewContext(context.Background(), "id-3"),
				requestid.MetadataKey, "spoofed", "other", "kept"),
			false, "id-3",
		},
		{"no id adds nothing", context.Background(), false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(tt.ctx, testTimeout)
			defer cancel()

			if tt.stream {
				stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{})
				if err != nil {
					t.Fatalf("watch: %v", err)
				}
				if _, err := stream.Recv(); err != nil {
					t.Fatalf("watch recv: %v", err)
				}
			} else if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
				t.Fatalf("check: %v", err)
			}

			got := strings.Join(health.last(), ",")
			if got != tt.want {
				t.Errorf("server got x-request-id %q, want %q", got, tt.want)
			}
		})
	}
}
