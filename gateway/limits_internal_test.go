package gateway

import (
	"errors"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
)

func TestParseTimeout(t *testing.T) {
	tests := []struct {
		name    string
		values  []string
		want    time.Duration
		wantErr bool
	}{
		{name: "milliseconds", values: []string{"250m"}, want: 250 * time.Millisecond},
		{name: "seconds", values: []string{"5S"}, want: 5 * time.Second},
		{name: "hours", values: []string{"2H"}, want: 2 * time.Hour},
		{name: "nanoseconds", values: []string{"7n"}, want: 7},
		{name: "eight digits", values: []string{"99999999u"}, want: 99999999 * time.Microsecond},
		{name: "overflow is capped", values: []string{"99999999H"}, want: math.MaxInt64},
		{name: "nine digits", values: []string{"123456789S"}, wantErr: true},
		{name: "zero", values: []string{"0S"}, wantErr: true},
		{name: "no unit", values: []string{"100"}, wantErr: true},
		{name: "unknown unit", values: []string{"5s"}, wantErr: true},
		{name: "unit only", values: []string{"S"}, wantErr: true},
		{name: "sign", values: []string{"+5S"}, wantErr: true},
		{name: "negative", values: []string{"-5S"}, wantErr: true},
		{name: "spaces", values: []string{" 5S"}, wantErr: true},
		{name: "empty", values: []string{""}, wantErr: true},
		{name: "two values", values: []string{"5S", "6S"}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseTimeout(tc.values)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("parseTimeout(%q) = %v, want an error", tc.values, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseTimeout(%q) = %v, %v; want %v", tc.values, got, err, tc.want)
			}
		})
	}
}

type nopConn struct{ grpc.ClientConnInterface }

func TestConfigValidate(t *testing.T) {
	valid := func() Config {
		return Config{Catalog: nopConn{}, Orders: nopConn{}, OpenAPI: []byte("{}")}
	}

	tests := []struct {
		name   string
		mutate func(*Config)
		inErr  string // "" means valid
	}{
		{"minimal", func(*Config) {}, ""},
		{"no catalog", func(c *Config) { c.Catalog = nil }, "catalog"},
		{"no orders", func(c *Config) { c.Orders = nil }, "orders"},
		{"no OpenAPI", func(c *Config) { c.OpenAPI = nil }, "OpenAPI"},
		{"negative body limit", func(c *Config) { c.MaxBodyBytes = -1 }, "negative"},
		{"negative stream timeout", func(c *Config) { c.StreamTimeout = -1 }, "negative"},
		{"negative route limit", func(c *Config) {
			c.Routes = map[string]RouteLimits{"/a.B/C": {Timeout: -1}}
		}, "negative limit"},
		{"forward a request id", func(c *Config) {
			c.ForwardHeaders = []string{"Authorization", "X-Tenant"}
		}, ""},
		{"forward nothing", func(c *Config) { c.ForwardHeaders = []string{} }, ""},
		{"forward a hop-by-hop header", func(c *Config) {
			c.ForwardHeaders = []string{"connection"}
		}, "hop-by-hop"},
		{"forward X-Forwarded-For", func(c *Config) {
			c.ForwardHeaders = []string{"X-Forwarded-For"}
		}, "reserved"},
		{"forward a gRPC header", func(c *Config) {
			c.ForwardHeaders = []string{"Grpc-Metadata-Foo"}
		}, "namespace"},
		{"forward a gateway header", func(c *Config) {
			c.ForwardHeaders = []string{"X-Gatehouse-Instance"}
		}, "namespace"},
		{"forward a binary header", func(c *Config) {
			c.ForwardHeaders = []string{"X-Blob-Bin"}
		}, "binary"},
		{"forward a header with odd characters", func(c *Config) {
			c.ForwardHeaders = []string{"X Y"}
		}, "not a lowercase"},
		{"expose content-type", func(c *Config) {
			c.ResponseMetadata = []string{"content-type"}
		}, "transport"},
		{"expose an uppercase key", func(c *Config) {
			c.ResponseMetadata = []string{"X-Gatehouse-Instance"}
		}, "not a lowercase"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := valid()
			tc.mutate(&cfg)
			err := cfg.Validate()
			if tc.inErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.inErr) {
				t.Fatalf("Validate = %v, want an error about %q", err, tc.inErr)
			}
		})
	}
}

func TestServerConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     ServerConfig
		wantErr bool
	}{
		{"zero takes defaults", ServerConfig{}, false},
		{"explicit", ServerConfig{ReadHeaderTimeout: time.Second, ReadTimeout: 2 * time.Second,
			MaxHeaderBytes: 1 << 20}, false},
		{"negative timeout", ServerConfig{IdleTimeout: -1}, true},
		{"negative header cap", ServerConfig{MaxHeaderBytes: -1}, true},
		{"header timeout past the read timeout",
			ServerConfig{ReadHeaderTimeout: 3 * time.Second, ReadTimeout: time.Second}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); (err != nil) != tc.wantErr {
				t.Fatalf("Validate = %v, want error %v", err, tc.wantErr)
			}
			srv, err := NewHTTPServer(http.NotFoundHandler(), tc.cfg)
			if (err != nil) != tc.wantErr {
				t.Fatalf("NewHTTPServer error = %v, want error %v", err, tc.wantErr)
			}
			if err == nil && (srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 ||
				srv.WriteTimeout <= 0 || srv.IdleTimeout <= 0 || srv.MaxHeaderBytes <= 0 ||
				!srv.DisableGeneralOptionsHandler) {
				t.Fatalf("server without limits: %+v", srv)
			}
		})
	}
}

func TestHeaderPolicy(t *testing.T) {
	p := newHeaderPolicy([]string{"X-Tenant", "authorization"}, []string{"x-gatehouse-instance"})

	incoming := []struct {
		header string
		want   string // "" means dropped
	}{
		{"X-Tenant", "x-tenant"},
		{"x-tenant", "x-tenant"},
		{"Authorization", ""}, // grpc-gateway forwards it itself
		{"Cookie", ""},
		{"Grpc-Metadata-X-Tenant", ""},
		{"Connection", ""},
	}
	for _, tc := range incoming {
		t.Run("incoming "+tc.header, func(t *testing.T) {
			got, ok := p.incoming(tc.header)
			if got != tc.want || ok != (tc.want != "") {
				t.Fatalf("incoming(%q) = %q, %v; want %q", tc.header, got, ok, tc.want)
			}
		})
	}

	outgoing := []struct {
		key, header, trailer string
	}{
		{"x-gatehouse-instance", "Grpc-Metadata-x-gatehouse-instance",
			"Grpc-Trailer-x-gatehouse-instance"},
		{"content-type", "", ""},
		{"x-secret", "", ""},
	}
	for _, tc := range outgoing {
		t.Run("outgoing "+tc.key, func(t *testing.T) {
			h, hok := p.outgoingHeader(tc.key)
			tr, tok := p.outgoingTrailer(tc.key)
			if h != tc.header || hok != (tc.header != "") || tr != tc.trailer ||
				tok != (tc.trailer != "") {
				t.Fatalf("outgoing(%q) = %q %v, %q %v; want %q, %q",
					tc.key, h, hok, tr, tok, tc.header, tc.trailer)
			}
		})
	}

	t.Run("strip", func(t *testing.T) {
		tests := []struct {
			name         string
			forwardAuth  bool
			wantAuthLeft bool
		}{
			{"authorization allowed", true, true},
			{"authorization not allowed", false, false},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				r := httptest.NewRequest(http.MethodGet, "/v1/products", nil)
				r.Header.Set("Authorization", "Bearer x")
				r.Header.Set("X-Forwarded-For", "198.51.100.7")
				r.Header.Set("X-Forwarded-Host", "evil")
				sent := r.Header.Clone()

				got := (&headerPolicy{forwardAuthorization: tc.forwardAuth}).strip(r)
				h := got.Header
				if (h.Get("Authorization") != "") != tc.wantAuthLeft {
					t.Errorf("Authorization left: %q", h.Get("Authorization"))
				}
				if h.Get("X-Forwarded-For") != "" || h.Get("X-Forwarded-Host") != "" {
					t.Errorf("proxy headers left: %v", h)
				}
				// The layers around the gateway share the caller's request
				// and must still see what the client sent.
				if !reflect.DeepEqual(r.Header, sent) {
					t.Errorf("caller's headers changed: %v, want %v", r.Header, sent)
				}
			})
		}

		r := httptest.NewRequest(http.MethodGet, "/v1/products", nil)
		r.Header.Set("Authorization", "Bearer x")
		if got := (&headerPolicy{forwardAuthorization: true}).strip(r); got != r {
			t.Error("nothing to strip: want the request itself, not a copy")
		}
	})
}

// TestStreamWriteTimeout checks over a real connection that a streaming
// writer whose client stops reading fails its write instead of blocking
// for as long as the stream may live.
func TestStreamWriteTimeout(t *testing.T) {
	writeErr := make(chan error, 1)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			rw := &responseWriter{ResponseWriter: w, writeIdle: 200 * time.Millisecond}
			chunk := []byte(strings.Repeat("x", 64<<10))
			for {
				if _, err := rw.Write(chunk); err != nil {
					writeErr <- err
					return
				}
				if err := rw.FlushError(); err != nil {
					writeErr <- err
					return
				}
			}
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})

	conn, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer func() { _ = conn.Close() }()
	if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatalf("write: %v", err)
	}
	// The client never reads.

	select {
	case err := <-writeErr:
		var netErr net.Error
		if !errors.As(err, &netErr) || !netErr.Timeout() {
			t.Fatalf("write failed with %v, want a timeout", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the server still writes to a client that stopped reading")
	}
}
