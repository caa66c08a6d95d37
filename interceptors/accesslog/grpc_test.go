package accesslog_test

import (
	"context"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/interceptors/accesslog"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport"
	"github.com/gatehouse-dev/gatehouse/requestid"
	"github.com/gatehouse-dev/gatehouse/tracing"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// panicHealth is a health service whose Check panics for the service name
// "panic". It exists because no real service can be made to panic on cue.
type panicHealth struct {
	*health.Server
}

func (h panicHealth) Check(
	ctx context.Context,
	req *healthpb.HealthCheckRequest,
) (*healthpb.HealthCheckResponse, error) {
	if req.GetService() == "panic" {
		panic("health check exploded")
	}

	return h.Server.Check(ctx, req)
}

// grpcFixture serves the grpc health service with the recommended service
// wiring and returns a client and the log sink.
func grpcFixture(t *testing.T) (healthpb.HealthClient, *testsupport.LogSink) {
	t.Helper()

	logger, sink := testsupport.NewJSONLogger(t)
	tr, err := tracing.New(tracing.Config{ServiceName: "test"})
	if err != nil {
		t.Fatalf("tracing: %v", err)
	}

	hs := health.NewServer()
	hs.SetServingStatus("svc", healthpb.HealthCheckResponse_SERVING)
	srv := grpc.NewServer(serviceOptions(t, logger.Named("svc"), tr, "svc-1")...)
	healthpb.RegisterHealthServer(srv, panicHealth{hs})
	addr := testsupport.ServeGRPC(t, srv)

	return healthpb.NewHealthClient(testsupport.DialGRPC(t, addr)), sink
}

// TestServerLineFields makes unary and streaming calls over a real
// connection and checks every field of the service's access line.
func TestServerLineFields(t *testing.T) {
	client, sink := grpcFixture(t)

	serving := &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}
	tests := []struct {
		name    string
		service string
		stream  bool
		want    map[string]any
		wantOut int
	}{
		{
			name: "unary ok", service: "svc",
			want: map[string]any{
				"level": "info", "grpc_method": "/grpc.health.v1.Health/Check",
				"grpc_code": "OK",
			},
			wantOut: proto.Size(serving) + 5,
		},
		{
			name: "unary error", service: "unknown",
			want: map[string]any{
				"level": "info", "grpc_method": "/grpc.health.v1.Health/Check",
				"grpc_code": "NotFound", "grpc_message": "unknown service",
			},
		},
		{
			name: "server stream cancelled by client", service: "svc", stream: true,
			want: map[string]any{
				"grpc_method": "/grpc.health.v1.Health/Watch", "grpc_code": "Canceled",
			},
			wantOut: proto.Size(serving) + 5,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := "grpc-" + strings.ReplaceAll(tt.name, " ", "-")
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			ctx = metadata.AppendToOutgoingContext(ctx, requestid.MetadataKey, id,
				"x-test-user", "alice", "x-test-caller", "orders")

			req := &healthpb.HealthCheckRequest{Service: tt.service}
			if tt.stream {
				stream, err := client.Watch(ctx, req)
				if err != nil {
					t.Fatalf("watch: %v", err)
				}
				if _, err := stream.Recv(); err != nil {
					t.Fatalf("watch recv: %v", err)
				}
				cancel()
			} else {
				_, err := client.Check(ctx, req)
				if tt.want["grpc_code"] == "OK" && err != nil {
					t.Fatalf("check: %v", err)
				}
			}

			line := sink.WaitFor(t, testTimeout, "access line "+id,
				func(e map[string]any) bool { return e["request_id"] == id })

			want := map[string]any{
				"logger": "svc.access", "msg": "grpc request", "latency_ms": 7.0,
				"bytes_in": float64(proto.Size(req) + 5), "bytes_out": float64(tt.wantOut),
				"caller": "orders", "instance": "svc-1",
			}
			if !tt.stream {
				// Stream interceptors here run no authentication, so only
				// unary calls have a principal.
				want["principal"] = "alice"
			}
			for k, v := range tt.want {
				want[k] = v
			}
			for k, v := range want {
				if line[k] != v {
					t.Errorf("%s = %#v, want %#v", k, line[k], v)
				}
			}
			if p, _ := line["peer"].(string); !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("peer = %q, want 127.0.0.1:port", p)
			}
			if tid, _ := line["trace_id"].(string); len(tid) != 32 {
				t.Errorf("trace_id = %q, want 32 hex digits", tid)
			}
		})
	}
}

