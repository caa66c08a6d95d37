package peerauth_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/gatehouse-dev/gatehouse/identity"
	"github.com/gatehouse-dev/gatehouse/interceptors/peerauth"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport"
)

const method = "/test.v1.Svc/Do"

// onlyGateway allows the gateway and nobody else.
type onlyGateway struct{}

func (onlyGateway) Check(_, caller string) error {
	if caller != "gateway" {
		return errors.New("only the gateway may call")
	}

	return nil
}

// otherAuth is an AuthInfo of some non-TLS transport.
type otherAuth struct{}

func (otherAuth) AuthType() string { return "other" }

func peerCtx(auth credentials.AuthInfo) context.Context {
	return peer.NewContext(context.Background(), &peer.Peer{
		Addr:     &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000},
		AuthInfo: auth,
	})
}

// verified is the AuthInfo of a handshake that verified cert.
func verified(cert *x509.Certificate) credentials.AuthInfo {
	return credentials.TLSInfo{State: tls.ConnectionState{
		PeerCertificates: []*x509.Certificate{cert},
		VerifiedChains:   [][]*x509.Certificate{{cert}},
	}}
}

func TestUnaryServerInterceptor(t *testing.T) {
	p := testsupport.NewTestPKI(t)
	cert := func(td, svc string) *x509.Certificate {
		id, err := identity.New(td, svc)
		if err != nil {
			t.Fatal(err)
		}

		return p.Leaf(t, id).Cert
	}

	gateway := cert(identity.DefaultTrustDomain, "gateway")

	tests := []struct {
		name       string
		ctx        context.Context
		dryRun     bool
		code       codes.Code
		wantCaller string // identity the handler sees; "" when it must not run
		logMsg     string
		logReason  string
	}{
		{name: "no peer", ctx: context.Background(), code: codes.Unauthenticated,
			logMsg: "call refused: unauthenticated", logReason: "not tls"},
		{name: "not tls", ctx: peerCtx(otherAuth{}), code: codes.Unauthenticated,
			logMsg: "call refused: unauthenticated", logReason: `auth type "other"`},
		{name: "certificate not verified", code: codes.Unauthenticated,
			ctx: peerCtx(credentials.TLSInfo{State: tls.ConnectionState{
				PeerCertificates: []*x509.Certificate{gateway}}}),
			logMsg: "call refused: unauthenticated", logReason: "no verified client certificate"},
		{name: "verified, no service identity", code: codes.Unauthenticated,
			ctx:    peerCtx(verified(p.CA.Cert)),
			logMsg: "call refused: unauthenticated", logReason: "invalid workload identity"},
		{name: "another trust domain", code: codes.Unauthenticated,
			ctx:    peerCtx(verified(cert("other.local", "gateway"))),
			logMsg: "call refused: unauthenticated", logReason: "another trust domain"},
		{name: "allowed", ctx: peerCtx(verified(gateway)), code: codes.OK,
			wantCaller: "spiffe://gatehouse.local/svc/gateway"},
		{name: "not allowed", ctx: peerCtx(verified(cert(identity.DefaultTrustDomain, "orders"))),
			code: codes.PermissionDenied, logMsg: "call refused: permission denied",
			logReason: "only the gateway may call"},
		{name: "not allowed, dry run", dryRun: true, code: codes.OK,
			ctx:        peerCtx(verified(cert(identity.DefaultTrustDomain, "orders"))),
			wantCaller: "spiffe://gatehouse.local/svc/orders",
			logMsg:     "dry run: call would be denied", logReason: "only the gateway may call"},
		{name: "unauthenticated, dry run", dryRun: true, code: codes.Unauthenticated,
			ctx:    peerCtx(verified(cert("other.local", "gateway"))),
			logMsg: "call refused: unauthenticated", logReason: "another trust domain"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.DebugLevel)

			a, err := peerauth.New(onlyGateway{}, peerauth.WithLogger(zap.New(core)),
				peerauth.WithDryRun(tt.dryRun))
			if err != nil {
				t.Fatal(err)
			}

			gotCaller := ""
			handler := func(ctx context.Context, _ any) (any, error) {
				id, ok := peerauth.Caller(ctx)
				if !ok {
					t.Errorf("handler ran without a caller in its context")
				}

				gotCaller = id.String()

				return "ok", nil
			}

			_, err = a.UnaryServerInterceptor()(tt.ctx, "req",
				&grpc.UnaryServerInfo{FullMethod: method}, handler)
			if got := status.Code(err); got != tt.code {
				t.Fatalf("code %v (%v), want %v", got, err, tt.code)
			}

			if gotCaller != tt.wantCaller {
				t.Errorf("handler saw caller %q, want %q", gotCaller, tt.wantCaller)
			}

			if tt.logMsg != "" {
				checkLogged(t, logs, tt.logMsg, tt.logReason)
			}

			if msg := status.Convert(err).Message(); strings.Contains(msg, "gateway") {
				t.Errorf("the caller learns the policy: %q", msg)
			}
		})
	}
}

