package host_test

import (
	"context"
	"crypto/x509"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/gatehouse-dev/gatehouse/certsource"
	catalogv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/catalog/v1"
	"github.com/gatehouse-dev/gatehouse/identity"
	"github.com/gatehouse-dev/gatehouse/internal/testsupport"
	"github.com/gatehouse-dev/gatehouse/mtls"
	"github.com/gatehouse-dev/gatehouse/pki"
)

// traffic calls GetProduct in the background, on one long-lived connection
// and on a fresh connection per call (a handshake each), and counts calls
// and failures.
type traffic struct {
	calls, failures atomic.Int64
	lastErr         atomic.Value
	stop            chan struct{}
	stopOnce        sync.Once
	wg              sync.WaitGroup
	fresh           atomic.Int64 // calls on fresh connections
}

// maxFreshConns bounds the connections the handshake loop opens.
const maxFreshConns = 2000

func startTraffic(t *testing.T, addr string, creds credentials.TransportCredentials) *traffic {
	t.Helper()

	tr := &traffic{stop: make(chan struct{})}
	long := dial(t, addr, creds)

	tr.wg.Add(2)

	go func() {
		defer tr.wg.Done()

		for !tr.stopped() {
			tr.record(getProduct(context.Background(), long))
		}
	}()

	go func() {
		defer tr.wg.Done()

		for i := 0; i < maxFreshConns && !tr.stopped(); i++ {
			conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds))
			if err != nil {
				tr.record(err)
				continue
			}

			tr.record(getProduct(context.Background(), conn))
			tr.fresh.Add(1)
			_ = conn.Close()
		}
	}()

	return tr
}

func (tr *traffic) stopped() bool {
	select {
	case <-tr.stop:
		return true
	default:
		return false
	}
}

func (tr *traffic) record(err error) {
	tr.calls.Add(1)

	if err != nil {
		tr.failures.Add(1)
		tr.lastErr.Store(err)
	}
}

// waitCalls waits until n more calls were made on fresh connections, each
// after a handshake of its own; the long-lived connection makes many more.
func (tr *traffic) waitCalls(t *testing.T, n int64) {
	t.Helper()

	target := tr.fresh.Load() + n
	eventually(t, 20*time.Second, "traffic keeps flowing", func() bool {
		return tr.fresh.Load() >= target
	})
}

// halt stops the traffic and waits for it; calling it again does nothing.
func (tr *traffic) halt() {
	tr.stopOnce.Do(func() { close(tr.stop) })
	tr.wg.Wait()
}

