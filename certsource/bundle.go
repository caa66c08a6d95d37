package certsource

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse-dev/gatehouse/identity"
	"github.com/gatehouse-dev/gatehouse/pki"
)

// ErrUnusable marks certificate material that parses but cannot be used:
// a key that does not match, a leaf the bundle does not trust, a leaf
// outside its validity window, or another identity than expected.
var ErrUnusable = errors.New("certificate material unusable")

// Bundle is one consistent set of TLS material: the workload's certificate
// and key, its identity, and the CAs it trusts. A Bundle never changes once
// built; a rotation produces a new one. It is safe for concurrent use.
type Bundle struct {
	// Certificate is the workload's certificate chain and key, Leaf set.
	Certificate *tls.Certificate
	// ID is the identity the leaf carries.
	ID identity.ID
	// Roots is the pool of trusted CAs, for both verifying peers' client
	// certificates and servers' certificates.
	Roots *x509.CertPool
	// CAs are the trusted CA certificates, in file order.
	CAs []*x509.Certificate
}

// Leaf returns the workload's leaf certificate.
func (b *Bundle) Leaf() *x509.Certificate { return b.Certificate.Leaf }

// ParseBundle builds a Bundle from PEM data: the leaf (optionally followed
// by intermediates), its PKCS #8 key, and the trusted CA certificates. It
// checks at now that the key matches, that the leaf carries an identity and
// is within its validity window, and that the CAs trust it; anything else
// gives an error wrapping ErrUnusable or a parse error.
func ParseBundle(certPEM, keyPEM, caPEM []byte, now time.Time) (*Bundle, error) {
	chain, err := pki.ParseCerts(certPEM)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}

	key, err := pki.ParseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}

	cas, err := pki.ParseCerts(caPEM)
	if err != nil {
		return nil, fmt.Errorf("ca bundle: %w", err)
	}

	leaf := chain[0]
	if !key.PublicKey.Equal(leaf.PublicKey) {
		return nil, fmt.Errorf("%w: key does not match the certificate", ErrUnusable)
	}

	id, err := identity.FromCertificate(leaf)
	if err != nil {
		return nil, fmt.Errorf("%w: certificate: %w", ErrUnusable, err)
	}

	roots := x509.NewCertPool()
	for _, ca := range cas {
		if !ca.IsCA {
			return nil, fmt.Errorf("%w: ca bundle holds %q, which is not a ca",
				ErrUnusable, ca.Subject.CommonName)
		}

		roots.AddCert(ca)
	}

	intermediates := x509.NewCertPool()
	for _, c := range chain[1:] {
		intermediates.AddCert(c)
	}

	// Verify also checks the validity window at now.
	_, err = leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediates,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: certificate of %s is not trusted by the ca bundle: %w",
			ErrUnusable, id, err)
	}

	raw := make([][]byte, 0, len(chain))
	for _, c := range chain {
		raw = append(raw, c.Raw)
	}

	return &Bundle{
		Certificate: &tls.Certificate{Certificate: raw, PrivateKey: key, Leaf: leaf},
		ID:          id,
		Roots:       roots,
		CAs:         cas,
	}, nil
}