func checkLogged(t *testing.T, logs *observer.ObservedLogs, msg, reason string) {
	t.Helper()

	entries := logs.FilterMessage(msg).All()
	if len(entries) != 1 {
		t.Fatalf("%d log lines %q, want 1; all: %v", len(entries), msg, logs.All())
	}

	fields := entries[0].ContextMap()
	if r, _ := fields["reason"].(string); !strings.Contains(r, reason) {
		t.Errorf("logged reason %q, want it to mention %q", r, reason)
	}

	if fields["method"] != method {
		t.Errorf("logged method %v, want %s", fields["method"], method)
	}

	if entries[0].Level != zapcore.WarnLevel {
		t.Errorf("logged at %v, want warn", entries[0].Level)
	}
}

// fakeStream is a server stream with a context and nothing else.
type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s fakeStream) Context() context.Context { return s.ctx }

func TestStreamServerInterceptor(t *testing.T) {
	p := testsupport.NewTestPKI(t)

	tests := []struct {
		name    string
		service string
		code    codes.Code
	}{
		{name: "allowed", service: "gateway", code: codes.OK},
		{name: "not allowed", service: "orders", code: codes.PermissionDenied},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := peerauth.New(onlyGateway{})
			if err != nil {
				t.Fatal(err)
			}

			cert := p.Leaf(t, testsupport.ID(t, tt.service)).Cert
			ran := false

			err = a.StreamServerInterceptor()(nil, fakeStream{ctx: peerCtx(verified(cert))},
				&grpc.StreamServerInfo{FullMethod: method, IsServerStream: true},
				func(_ any, ss grpc.ServerStream) error {
					ran = true
					if id, _ := peerauth.Caller(ss.Context()); id.Service() != tt.service {
						t.Errorf("stream context carries %v, want %s", id, tt.service)
					}

					return nil
				})
			if got := status.Code(err); got != tt.code {
				t.Fatalf("code %v (%v), want %v", got, err, tt.code)
			}

			if ran != (tt.code == codes.OK) {
				t.Errorf("handler ran = %v for code %v", ran, tt.code)
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := peerauth.New(nil); err == nil {
		t.Errorf("New(nil policy) succeeded")
	}

	if _, err := peerauth.New(onlyGateway{}, peerauth.WithLogger(nil)); err == nil {
		t.Errorf("New with a nil logger succeeded")
	}

	if _, err := peerauth.New(onlyGateway{}, peerauth.WithTrustDomain("Bad_TD")); err == nil {
		t.Errorf("New with a bad trust domain succeeded")
	}
}

func TestRefusalHook(t *testing.T) {
	p := testsupport.NewTestPKI(t)
	cert := func(td, svc string) *x509.Certificate {
		id, err := identity.New(td, svc)
		if err != nil {
			t.Fatal(err)
		}

		return p.Leaf(t, id).Cert
	}

	otherGateway, err := identity.New("other.local", "gateway")
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		ctx    context.Context
		dryRun bool
		// want is the refusal the hook must see; nil when it must not run.
		want    *peerauth.Refusal
		wantErr error
	}{
		{name: "allowed", ctx: peerCtx(verified(cert(identity.DefaultTrustDomain, "gateway")))},
		{name: "no tls", ctx: peerCtx(otherAuth{}), wantErr: peerauth.ErrNoTLS,
			want: &peerauth.Refusal{Method: method, Code: codes.Unauthenticated,
				PeerAddr: "127.0.0.1:5000"}},
		{name: "another trust domain", ctx: peerCtx(verified(cert("other.local", "gateway"))),
			wantErr: peerauth.ErrTrustDomain,
			want: &peerauth.Refusal{Method: method, Code: codes.Unauthenticated,
				PeerAddr: "127.0.0.1:5000", Caller: otherGateway}},
		{name: "not allowed",
			ctx: peerCtx(verified(cert(identity.DefaultTrustDomain, "orders"))),
			want: &peerauth.Refusal{Method: method, Code: codes.PermissionDenied,
				PeerAddr: "127.0.0.1:5000", Caller: testsupport.ID(t, "orders")}},
		{name: "not allowed, dry run", dryRun: true,
			ctx: peerCtx(verified(cert(identity.DefaultTrustDomain, "orders")))},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []peerauth.Refusal

			a, err := peerauth.New(onlyGateway{}, peerauth.WithDryRun(tt.dryRun),
				peerauth.WithRefusalHook(func(_ context.Context, r peerauth.Refusal) {
					got = append(got, r)
				}))
			if err != nil {
				t.Fatal(err)
			}

			_, _ = a.UnaryServerInterceptor()(tt.ctx, "req",
				&grpc.UnaryServerInfo{FullMethod: method},
				func(context.Context, any) (any, error) { return "ok", nil })

			if tt.want == nil {
				if len(got) != 0 {
					t.Fatalf("hook saw %+v, want no refusal", got)
				}

				return
			}

			if len(got) != 1 {
				t.Fatalf("hook ran %d times, want once", len(got))
			}

			r := got[0]
			if r.Method != tt.want.Method || r.Code != tt.want.Code ||
				r.PeerAddr != tt.want.PeerAddr || r.Caller != tt.want.Caller || r.Err == nil {
				t.Errorf("hook saw %+v, want %+v", r, *tt.want)
			}

			if tt.wantErr != nil && !errors.Is(r.Err, tt.wantErr) {
				t.Errorf("hook error %v, want it to wrap %v", r.Err, tt.wantErr)
			}
		})
	}
}
