package mtls_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/gatehouse-dev/gatehouse/certsource"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport"
	"github.com/gatehouse-dev/gatehouse/mtls"
	"github.com/gatehouse-dev/gatehouse/pki"
)

// serve runs a health server with server credentials for src on 127.0.0.1
// and returns its address and its log.
func serve(t testing.TB, src mtls.Source) (string, *observer.ObservedLogs) {
	t.Helper()

	core, logs := observer.New(zapcore.DebugLevel)

	creds, err := mtls.NewServerCredentials(src, mtls.WithLogger(zap.New(core)))
	if err != nil {
		t.Fatal(err)
	}

	srv := grpc.NewServer(grpc.Creds(creds))
	healthpb.RegisterHealthServer(srv, health.NewServer())

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}

	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	return lis.Addr().String(), logs
}

func check(t testing.TB, addr string, creds credentials.TransportCredentials) error {
	t.Helper()

	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})

	return err
}

// mislabelled issues a certificate whose DNS SAN is catalog's but whose
// identity is orders': standard verification passes, only the identity
// check can catch it.
func mislabelled(t *testing.T, p *testsupport.TestPKI) *pki.Leaf {
	t.Helper()

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	orders := testsupport.ID(t, "orders")
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: "mislabelled"},
		DNSNames:     []string{testsupport.ID(t, "catalog").DNSName()},
		URIs:         []*url.URL{orders.URL()},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}

	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.CA.Cert, &key.PublicKey, p.CA.Key)
	if err != nil {
		t.Fatal(err)
	}

	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}

	return &pki.Leaf{Cert: cert, Key: key, ID: orders}
}

func TestHandshakes(t *testing.T) {
	p := testsupport.NewTestPKI(t)
	bundle := func(service string) *certsource.Bundle {
		return p.Bundle(p.Leaf(t, testsupport.ID(t, service)))
	}

	tests := []struct {
		name      string
		server    mtls.Source
		client    mtls.Source
		expect    string // server identity the client dials
		code      codes.Code
		clientLog string // in the client's logged error
		serverLog string // in the server's logged error
	}{
		{name: "matching identities", server: testsupport.StaticSource{B: bundle("catalog")},
			client: testsupport.StaticSource{B: bundle("orders")}, expect: "catalog", code: codes.OK},
		{name: "server with another identity",
			server: testsupport.StaticSource{B: bundle("orders")},
			client: testsupport.StaticSource{B: bundle("gateway")}, expect: "catalog",
			code: codes.Unavailable, clientLog: "not catalog.svc.gatehouse.local"},
		{name: "server with a mislabelled certificate",
			server: testsupport.StaticSource{B: p.Bundle(mislabelled(t, p))},
			client: testsupport.StaticSource{B: bundle("gateway")}, expect: "catalog",
			code: codes.Unavailable, clientLog: "server presented another identity than expected"},
		{name: "server not ready", server: testsupport.StaticSource{},
			client: testsupport.StaticSource{B: bundle("gateway")}, expect: "catalog",
			code: codes.Unavailable, serverLog: "no certificate loaded yet"},
		{name: "client not ready", server: testsupport.StaticSource{B: bundle("catalog")},
			client: testsupport.StaticSource{}, expect: "catalog", code: codes.Unavailable,
			clientLog: "no certificate loaded yet"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, serverLogs := serve(t, tt.server)
			core, clientLogs := observer.New(zapcore.DebugLevel)

			creds, err := mtls.NewClientCredentials(tt.client, testsupport.ID(t, tt.expect),
				mtls.WithLogger(zap.New(core)))
			if err != nil {
				t.Fatal(err)
			}

			err = check(t, addr, creds)
			if got := status.Code(err); got != tt.code {
				t.Fatalf("Check: code %v (%v), want %v", got, err, tt.code)
			}

			if tt.clientLog != "" && !logged(clientLogs, tt.clientLog) {
				t.Errorf("client log lacks %q: %v", tt.clientLog, clientLogs.All())
			}

			if tt.serverLog != "" {
				waitLogged(t, serverLogs, tt.serverLog)
			}
		})
	}
}

func TestServerRequiresTLS13(t *testing.T) {
	p := testsupport.NewTestPKI(t)
	addr, logs := serve(t, testsupport.StaticSource{B: p.Bundle(p.Leaf(t, testsupport.ID(t, "catalog")))})

	b := p.Bundle(p.Leaf(t, testsupport.ID(t, "orders")))
	cfg := mtls.ClientConfig(b, testsupport.ID(t, "catalog"))
	cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12

	if err := check(t, addr, credentials.NewTLS(cfg)); status.Code(err) != codes.Unavailable {
		t.Fatalf("TLS 1.2 client: %v, want Unavailable", err)
	}

	waitLogged(t, logs, "unsupported versions")
}

func TestClientCredentials(t *testing.T) {
	p := testsupport.NewTestPKI(t)
	src := testsupport.StaticSource{B: p.Bundle(p.Leaf(t, testsupport.ID(t, "orders")))}

	creds, err := mtls.NewClientCredentials(src, testsupport.ID(t, "catalog"))
	if err != nil {
		t.Fatal(err)
	}

	if got := creds.Clone().Info(); got.SecurityProtocol != "tls" {
		t.Errorf("Info() = %+v", got)
	}

	if _, err := mtls.NewClientCredentials(nil, testsupport.ID(t, "catalog")); err == nil {
		t.Errorf("NewClientCredentials(nil source) succeeded")
	}

	if _, err := mtls.NewServerCredentials(nil); err == nil {
		t.Errorf("NewServerCredentials(nil source) succeeded")
	}
}

func logged(logs *observer.ObservedLogs, want string) bool {
	for _, e := range logs.All() {
		if err, _ := e.ContextMap()["error"].(string); strings.Contains(err, want) {
			return true
		}
	}

	return false
}

// waitLogged waits for a log line whose error mentions want: the server
// logs after the client has already seen the failure.
func waitLogged(t *testing.T, logs *observer.ObservedLogs, want string) {
	t.Helper()

	deadline := time.Now().Add(5 * time.Second)
	for !logged(logs, want) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line mentioning %q: %v", want, logs.All())
		}

		time.Sleep(10 * time.Millisecond)
	}
}

// TestAuthorityDoesNotChooseServer sets the channel's authority to the name
// of the service actually listening: the client must still insist on the
// identity it was built for.
func TestAuthorityDoesNotChooseServer(t *testing.T) {
	p := testsupport.NewTestPKI(t)
	addr, _ := serve(t, testsupport.StaticSource{B: p.Bundle(p.Leaf(t, testsupport.ID(t, "orders")))})

	creds, err := mtls.NewClientCredentials(
		testsupport.StaticSource{B: p.Bundle(p.Leaf(t, testsupport.ID(t, "gateway")))},
		testsupport.ID(t, "catalog"))
	if err != nil {
		t.Fatal(err)
	}

	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds),
		grpc.WithAuthority(testsupport.ID(t, "orders").DNSName()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("Check on an orders server with catalog credentials: %v, want Unavailable", err)
	}
}
