// Package certflags gives every Gatehouse binary the same flags for its
// mutual TLS material (where its certificate, key and CA bundle are, which
// trust domain it lives in) and, for services, for caller authorization.
// Only binaries (cmd/) use it. There is deliberately no flag that turns TLS
// or its verification off.
package certflags

import (
	"flag"
	"fmt"
	"os"

	"go.uber.org/zap"

	"github.com/gatehouse-dev/gatehouse/certsource"
	"github.com/gatehouse-dev/gatehouse/identity"
	"github.com/gatehouse-dev/gatehouse/pki"
)

// Flags are the TLS settings of a binary.
type Flags struct {
	// Dir holds the files in the layout of pki.Dir.
	Dir string
	// Cert, Key and CA override single files of Dir when set.
	Cert, Key, CA string
	// TrustDomain is the binary's trust domain and that of its peers.
	TrustDomain string
}

// Register adds -cert-dir, -cert, -key, -ca and -trust-domain to fs.
// Defaults come from GATEHOUSE_CERT_DIR and GATEHOUSE_TRUST_DOMAIN, then
// pki.DefaultDir and identity.DefaultTrustDomain.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.Dir, "cert-dir", envOr("GATEHOUSE_CERT_DIR", pki.DefaultDir),
		"folder with ca.pem and <service>.pem / <service>-key.pem (env GATEHOUSE_CERT_DIR)")
	fs.StringVar(&f.Cert, "cert", "", "certificate file (default <cert-dir>/<service>.pem)")
	fs.StringVar(&f.Key, "key", "", "private key file (default <cert-dir>/<service>-key.pem)")
	fs.StringVar(&f.CA, "ca", "", "trusted CA bundle file (default <cert-dir>/ca.pem)")
	fs.StringVar(&f.TrustDomain, "trust-domain",
		envOr("GATEHOUSE_TRUST_DOMAIN", identity.DefaultTrustDomain),
		"trust domain of this service and its peers (env GATEHOUSE_TRUST_DOMAIN)")
}

// Files returns the files of service.
func (f *Flags) Files(service string) certsource.Files {
	dir := pki.Dir(f.Dir)
	files := certsource.Files{Cert: dir.Cert(service), Key: dir.Key(service), CA: dir.CACert()}

	if f.Cert != "" {
		files.Cert = f.Cert
	}

	if f.Key != "" {
		files.Key = f.Key
	}

	if f.CA != "" {
		files.CA = f.CA
	}

	return files
}

// ID returns the identity of service in the configured trust domain.
func (f *Flags) ID(service string) (identity.ID, error) {
	id, err := identity.New(f.TrustDomain, service)
	if err != nil {
		return identity.ID{}, fmt.Errorf("identity of %q: %w", service, err)
	}

	return id, nil
}

// Source starts the certificate source of service, which accepts only a
// certificate carrying service's identity. The caller closes it.
func (f *Flags) Source(service string, logger *zap.Logger) (*certsource.Source, error) {
	id, err := f.ID(service)
	if err != nil {
		return nil, err
	}

	src, err := certsource.New(f.Files(service), certsource.WithLogger(logger),
		certsource.WithExpectedID(id))
	if err != nil {
		return nil, fmt.Errorf("certificates of %s: %w", service, err)
	}

	return src, nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}

	return def
}
