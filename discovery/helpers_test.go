package discovery_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"

	"github.com/gatehouse-dev/gatehouse/internal/consulagent"
)

// instanceHeader is the response header in which test servers name
// themselves.
const instanceHeader = "x-instance-id"

// pollInterval is how often waitFor re-checks its condition.
const pollInterval = 50 * time.Millisecond

// waitFor polls cond until it reports true or timeout passes; cond's string
// says what it saw, for the failure message.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()

	deadline := time.Now().Add(timeout)

	for {
		ok, seen := cond()
		if ok {
			return
		}

		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %v; last seen: %s", what, timeout, seen)
		}

		time.Sleep(pollInterval)
	}
}

func consulClient(t *testing.T, agent *consulagent.Agent) *api.Client {
	t.Helper()

	client, err := agent.Client()
	if err != nil {
		t.Fatalf("consul client: %v", err)
	}

	return client
}

// testServer is a real gRPC server on loopback with the standard health
// service, naming itself in a response header of every unary call.
type testServer struct {
	name   string
	addr   string
	port   int
	srv    *grpc.Server
	health *health.Server
}

func startServer(t *testing.T, name string, opts ...grpc.ServerOption) *testServer {
	t.Helper()

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen for server %s: %v", name, err)
	}

	name = "srv-" + name
	tagger := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo,
		handler grpc.UnaryHandler,
	) (any, error) {
		_ = grpc.SetHeader(ctx, metadata.Pairs(instanceHeader, name))

		return handler(ctx, req)
	}

	s := &testServer{
		name:   name,
		addr:   lis.Addr().String(),
		port:   lis.Addr().(*net.TCPAddr).Port,
		srv:    grpc.NewServer(append(opts, grpc.UnaryInterceptor(tagger))...),
		health: health.NewServer(),
	}

	healthpb.RegisterHealthServer(s.srv, s.health)

	done := make(chan struct{})

	go func() {
		defer close(done)

		_ = s.srv.Serve(lis)
	}()

	t.Cleanup(func() {
		s.srv.Stop()
		<-done
	})

	return s
}

// fakeCC records what a resolver tells gRPC.
type fakeCC struct {
	resolver.ClientConn // not called; satisfies methods added later

	mu     sync.Mutex
	states []resolver.State
	errs   []error
}

func (f *fakeCC) UpdateState(s resolver.State) error {
	f.mu.Lock()
	defer f.mu.Unlock()

	f.states = append(f.states, s)

	return nil
}

func (f *fakeCC) ReportError(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()

	f.errs = append(f.errs, err)
}

// snapshot returns copies of the recorded states and errors.
func (f *fakeCC) snapshot() ([]resolver.State, []error) {
	f.mu.Lock()
	defer f.mu.Unlock()

	return append([]resolver.State(nil), f.states...), append([]error(nil), f.errs...)
}

// testPKI is a throwaway CA and a server certificate it signed.
type testPKI struct {
	caFile    string
	serverTLS *tls.Config
}

// newTestPKI makes a CA, writes its certificate to a file and issues a
// server certificate for dnsName (and no IP address).
func newTestPKI(t *testing.T, dnsName string) testPKI {
	t.Helper()

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate ca key: %v", err)
	}

	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "gatehouse test ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}

	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatalf("create ca certificate: %v", err)
	}

	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatalf("parse ca certificate: %v", err)
	}

	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate server key: %v", err)
	}

	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: dnsName},
		DNSNames:     []string{dnsName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}

	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert,
		&leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatalf("create server certificate: %v", err)
	}

	caFile := filepath.Join(t.TempDir(), "ca.pem")
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})

	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatalf("write %s: %v", caFile, err)
	}

	cert := tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}

	return testPKI{
		caFile: caFile,
		serverTLS: &tls.Config{
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS12,
		},
	}
}
