package httpcall_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/httpcall"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport/platform"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// testTimeout bounds each request to the in-process servers.
const testTimeout = 10 * time.Second

// result is what the outer layer read from a Call after the handler.
type result struct {
	route, method      string
	status             int
	code               codes.Code
	bytesIn, bytesOut  int64
	hasInner           bool
	innerHasPathParams bool
}

// recorder is an outer middleware that starts a Call and keeps what it
// holds once the handler has returned.
type recorder struct {
	mu   sync.Mutex
	last result
}

func (rec *recorder) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		call, w, r, _ := httpcall.Start(w, r)
		next.ServeHTTP(w, r)

		res := result{
			route: call.Route(), method: call.GRPCMethod(), status: call.Status(),
			code: call.Code(), bytesIn: call.BytesIn(), bytesOut: call.BytesOut(),
		}
		if ctx := call.Context(); ctx != nil {
			res.hasInner = true
			_, res.innerHasPathParams = runtime.HTTPPathPattern(ctx)
		}

		rec.mu.Lock()
		rec.last = res
		rec.mu.Unlock()
	})
}

func (rec *recorder) result() result {
	rec.mu.Lock()
	defer rec.mu.Unlock()

	return rec.last
}

// gatewayLike serves the real catalog through a real grpc-gateway mux, next
// to a net/http ServeMux route, the way the gateway is built.
func gatewayLike(t *testing.T) (*httptest.Server, *recorder) {
	t.Helper()

	addr := platform.StartCatalog(t)
	conn := testsupport.DialGRPC(t, addr)
	gw := platform.GatewayMux(t, conn, nil,
		runtime.WithMetadata(httpcall.Annotate),
		runtime.WithErrorHandler(func(
			ctx context.Context,
			mux *runtime.ServeMux,
			m runtime.Marshaler,
			w http.ResponseWriter,
			r *http.Request,
			err error,
		) {
			httpcall.SetCode(ctx, status.Code(err))
			runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
		}),
	)

	root := http.NewServeMux()
	root.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	root.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(w, r.Body)
	})
	root.Handle("/", gw)

	rec := &recorder{}
	srv := httptest.NewServer(rec.wrap(httpcall.Capture(root)))
	t.Cleanup(srv.Close)

	return srv, rec
}

func TestCallThroughGateway(t *testing.T) {
	srv, rec := gatewayLike(t)

	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		wantRoute  string
		wantMethod string
		wantStatus int
		wantCode   codes.Code
		wantIn     int64
	}{
		{
			name: "grpc-gateway route", method: http.MethodGet, path: "/v1/products/p-1001",
			wantRoute:  "/v1/products/{id}",
			wantMethod: "/gatehouse.catalog.v1.CatalogService/GetProduct",
			wantStatus: http.StatusOK, wantCode: codes.OK,
		},
		{
			name: "backend error code", method: http.MethodGet, path: "/v1/products/p-0000",
			wantRoute:  "/v1/products/{id}",
			wantMethod: "/gatehouse.catalog.v1.CatalogService/GetProduct",
			wantStatus: http.StatusNotFound, wantCode: codes.NotFound,
		},
		{
			name: "servemux route", method: http.MethodGet, path: "/healthz",
			wantRoute: "GET /healthz", wantStatus: http.StatusOK, wantCode: codes.OK,
		},
		{
			name: "body is counted", method: http.MethodPost, path: "/echo", body: "hello body",
			wantRoute: "POST /echo", wantStatus: http.StatusOK, wantCode: codes.OK,
			wantIn: 10,
		},
		{
			name: "unknown path", method: http.MethodGet, path: "/nowhere",
			wantRoute: "/", wantStatus: http.StatusNotFound, wantCode: codes.NotFound,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()

			req, err := http.NewRequestWithContext(ctx, tt.method, srv.URL+tt.path,
				strings.NewReader(tt.body))
			if err != nil {
				t.Fatalf("new request: %v", err)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", tt.method, tt.path, err)
			}
			body, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if err != nil {
				t.Fatalf("read body: %v", err)
			}

			got := rec.result()
			if got.route != tt.wantRoute {
				t.Errorf("route = %q, want %q", got.route, tt.wantRoute)
			}
			if got.method != tt.wantMethod {
				t.Errorf("grpc method = %q, want %q", got.method, tt.wantMethod)
			}
			if got.status != tt.wantStatus || resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d (client saw %d), want %d",
					got.status, resp.StatusCode, tt.wantStatus)
			}
			if got.code != tt.wantCode {
				t.Errorf("code = %v, want %v", got.code, tt.wantCode)
			}
			if got.bytesOut != int64(len(body)) {
				t.Errorf("bytes out = %d, client read %d", got.bytesOut, len(body))
			}
			if got.bytesIn != tt.wantIn {
				t.Errorf("bytes in = %d, want %d", got.bytesIn, tt.wantIn)
			}
			if !got.hasInner {
				t.Errorf("no inner context recorded")
			}
			if got.innerHasPathParams != (tt.wantMethod != "") {
				t.Errorf("inner context has grpc-gateway pattern = %v, want %v",
					got.innerHasPathParams, tt.wantMethod != "")
			}
		})
	}
}

