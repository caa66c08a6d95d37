package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gatehouse-dev/gatehouse/identity"
)

// DefaultDir is where `make run` and the gatehouse CLI keep the
// development PKI, relative to the repository root.
const DefaultDir = ".run/certs"

// caName is the base name of the CA files; no service may use it.
const caName = "ca"

// ErrReservedName marks a service name that would clash with the CA files.
var ErrReservedName = errors.New("service name is reserved")

// Dir is a directory laid out as the development PKI:
//
//	ca.pem            trusted CA certificates (the signing CA first)
//	ca-key.pem        the signing CA's key
//	<name>.pem        the leaf certificate of service <name>
//	<name>-key.pem    its key
type Dir string

// CACert returns the path of the CA bundle.
func (d Dir) CACert() string { return filepath.Join(string(d), caName+".pem") }

// CAKey returns the path of the signing CA's key.
func (d Dir) CAKey() string { return filepath.Join(string(d), caName+"-key.pem") }

// Cert returns the path of service's leaf certificate.
func (d Dir) Cert(service string) string { return filepath.Join(string(d), service+".pem") }

// Key returns the path of service's leaf key.
func (d Dir) Key(service string) string { return filepath.Join(string(d), service+"-key.pem") }

// CheckName refuses service names whose files would clash with the CA's.
func CheckName(service string) error {
	if service == caName {
		return fmt.Errorf("%w: %q names the CA files", ErrReservedName, service)
	}

	return identity.ValidateService(service)
}

// Init creates a new CA for trustDomain in d. It refuses to replace an
// existing CA unless force is set, since every leaf it signed would stop
// being trusted.
func (d Dir) Init(trustDomain string, force bool, opts ...Option) (*CA, error) {
	if !force {
		for _, f := range []string{d.CACert(), d.CAKey()} {
			if _, err := os.Stat(f); err == nil {
				return nil, fmt.Errorf("init ca in %q: %q exists (use force to replace it)",
					string(d), f)
			}
		}
	}

	ca, err := NewCA(trustDomain, opts...)
	if err != nil {
		return nil, err
	}

	if err := ca.WriteFiles(d.CACert(), d.CAKey()); err != nil {
		return nil, fmt.Errorf("init ca in %q: %w", string(d), err)
	}

	return ca, nil
}

// LoadCA loads the signing CA of d and the whole trusted bundle.
func (d Dir) LoadCA() (*CA, []*x509.Certificate, error) {
	return LoadCA(d.CACert(), d.CAKey())
}

// Issue issues a leaf for service in trustDomain with the CA of d and
// writes it to d.Cert(service) and d.Key(service).
func (d Dir) Issue(trustDomain, service string, opts ...Option) (*Leaf, error) {
	if err := CheckName(service); err != nil {
		return nil, fmt.Errorf("issue in %q: %w", string(d), err)
	}

	id, err := identity.New(trustDomain, service)
	if err != nil {
		return nil, fmt.Errorf("issue in %q: %w", string(d), err)
	}

	ca, _, err := d.LoadCA()
	if err != nil {
		return nil, fmt.Errorf("issue %s in %q: load ca: %w", id, string(d), err)
	}

	leaf, err := ca.Issue(id, opts...)
	if err != nil {
		return nil, err
	}

	if err := leaf.WriteFiles(d.Cert(service), d.Key(service)); err != nil {
		return nil, fmt.Errorf("issue in %q: %w", string(d), err)
	}

	return leaf, nil
}

// Ensure makes d hold what a local stack needs and creates only what is
// missing or no longer usable: a CA for trustDomain (replaced when absent,
// unreadable or expiring within DefaultLeafTTL, which also replaces every
// leaf), and for each service a leaf signed by that CA carrying its identity
// with at least a third of DefaultLeafTTL left. A CA for another trust
// domain is an error rather than something to overwrite. It returns the
// files it wrote.
func (d Dir) Ensure(trustDomain string, services []string) ([]string, error) {
	for _, s := range services {
		if err := CheckName(s); err != nil {
			return nil, fmt.Errorf("ensure pki in %q: %w", string(d), err)
		}
	}

	var written []string

	ca, bundle, err := d.LoadCA()
	if err == nil && ca.TrustDomain != trustDomain {
		return nil, fmt.Errorf("ensure pki in %q: its ca is for trust domain %q, not %q; "+
			"remove the directory or use that trust domain", string(d), ca.TrustDomain, trustDomain)
	}

	if err != nil || time.Until(ca.Cert.NotAfter) < DefaultLeafTTL {
		ca, err = d.Init(trustDomain, true)
		if err != nil {
			return nil, err
		}

		bundle = []*x509.Certificate{ca.Cert}
		written = append(written, d.CACert(), d.CAKey())
	}

	roots := x509.NewCertPool()
	for _, c := range bundle {
		roots.AddCert(c)
	}

	for _, s := range services {
		if d.leafUsable(trustDomain, s, ca, roots) {
			continue
		}

		if _, err := d.Issue(trustDomain, s); err != nil {
			return nil, err
		}

		written = append(written, d.Cert(s), d.Key(s))
	}

	return written, nil
}

// leafUsable reports whether the leaf of service in d is signed by ca,
// carries the identity of service in trustDomain and has a third of
// DefaultLeafTTL left.
func (d Dir) leafUsable(trustDomain, service string, ca *CA, roots *x509.CertPool) bool {
	leaf, err := LoadLeaf(d.Cert(service), d.Key(service))
	if err != nil {
		return false
	}

	want, err := identity.New(trustDomain, service)
	if err != nil || leaf.ID != want {
		return false
	}

	if time.Until(leaf.Cert.NotAfter) < DefaultLeafTTL/3 {
		return false
	}

	if err := leaf.Cert.CheckSignatureFrom(ca.Cert); err != nil {
		return false
	}

	_, err = leaf.Cert.Verify(x509.VerifyOptions{
		Roots:     roots,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})

	return err == nil
}
