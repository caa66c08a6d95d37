package gateway

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestPanicAfterResponseStarted checks the case a 500 can no longer
// describe: once a stream has begun, a panic cuts the connection, so the
// client sees a broken response instead of one that looks complete, and
// the panic is logged.
func TestPanicAfterResponseStarted(t *testing.T) {
	core, logs := observer.New(zapcore.ErrorLevel)
	g, err := New(Config{Catalog: nopConn{}, Orders: nopConn{}, OpenAPI: []byte("{}"),
		Logger: zap.New(core)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}

	tests := []struct {
		name      string
		startResp bool
		wantCode  int
	}{
		{name: "before the response", startResp: false, wantCode: http.StatusInternalServerError},
		{name: "after the response started", startResp: true, wantCode: http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				rw := &responseWriter{ResponseWriter: w}
				defer g.recoverPanic(rw, r)

				if tc.startResp {
					_, _ = io.WriteString(rw, "first line\n")
					_ = rw.FlushError()
				}
				panic("boom")
			})
			addr := serve(t, handler)

			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer func() { _ = conn.Close() }()
			if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatalf("write: %v", err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("read response: %v", err)
			}
			defer func() { _ = resp.Body.Close() }()
			body, err := io.ReadAll(resp.Body)

			if resp.StatusCode != tc.wantCode {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.wantCode)
			}
			if tc.startResp {
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Errorf("body read ended with %v after %q; want a broken stream", err, body)
				}
			} else if err != nil || !strings.Contains(string(body), `"internal error"`) {
				t.Errorf("body %q, %v; want the JSON internal error", body, err)
			}
			entries := logs.TakeAll() // this subtest's only
			if len(entries) != 1 || entries[0].Message != "panic while serving a request" {
				t.Errorf("log entries %v, want one for the panic", entries)
			}
		})
	}
}

// serve runs h on a 127.0.0.1 listener until the test ends.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})

	return lis.Addr().String()
}
