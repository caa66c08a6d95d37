package gateway_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"

	"github.com/gatehouse-dev/gatehouse/gateway"
	"github.com/gatehouse-dev/gatehouse/gen/openapi"
)

// TestDrainFailsReadiness checks that /readyz answers 503 once the gateway
// drains, while its backends are still serving.
func TestDrainFailsReadiness(t *testing.T) {
	backend := serveGRPC(t, &callProbe{}, func(*grpc.Server) {}) // health only
	gw, err := gateway.New(gateway.Config{
		Catalog: dial(t, backend),
		Orders:  dial(t, backend),
		OpenAPI: openapi.Document,
	})
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}

	readyz := func() (int, string) {
		rec := httptest.NewRecorder()
		gw.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))

		return rec.Code, rec.Body.String()
	}

	if code, body := readyz(); code != http.StatusOK {
		t.Fatalf("/readyz before Drain = %d %s, want 200", code, body)
	}

	gw.Drain()

	if code, body := readyz(); code != http.StatusServiceUnavailable ||
		!strings.Contains(body, "draining") {
		t.Errorf("/readyz after Drain = %d %s, want 503 draining", code, body)
	}
}

// drainProbe is a gateway.Drainer that closes a channel when told.
type drainProbe struct{ drained chan struct{} }

func (d drainProbe) Drain() { close(d.drained) }

// TestServeShutsDownInOrder stops a server with a request in flight: it is
// told to drain first, keeps answering (with keep-alives off) during the
// delay, and then lets the in-flight request finish or cuts it at the
// drain timeout.
func TestServeShutsDownInOrder(t *testing.T) {
	tests := []struct {
		name         string
		finishes     bool // whether the in-flight request ends within the drain
		drainTimeout time.Duration
		wantLog      string
	}{
		{name: "in-flight request finishes", finishes: true, drainTimeout: 10 * time.Second,
			wantLog: "drained"},
		{name: "request outlives the drain", drainTimeout: 300 * time.Millisecond,
			wantLog: "drain timed out; closing remaining connections"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			release := make(chan struct{})
			started := make(chan struct{}, 1)
			handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/slow" {
					started <- struct{}{}
					select {
					case <-release:
					case <-r.Context().Done():
						return
					}
				}

				_, _ = io.WriteString(w, "ok")
			})

			core, logs := observer.New(zapcore.DebugLevel)
			srv, err := gateway.NewHTTPServer(handler, gateway.ServerConfig{})
			if err != nil {
				t.Fatal(err)
			}

			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}

			url := "http://" + lis.Addr().String()
			probe := drainProbe{drained: make(chan struct{})}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()

			served := make(chan error, 1)
			go func() {
				served <- gateway.Serve(ctx, srv, lis, gateway.ShutdownConfig{
					Ready: probe, Delay: 2 * time.Second, DrainTimeout: tt.drainTimeout,
					Logger: zap.New(core),
				})
			}()

			slow := make(chan error, 1)
			go func() {
				resp, err := http.Get(url + "/slow")
				if err == nil {
					_, err = io.ReadAll(resp.Body)
					_ = resp.Body.Close()
				}
				slow <- err
			}()
			<-started

			cancel()
			<-probe.drained

			// During the delay new requests are still answered, each on a
			// connection the server then closes.
			resp, err := http.Get(url + "/fast")
			if err != nil {
				t.Fatalf("request during the delay: %v", err)
			}
			_ = resp.Body.Close()

			if resp.StatusCode != http.StatusOK || !resp.Close {
				t.Errorf("during the delay: status %d, close %v; want 200 and Connection: close",
					resp.StatusCode, resp.Close)
			}

			if tt.finishes {
				close(release)
			}

			err = <-slow
			if tt.finishes && err != nil {
				t.Errorf("in-flight request: %v, want it to finish", err)
			}

			if !tt.finishes && err == nil {
				t.Errorf("in-flight request finished, want it cut at the drain timeout")
			}

			if err := <-served; err != nil {
				t.Errorf("Serve: %v", err)
			}

			if logs.FilterMessage(tt.wantLog).Len() != 1 {
				t.Errorf("no log %q; got %v", tt.wantLog, logs.All())
			}

			if !tt.finishes {
				close(release)
			}
		})
	}
}

func TestServeRejectsNegativeDurations(t *testing.T) {
	tests := []struct {
		name string
		cfg  gateway.ShutdownConfig
	}{
		{name: "negative delay", cfg: gateway.ShutdownConfig{Delay: -time.Second}},
		{name: "negative drain timeout", cfg: gateway.ShutdownConfig{DrainTimeout: -time.Second}},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = lis.Close() }()

			err = gateway.Serve(context.Background(), &http.Server{}, lis, tt.cfg)
			if err == nil || !strings.Contains(err.Error(), "negative") {
				t.Errorf("Serve = %v, want an error about the negative duration", err)
			}
		})
	}
}