// TestRotationUnderTraffic rotates the CA and every certificate, on the
// server and the client, while calls flow on an open connection and on new
// connections: no call may fail, new handshakes must use the new
// certificates, and once the old CA is gone a certificate it signed is
// refused.
func TestRotationUnderTraffic(t *testing.T) {
	p := testsupport.NewTestPKI(t)
	catalog := startHost(t, p, "catalog", nil)

	p.Issue(t, "orders")
	clientSrc := p.Source(t, "orders")

	creds, err := mtls.NewClientCredentials(clientSrc, testsupport.ID(t, "catalog"))
	if err != nil {
		t.Fatal(err)
	}

	serverSrc := catalog.src
	oldCA := p.CA.Cert
	oldClient := clientSrc.Bundle()

	tr := startTraffic(t, catalog.Addr().String(), creds)
	defer tr.halt()

	tr.waitCalls(t, 5)

	// 1. Trust the new CA next to the old one, everywhere.
	newCA, err := pki.NewCA(identity.DefaultTrustDomain)
	if err != nil {
		t.Fatal(err)
	}

	writeBundle(t, p, newCA.Cert, oldCA)
	waitBundles(t, "both CAs trusted", func(b *certsource.Bundle) bool { return len(b.CAs) == 2 },
		serverSrc, clientSrc)
	tr.waitCalls(t, 5)

	// 2. New leaves from the new CA, server and client.
	newServer := issueTo(t, p, newCA, "catalog")
	newClient := issueTo(t, p, newCA, "orders")
	waitBundles(t, "new leaves loaded", func(b *certsource.Bundle) bool {
		serial := b.Leaf().SerialNumber
		return serial.Cmp(newServer.SerialNumber) == 0 || serial.Cmp(newClient.SerialNumber) == 0
	}, serverSrc, clientSrc)
	tr.waitCalls(t, 5)

	// 3. Drop the old CA.
	writeBundle(t, p, newCA.Cert)
	waitBundles(t, "old CA dropped", func(b *certsource.Bundle) bool { return len(b.CAs) == 1 },
		serverSrc, clientSrc)
	tr.waitCalls(t, 10)
	tr.halt()

	if n := tr.failures.Load(); n != 0 {
		t.Fatalf("%d of %d calls failed during rotation; last: %v", n, tr.calls.Load(),
			tr.lastErr.Load())
	}

	if tr.fresh.Load() < 25 {
		t.Errorf("only %d calls on fresh connections; the rotation saw too few handshakes",
			tr.fresh.Load())
	}

	t.Logf("%d calls during rotation (%d with a new handshake), none failed",
		tr.calls.Load(), tr.fresh.Load())

	// A new connection uses the new certificates on both ends.
	conn := dial(t, catalog.Addr().String(), creds)

	resp, err := catalogv1.NewCatalogServiceClient(conn).GetProduct(context.Background(),
		&catalogv1.GetProductRequest{Id: "p-1001"})
	if err != nil {
		t.Fatalf("call after rotation: %v", err)
	}

	if got, want := resp.GetProduct().GetName(), newClient.SerialNumber.Text(16); got != want {
		t.Errorf("server saw client certificate %s, want the new %s", got, want)
	}

	// The CA rotation is complete: a client still holding a certificate of
	// the old CA is refused at the handshake, and the refusal is logged.
	skip := catalog.logs.Len()
	oldCreds, err := mtls.NewClientCredentials(testsupport.StaticSource{B: &certsource.Bundle{
		Certificate: oldClient.Certificate, ID: oldClient.ID, Roots: clientSrc.Bundle().Roots,
	}}, testsupport.ID(t, "catalog"))
	if err != nil {
		t.Fatal(err)
	}

	err = getProduct(context.Background(), dial(t, catalog.Addr().String(), oldCreds))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("client with an old-CA certificate: %v, want Unavailable", err)
	}

	waitLog(t, catalog.logs, skip, "tls handshake refused", "error", "unknown authority")
}

func writeBundle(t *testing.T, p *testsupport.TestPKI, cas ...*x509.Certificate) {
	t.Helper()

	if err := pki.WriteFileAtomic(p.Dir.CACert(), pki.EncodeCerts(cas...), 0o644); err != nil {
		t.Fatalf("write ca bundle: %v", err)
	}
}

func issueTo(t *testing.T, p *testsupport.TestPKI, ca *pki.CA, service string) *x509.Certificate {
	t.Helper()

	leaf, err := ca.Issue(testsupport.ID(t, service))
	if err != nil {
		t.Fatal(err)
	}

	if err := leaf.WriteFiles(p.Dir.Cert(service), p.Dir.Key(service)); err != nil {
		t.Fatal(err)
	}

	return leaf.Cert
}

func waitBundles(
	t *testing.T,
	what string,
	cond func(*certsource.Bundle) bool,
	srcs ...*certsource.Source,
) {
	t.Helper()

	eventually(t, 10*time.Second, what, func() bool {
		for _, s := range srcs {
			if !cond(s.Bundle()) {
				return false
			}
		}

		return true
	})
}

// TestNotReadyUntilCertificate starts a host whose certificate files do not
// exist yet: it refuses handshakes, and serves once they are written.
func TestNotReadyUntilCertificate(t *testing.T) {
	p := testsupport.NewTestPKI(t)
	core, logs := observer.New(zapcore.DebugLevel)

	src, err := certsource.New(p.Files("catalog"), certsource.WithLogger(zap.New(core)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = src.Close() }()

	h, err := hostNew(t, "catalog", src, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}

	catalogv1.RegisterCatalogServiceServer(h.Server(), fakeCatalog{})
	runHost(t, h)

	waitLog(t, logs, 0, "not ready: waiting for the first certificate", "", "")

	p.Issue(t, "gateway")
	gateway := p.Source(t, "gateway")

	creds, err := mtls.NewClientCredentials(gateway, testsupport.ID(t, "catalog"))
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// The listener is open but nothing is served: the handshake waits.
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()

	conn := dial(t, h.Addr().String(), creds)
	if err := checkHealth(short, conn); status.Code(err) != codes.DeadlineExceeded &&
		status.Code(err) != codes.Unavailable {
		t.Fatalf("health before the certificate: %v, want no answer", err)
	}

	p.Issue(t, "catalog")

	eventually(t, 10*time.Second, "host serves once its certificate exists", func() bool {
		return checkHealth(ctx, conn) == nil
	})
}
