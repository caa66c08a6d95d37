// Package identity names Gatehouse workloads. A workload's identity is a
// SPIFFE-style URI, spiffe://<trust-domain>/svc/<name>, carried as the only
// URI SAN of its certificate; the same certificate also carries the DNS name
// <name>.svc.<trust-domain>, which TLS clients such as Consul's health
// checker verify as a server name.
package identity

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// DefaultTrustDomain is the trust domain used when none is configured.
const DefaultTrustDomain = "gatehouse.local"

// Scheme is the URI scheme of every identity.
const Scheme = "spiffe"

// pathPrefix precedes the service name in an identity's URI path.
const pathPrefix = "/svc/"

var (
	// ErrInvalid marks an identity, trust domain or service name that does
	// not have the required shape.
	ErrInvalid = errors.New("invalid workload identity")

	// ErrNoIdentity marks a certificate that carries no identity at all.
	ErrNoIdentity = errors.New("certificate carries no workload identity")

	// serviceRE is a DNS label, so that <name>.svc.<trust-domain> is a valid
	// DNS name: lowercase letters, digits and inner hyphens, 1..63 long.
	serviceRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

	// trustDomainRE is one or more dot-separated DNS labels.
	trustDomainRE = regexp.MustCompile(
		`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)
)

// ID is the identity of one workload (a service). The zero value is not a
// valid identity; build one with New or Parse. IDs are comparable values.
type ID struct {
	trustDomain string
	service     string
}

// New returns the identity of service in trustDomain, or ErrInvalid when
// either is malformed.
func New(trustDomain, service string) (ID, error) {
	if err := ValidateTrustDomain(trustDomain); err != nil {
		return ID{}, err
	}

	if err := ValidateService(service); err != nil {
		return ID{}, err
	}

	return ID{trustDomain: trustDomain, service: service}, nil
}

// ValidateTrustDomain reports whether td is a usable trust domain: lowercase
// DNS labels separated by dots, at most 255 characters.
func ValidateTrustDomain(td string) error {
	if len(td) > 255 || !trustDomainRE.MatchString(td) {
		return fmt.Errorf("%w: trust domain %q must be lowercase DNS labels "+
			"(a-z, 0-9, inner '-') separated by dots", ErrInvalid, td)
	}

	return nil
}

// ValidateService reports whether name is a usable service name: one
// lowercase DNS label.
func ValidateService(name string) error {
	if !serviceRE.MatchString(name) {
		return fmt.Errorf("%w: service name %q must be one lowercase DNS label "+
			"(a-z, 0-9, inner '-', 1..63 characters)", ErrInvalid, name)
	}

	return nil
}

// Parse parses "spiffe://<trust-domain>/svc/<name>". Anything else (another
// scheme, a port, user info, a query, a fragment, another path) is refused
// with ErrInvalid.
func Parse(s string) (ID, error) {
	u, err := url.Parse(s)
	if err != nil {
		return ID{}, fmt.Errorf("%w: parse %q: %w", ErrInvalid, s, err)
	}

	return FromURL(u)
}

// FromURL is Parse for an already parsed URI, such as a certificate's SAN.
func FromURL(u *url.URL) (ID, error) {
	if u == nil {
		return ID{}, fmt.Errorf("%w: nil URI", ErrInvalid)
	}

	s := u.String()

	switch {
	case u.Scheme != Scheme:
		return ID{}, fmt.Errorf("%w: %q: scheme is not %q", ErrInvalid, s, Scheme)
	case u.User != nil || u.Port() != "" || u.Opaque != "":
		return ID{}, fmt.Errorf("%w: %q: user info, port or opaque part not allowed",
			ErrInvalid, s)
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return ID{}, fmt.Errorf("%w: %q: query or fragment not allowed", ErrInvalid, s)
	case !strings.HasPrefix(u.Path, pathPrefix):
		return ID{}, fmt.Errorf("%w: %q: path must be %s<name>", ErrInvalid, s, pathPrefix)
	}

	id, err := New(u.Host, strings.TrimPrefix(u.Path, pathPrefix))
	if err != nil {
		return ID{}, fmt.Errorf("%q: %w", s, err)
	}

	return id, nil
}

// FromCertificate returns the identity in cert: its only URI SAN. A
// certificate with no URI SAN gives ErrNoIdentity; one with several, or with
// one that is not an identity, gives ErrInvalid. It does not verify cert.
func FromCertificate(cert *x509.Certificate) (ID, error) {
	if cert == nil {
		return ID{}, ErrNoIdentity
	}

	switch len(cert.URIs) {
	case 0:
		return ID{}, ErrNoIdentity
	case 1:
		return FromURL(cert.URIs[0])
	default:
		return ID{}, fmt.Errorf("%w: certificate has %d URI SANs, want exactly one",
			ErrInvalid, len(cert.URIs))
	}
}

// TrustDomain returns the trust domain, e.g. "gatehouse.local".
func (id ID) TrustDomain() string { return id.trustDomain }

// Service returns the service name, e.g. "catalog".
func (id ID) Service() string { return id.service }

// IsZero reports whether id is the zero value, i.e. no identity.
func (id ID) IsZero() bool { return id == ID{} }

// String returns the URI form, spiffe://<trust-domain>/svc/<name>, or "" for
// the zero ID.
func (id ID) String() string {
	if id.IsZero() {
		return ""
	}

	return Scheme + "://" + id.trustDomain + pathPrefix + id.service
}

// URL returns the URI form as a URL, for a certificate's URIs field.
func (id ID) URL() *url.URL {
	return &url.URL{Scheme: Scheme, Host: id.trustDomain, Path: pathPrefix + id.service}
}

// DNSName returns <name>.svc.<trust-domain>, the DNS SAN that goes with the
// identity; TLS clients that check host names (Consul's health checker)
// verify the server against it.
func (id ID) DNSName() string {
	return id.service + ".svc." + id.trustDomain
}