// TestFlushStreams checks that a response flushed through the Call's writer
// reaches the client before the handler ends, as grpc-gateway streams need.
func TestFlushStreams(t *testing.T) {
	release := make(chan struct{})
	handler := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "first\n")
		f, ok := w.(http.Flusher)
		if !ok {
			t.Errorf("wrapped writer %T is not an http.Flusher", w)
			return
		}
		f.Flush()

		select {
		case <-release:
		case <-time.After(testTimeout):
		}
		_, _ = io.WriteString(w, "second\n")
	})

	rec := &recorder{}
	srv := httptest.NewServer(rec.wrap(handler))
	t.Cleanup(srv.Close)

	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		close(release)
		t.Fatalf("get: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()

	lines := bufio.NewReader(resp.Body)
	first, err := lines.ReadString('\n')
	close(release)
	if err != nil || first != "first\n" {
		t.Fatalf("first line = %q, %v; want it before the handler ends", first, err)
	}
	if rest, _ := io.ReadAll(lines); string(rest) != "second\n" {
		t.Errorf("rest = %q, want %q", rest, "second\n")
	}
}

func TestStartReusesCall(t *testing.T) {
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/", nil)

	outer, w2, r2, created := httpcall.Start(w, r)
	if !created {
		t.Fatalf("first Start did not create a Call")
	}
	inner, w3, r3, created := httpcall.Start(w2, r2)
	if created || inner != outer {
		t.Errorf("second Start created=%v, same call=%v; want the outer call", created,
			inner == outer)
	}
	if w3 != w2 || r3 != r2 {
		t.Errorf("second Start changed the writer or request")
	}
	if httpcall.FromContext(r.Context()) != nil {
		t.Errorf("Start changed the context of the request it was given")
	}
}

func TestSettersWithoutCall(t *testing.T) {
	// Inner layers may run without an outer Call; the setters must not fail.
	ctx := context.Background()
	httpcall.SetRoute(ctx, "/x")
	httpcall.SetCode(ctx, codes.Internal)
	if md := httpcall.Annotate(ctx, nil); md != nil {
		t.Errorf("Annotate without a Call = %v, want nil", md)
	}
}

func TestCodeFromStatus(t *testing.T) {
	tests := []struct {
		name   string
		status int
		want   codes.Code
	}{
		{"ok", 200, codes.OK},
		{"created", 201, codes.OK},
		{"bad request", 400, codes.InvalidArgument},
		{"unauthorized", 401, codes.Unauthenticated},
		{"forbidden", 403, codes.PermissionDenied},
		{"not found", 404, codes.NotFound},
		{"method not allowed", 405, codes.Unimplemented},
		{"too many requests", 429, codes.ResourceExhausted},
		{"internal", 500, codes.Internal},
		{"unavailable", 503, codes.Unavailable},
		{"gateway timeout", 504, codes.DeadlineExceeded},
		{"teapot", 418, codes.Unknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := httpcall.CodeFromStatus(tt.status); got != tt.want {
				t.Errorf("CodeFromStatus(%d) = %v, want %v", tt.status, got, tt.want)
			}
		})
	}
}
