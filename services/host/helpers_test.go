package host_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/gatehouse-dev/gatehouse/certsource"
	catalogv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/catalog/v1"
	ordersv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/orders/v1"
	"github.com/gatehouse-dev/gatehouse/interceptors/peerauth"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport"
	"github.com/gatehouse-dev/gatehouse/services/host"
)

// fakeCatalog answers GetProduct with what it saw of the caller: the
// identity peerauth put in the context (Description) and the serial of the
// client certificate (Name). ReserveStock always succeeds. The real
// catalog is tested in services/catalog; here only the transport and the
// interceptors matter.
type fakeCatalog struct {
	catalogv1.UnimplementedCatalogServiceServer
}

func (fakeCatalog) GetProduct(
	ctx context.Context,
	req *catalogv1.GetProductRequest,
) (*catalogv1.GetProductResponse, error) {
	caller, _ := peerauth.Caller(ctx)

	serial := ""
	if p, ok := peer.FromContext(ctx); ok {
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.PeerCertificates) > 0 {
			serial = info.State.PeerCertificates[0].SerialNumber.Text(16)
		}
	}

	return &catalogv1.GetProductResponse{Product: &catalogv1.Product{
		Id: req.GetId(), Name: serial, Description: caller.String(),
	}}, nil
}

func (fakeCatalog) ReserveStock(
	context.Context,
	*catalogv1.ReserveStockRequest,
) (*catalogv1.ReserveStockResponse, error) {
	return &catalogv1.ReserveStockResponse{ReservationId: "res-1"}, nil
}

// fakeOrders streams one snapshot on WatchOrder.
type fakeOrders struct {
	ordersv1.UnimplementedOrderServiceServer
}

func (fakeOrders) WatchOrder(
	req *ordersv1.WatchOrderRequest,
	stream grpc.ServerStreamingServer[ordersv1.WatchOrderResponse],
) error {
	return stream.Send(&ordersv1.WatchOrderResponse{Order: &ordersv1.Order{Id: req.GetId()}})
}

// runningHost is a host serving in the background.
type runningHost struct {
	*host.Host
	logs *observer.ObservedLogs
	src  *certsource.Source
	// tokens is the issuer of the user tokens the host accepts.
	tokens *testsupport.TokenIssuer
}

// issuers holds the token issuer of each running test: every host a test
// starts trusts the same one, as in a deployment.
var issuers sync.Map // testing.TB → *testsupport.TokenIssuer

// tokenIssuer returns the token issuer of t, started on first use.
func tokenIssuer(t testing.TB) *testsupport.TokenIssuer {
	t.Helper()

	if iss, ok := issuers.Load(t); ok {
		return iss.(*testsupport.TokenIssuer)
	}

	iss := testsupport.NewTokenIssuer(t)
	issuers.Store(t, iss)
	t.Cleanup(func() { issuers.Delete(t) })

	return iss
}

// startHost issues a certificate for service in p, starts a host serving the fake of service on 127.0.0.1 with its
// certificate source, and stops it at cleanup.
func startHost(
	t *testing.T,
	p *testsupport.TestPKI,
	service string,
	mutate func(*host.Config),
) *runningHost {
	t.Helper()

	core, logs := observer.New(zapcore.DebugLevel)
	logger := zap.New(core)

	p.Issue(t, service)
	src := p.Source(t, service, certsource.WithLogger(logger),
		certsource.WithExpectedID(testsupport.ID(t, service)))

	tokens := tokenIssuer(t)
	cfg := host.Config{
		Service:      service,
		ListenAddr:   "127.0.0.1:0",
		DrainTimeout: time.Second,
		Logger:       logger,
		Certificates: src,
		Tokens:       tokens.Verifier(t),
	}
	if mutate != nil {
		mutate(&cfg)
	}

	h, err := host.New(cfg)
	if err != nil {
		t.Fatalf("host.New(%s): %v", service, err)
	}

	switch service {
	case "catalog":
		catalogv1.RegisterCatalogServiceServer(h.Server(), fakeCatalog{})
	case "orders":
		ordersv1.RegisterOrderServiceServer(h.Server(), fakeOrders{})
	}

	runHost(t, h)

	return &runningHost{Host: h, logs: logs, src: src, tokens: tokens}
}