// TestServerGeneratesRequestID checks that a call without a usable
// x-request-id gets a fresh one in its line.
func TestServerGeneratesRequestID(t *testing.T) {
	client, sink := grpcFixture(t)

	tests := []struct {
		name string
		sent string
	}{
		{"absent", ""},
		{"malformed", "not valid!"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()

			marker := "gen-" + tt.name
			ctx = metadata.AppendToOutgoingContext(ctx, "x-test-caller", marker)
			if tt.sent != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, requestid.MetadataKey, tt.sent)
			}
			if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
				t.Fatalf("check: %v", err)
			}

			line := sink.WaitFor(t, testTimeout, "access line of "+marker,
				func(e map[string]any) bool { return e["caller"] == marker })
			id, _ := line["request_id"].(string)
			if !requestid.Valid(id) || id == tt.sent {
				t.Errorf("request_id = %q, want a fresh valid id", id)
			}
		})
	}
}

// TestServerPanic checks that a panic in a handler becomes Internal with a
// safe message, is logged with its stack, and leaves the server serving.
func TestServerPanic(t *testing.T) {
	client, sink := grpcFixture(t)

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	id := "panic-call"
	callCtx := metadata.AppendToOutgoingContext(ctx, requestid.MetadataKey, id)
	_, err := client.Check(callCtx, &healthpb.HealthCheckRequest{Service: "panic"})
	if st := status.Convert(err); st.Code() != codes.Internal || st.Message() != "internal error" {
		t.Fatalf("panicking call = %v, want Internal with message %q", err, "internal error")
	}

	p := sink.WaitFor(t, testTimeout, "panic entry",
		func(e map[string]any) bool { return e["msg"] == "panic in handler" })
	if p["request_id"] != id || p["grpc_method"] != "/grpc.health.v1.Health/Check" ||
		p["panic"] != "health check exploded" {
		t.Errorf("panic entry = %v", p)
	}
	if st, _ := p["stack"].(string); !strings.Contains(st, "panicHealth.Check") {
		t.Errorf("stack does not show the handler:\n%s", st)
	}

	line := sink.WaitFor(t, testTimeout, "access line",
		func(e map[string]any) bool { return e["msg"] == "grpc request" })
	if line["grpc_code"] != "Internal" || line["panic"] != true || line["level"] != "warn" {
		t.Errorf("access line = %v, want Internal, panic=true, level warn", line)
	}

	if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("call after the panic: %v", err)
	}
}

// TestSkip checks that skipped methods get no line and others still do.
func TestSkip(t *testing.T) {
	logger, sink := testsupport.NewJSONLogger(t)
	access, err := accesslog.NewServer(logger, accesslog.WithSkip(func(m string) bool {
		return m == "/grpc.health.v1.Health/Check"
	}))
	if err != nil {
		t.Fatalf("access log: %v", err)
	}

	hs := health.NewServer()
	hs.SetServingStatus("svc", healthpb.HealthCheckResponse_SERVING)
	srv := grpc.NewServer(grpc.StatsHandler(access))
	healthpb.RegisterHealthServer(srv, hs)
	client := healthpb.NewHealthClient(testsupport.DialGRPC(t, testsupport.ServeGRPC(t, srv)))

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("check: %v", err)
	}
	if _, err := client.List(ctx, &healthpb.HealthListRequest{}); err != nil {
		t.Fatalf("list: %v", err)
	}

	sink.WaitFor(t, testTimeout, "line for List", func(e map[string]any) bool {
		return e["grpc_method"] == "/grpc.health.v1.Health/List"
	})
	for _, e := range sink.Entries(t) {
		if e["grpc_method"] == "/grpc.health.v1.Health/Check" {
			t.Errorf("skipped method was logged: %v", e)
		}
	}
}

func TestConstructorsRefuseNilLogger(t *testing.T) {
	if _, err := accesslog.NewServer(nil); err == nil {
		t.Errorf("NewServer(nil) succeeded")
	}
	if _, err := accesslog.NewHTTP(nil); err == nil {
		t.Errorf("NewHTTP(nil) succeeded")
	}
}
