// Package pki is Gatehouse's development public key infrastructure: an
// ECDSA P-256 certificate authority per trust domain and short-lived leaf
// certificates that carry a workload identity (see package identity).
//
// Every leaf is good for both ends of mutual TLS (serverAuth and clientAuth)
// and carries two SANs: the URI spiffe://<trust-domain>/svc/<name>, which is
// what Gatehouse authorizes on, and the DNS name <name>.svc.<trust-domain>,
// which TLS clients that verify host names (Consul's health checker) need.
//
// Keys are written with mode 0600, certificates with 0644, each file through
// a temporary file and a rename, so a reader never sees half a file.
//
// Limitation: this is a development PKI. The CA key is a file next to the
// certificates it signs, nothing renews a leaf by itself, and there is no
// revocation; short leaf lifetimes (24 h) are the only bound on a stolen key.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"time"

	"github.com/gatehouse-dev/gatehouse/identity"
)

const (
	// DefaultLeafTTL is the lifetime of a leaf certificate.
	DefaultLeafTTL = 24 * time.Hour

	// DefaultCATTL is the lifetime of a CA certificate.
	DefaultCATTL = 90 * 24 * time.Hour

	// backdate is subtracted from "now" for NotBefore, so that a peer whose
	// clock is slightly behind still accepts a certificate issued just now.
	backdate = time.Minute
)

// ErrInvalidOptions marks options that cannot produce a certificate.
var ErrInvalidOptions = errors.New("invalid certificate options")

// Option configures NewCA or CA.Issue.
type Option func(*options)

type options struct {
	ttl       time.Duration
	notBefore time.Time
	notAfter  time.Time
	now       func() time.Time
}

// WithTTL sets the lifetime counted from now. The defaults are DefaultCATTL
// and DefaultLeafTTL.
func WithTTL(d time.Duration) Option {
	return func(o *options) { o.ttl = d }
}

// WithValidity sets the validity window exactly, overriding WithTTL. Tests
// use it for expired and not-yet-valid certificates.
func WithValidity(notBefore, notAfter time.Time) Option {
	return func(o *options) {
		o.notBefore = notBefore
		o.notAfter = notAfter
	}
}

// validity returns the window the options describe.
func (o options) validity() (time.Time, time.Time, error) {
	if !o.notBefore.IsZero() || !o.notAfter.IsZero() {
		if !o.notAfter.After(o.notBefore) {
			return time.Time{}, time.Time{}, fmt.Errorf("%w: not after %v is not after not before %v",
				ErrInvalidOptions, o.notAfter, o.notBefore)
		}

		return o.notBefore, o.notAfter, nil
	}

	if o.ttl <= 0 {
		return time.Time{}, time.Time{}, fmt.Errorf("%w: ttl %v must be positive",
			ErrInvalidOptions, o.ttl)
	}

	now := o.now()

	return now.Add(-backdate), now.Add(o.ttl), nil
}

func newOptions(ttl time.Duration, opts []Option) options {
	o := options{ttl: ttl, now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}

	return o
}

// CA is a certificate authority for one trust domain. It is safe for
// concurrent use; its fields must not be changed.
type CA struct {
	// Cert is the CA certificate.
	Cert *x509.Certificate
	// Key is the CA's private key.
	Key *ecdsa.PrivateKey
	// TrustDomain is the trust domain the CA was created for; its
	// certificate carries it as the URI SAN spiffe://<trust-domain>.
	TrustDomain string
}

// NewCA creates a self-signed ECDSA P-256 CA for trustDomain, valid for
// DefaultCATTL unless an option says otherwise. It may only sign leaves
// (path length zero).
func NewCA(trustDomain string, opts ...Option) (*CA, error) {
	if err := identity.ValidateTrustDomain(trustDomain); err != nil {
		return nil, fmt.Errorf("new ca: %w", err)
	}

	notBefore, notAfter, err := newOptions(DefaultCATTL, opts).validity()
	if err != nil {
		return nil, fmt.Errorf("new ca for %q: %w", trustDomain, err)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("new ca for %q: generate key: %w", trustDomain, err)
	}

	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("new ca for %q: %w", trustDomain, err)
	}

	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization: []string{"Gatehouse"},
			CommonName:   "Gatehouse CA " + trustDomain,
		},
		URIs:                  []*url.URL{{Scheme: identity.Scheme, Host: trustDomain}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}

	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("new ca for %q: create certificate: %w", trustDomain, err)
	}

	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("new ca for %q: parse certificate: %w", trustDomain, err)
	}

	return &CA{Cert: cert, Key: key, TrustDomain: trustDomain}, nil
}

// Leaf is a workload's certificate and private key.
type Leaf struct {
	// Cert is the leaf certificate.
	Cert *x509.Certificate
	// Key is its private key.
	Key *ecdsa.PrivateKey
	// ID is the identity the certificate carries.
	ID identity.ID
}

// Issue creates a key and a leaf certificate for id, signed by ca and valid
// for DefaultLeafTTL unless an option says otherwise. The leaf never
// outlives the CA: its NotAfter is capped at the CA's. id may belong to
// another trust domain than the CA's; verifiers check the trust domain.
func (ca *CA) Issue(id identity.ID, opts ...Option) (*Leaf, error) {
	if id.IsZero() {
		return nil, fmt.Errorf("issue: %w: empty identity", identity.ErrInvalid)
	}

	notBefore, notAfter, err := newOptions(DefaultLeafTTL, opts).validity()
	if err != nil {
		return nil, fmt.Errorf("issue %s: %w", id, err)
	}

	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("issue %s: generate key: %w", id, err)
	}

	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("issue %s: %w", id, err)
	}

	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization: []string{"Gatehouse"},
			CommonName:   id.Service(),
		},
		URIs:                  []*url.URL{id.URL()},
		DNSNames:              []string{id.DNSName()},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{
			x509.ExtKeyUsageServerAuth,
			x509.ExtKeyUsageClientAuth,
		},
	}

	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("issue %s: create certificate: %w", id, err)
	}

	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("issue %s: parse certificate: %w", id, err)
	}

	return &Leaf{Cert: cert, Key: key, ID: id}, nil
}

// newSerial returns a random positive 127-bit serial number.
func newSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 127)

	n, err := rand.Int(rand.Reader, limit)
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}

	return n.Add(n, big.NewInt(1)), nil
}