// runHost runs h until cleanup and checks that it stopped cleanly.
func runHost(t *testing.T, h *host.Host) {
	t.Helper()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)

	go func() { done <- h.Run(ctx) }()

	t.Cleanup(func() {
		cancel()

		if err := <-done; err != nil {
			t.Errorf("host Run: %v", err)
		}
	})
}

// dial connects to addr with creds and opts; the connection is closed at
// cleanup.
func dial(
	t *testing.T,
	addr string,
	creds credentials.TransportCredentials,
	opts ...grpc.DialOption,
) *grpc.ClientConn {
	t.Helper()

	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(creds)}, opts...)
	conn, err := grpc.NewClient("passthrough:///"+addr, opts...)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}

	t.Cleanup(func() { _ = conn.Close() })

	return conn
}

// rawTLS returns client credentials from a hand-made configuration, for
// clients that present broken or no certificates. They verify the server
// as catalog against p's CA.
func rawTLS(
	t *testing.T,
	p *testsupport.TestPKI,
	cert *tls.Certificate,
) credentials.TransportCredentials {
	roots := x509.NewCertPool()
	roots.AddCert(p.CA.Cert)

	c := &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    roots,
		ServerName: testsupport.ID(t, "catalog").DNSName(),
	}

	if cert != nil {
		c.Certificates = []tls.Certificate{*cert}
	}

	return credentials.NewTLS(c)
}

// waitLog waits until logs hold an entry after the first skip entries with
// message msg whose field (any field when empty) contains want, and
// returns it.
func waitLog(
	t *testing.T,
	logs *observer.ObservedLogs,
	skip int,
	msg, field, want string,
) observer.LoggedEntry {
	t.Helper()

	deadline := time.Now().Add(5 * time.Second)

	for {
		all := logs.All()
		for _, e := range all[min(skip, len(all)):] {
			if e.Message == msg && entryHas(e, field, want) {
				return e
			}
		}

		if time.Now().After(deadline) {
			var seen []string
			for _, e := range all[min(skip, len(all)):] {
				seen = append(seen, e.Message+" "+fieldsString(e))
			}

			t.Fatalf("no log %q with %s containing %q; saw:\n%s", msg, field, want,
				strings.Join(seen, "\n"))
		}

		time.Sleep(10 * time.Millisecond)
	}
}

func entryHas(e observer.LoggedEntry, field, want string) bool {
	for k, v := range e.ContextMap() {
		if field != "" && k != field {
			continue
		}

		if s, ok := v.(string); ok && strings.Contains(s, want) {
			return true
		}
	}

	return false
}

func fieldsString(e observer.LoggedEntry) string {
	var b strings.Builder
	for k, v := range e.ContextMap() {
		b.WriteString(k + "=")
		if s, ok := v.(string); ok {
			b.WriteString(s)
		} else {
			b.WriteString("?")
		}
		b.WriteString(" ")
	}

	return b.String()
}

// eventually polls cond every 10ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()

	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %v", what, timeout)
		}

		time.Sleep(10 * time.Millisecond)
	}
}

func checkHealth(ctx context.Context, conn *grpc.ClientConn) error {
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return err
	}

	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return status.Errorf(codes.Unknown, "health status %v", resp.GetStatus())
	}

	return nil
}

// hostNew is host.New with the test defaults.
func hostNew(
	t *testing.T,
	service string,
	src *certsource.Source,
	logger *zap.Logger,
) (*host.Host, error) {
	t.Helper()

	return host.New(host.Config{
		Service:      service,
		ListenAddr:   "127.0.0.1:0",
		DrainTimeout: time.Second,
		Logger:       logger,
		Certificates: src,
		Tokens:       tokenIssuer(t).Verifier(t),
	})
}
