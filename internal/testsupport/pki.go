package testsupport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/certsource"
	"github.com/gatehouse-dev/gatehouse/identity"
	"github.com/gatehouse-dev/gatehouse/pki"
)

// TestPKI is a development PKI in a temporary directory: a CA of the
// default trust domain whose files are in Dir, for tests that need real
// certificates and real handshakes.
type TestPKI struct {
	// Dir holds ca.pem, ca-key.pem and the leaves written by Issue.
	Dir pki.Dir
	// CA is the signing CA.
	CA *pki.CA
}

// NewTestPKI creates a CA for identity.DefaultTrustDomain in a new
// temporary directory.
func NewTestPKI(t testing.TB) *TestPKI {
	t.Helper()

	dir := pki.Dir(t.TempDir())

	ca, err := dir.Init(identity.DefaultTrustDomain, false)
	if err != nil {
		t.Fatalf("create test ca: %v", err)
	}

	return &TestPKI{Dir: dir, CA: ca}
}

// ID returns the identity of service in the default trust domain.
func ID(t testing.TB, service string) identity.ID {
	t.Helper()

	id, err := identity.New(identity.DefaultTrustDomain, service)
	if err != nil {
		t.Fatalf("identity of %q: %v", service, err)
	}

	return id
}

// Leaf issues a leaf for id with the CA, without writing it anywhere.
func (p *TestPKI) Leaf(t testing.TB, id identity.ID, opts ...pki.Option) *pki.Leaf {
	t.Helper()

	leaf, err := p.CA.Issue(id, opts...)
	if err != nil {
		t.Fatalf("issue %s: %v", id, err)
	}

	return leaf
}

// Issue issues a leaf for service in the default trust domain and writes it
// to Dir.Cert(service) and Dir.Key(service).
func (p *TestPKI) Issue(t testing.TB, service string, opts ...pki.Option) *pki.Leaf {
	t.Helper()

	leaf := p.Leaf(t, ID(t, service), opts...)
	if err := leaf.WriteFiles(p.Dir.Cert(service), p.Dir.Key(service)); err != nil {
		t.Fatalf("write leaf of %s: %v", service, err)
	}

	return leaf
}

// Files returns the files of service in Dir.
func (p *TestPKI) Files(service string) certsource.Files {
	return certsource.Files{Cert: p.Dir.Cert(service), Key: p.Dir.Key(service), CA: p.Dir.CACert()}
}

// Source starts a certificate source on the files of service (write them
// with Issue first), waits until it is ready and closes it at cleanup.
func (p *TestPKI) Source(
	t testing.TB,
	service string,
	opts ...certsource.Option,
) *certsource.Source {
	t.Helper()

	src, err := certsource.New(p.Files(service), opts...)
	if err != nil {
		t.Fatalf("certificate source of %s: %v", service, err)
	}

	t.Cleanup(func() { _ = src.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if err := src.WaitReady(ctx); err != nil {
		t.Fatalf("certificate source of %s: %v", service, err)
	}

	return src
}

// Bundle is a fixed certsource.Bundle of leaf and the given CAs (the test
// CA when none are given), bypassing ParseBundle's checks so that tests can
// build expired or untrusted material on purpose.
func (p *TestPKI) Bundle(leaf *pki.Leaf, cas ...*x509.Certificate) *certsource.Bundle {
	if len(cas) == 0 {
		cas = []*x509.Certificate{p.CA.Cert}
	}

	roots := x509.NewCertPool()
	for _, c := range cas {
		roots.AddCert(c)
	}

	return &certsource.Bundle{
		Certificate: TLSCertificate(leaf),
		ID:          leaf.ID,
		Roots:       roots,
		CAs:         cas,
	}
}

// TLSCertificate returns leaf as a tls.Certificate.
func TLSCertificate(leaf *pki.Leaf) *tls.Certificate {
	return &tls.Certificate{
		Certificate: [][]byte{leaf.Cert.Raw},
		PrivateKey:  leaf.Key,
		Leaf:        leaf.Cert,
	}
}

// StaticSource is an mtls.Source that always returns the same bundle (nil
// for one that never becomes ready).
type StaticSource struct {
	// B is the bundle returned by Bundle.
	B *certsource.Bundle
}

// Bundle returns B.
func (s StaticSource) Bundle() *certsource.Bundle { return s.B }
