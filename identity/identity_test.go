package identity_test

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"testing"

	"github.com/gatehouse-dev/gatehouse/identity"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantTD  string
		wantSvc string
		wantErr bool
	}{
		{name: "service", in: "spiffe://gatehouse.local/svc/catalog",
			wantTD: "gatehouse.local", wantSvc: "catalog"},
		{name: "single label trust domain", in: "spiffe://prod/svc/orders-v2",
			wantTD: "prod", wantSvc: "orders-v2"},
		{name: "other scheme", in: "https://gatehouse.local/svc/catalog", wantErr: true},
		{name: "no path", in: "spiffe://gatehouse.local", wantErr: true},
		{name: "other path", in: "spiffe://gatehouse.local/ns/catalog", wantErr: true},
		{name: "nested path", in: "spiffe://gatehouse.local/svc/a/b", wantErr: true},
		{name: "port", in: "spiffe://gatehouse.local:443/svc/catalog", wantErr: true},
		{name: "user info", in: "spiffe://u@gatehouse.local/svc/catalog", wantErr: true},
		{name: "query", in: "spiffe://gatehouse.local/svc/catalog?x=1", wantErr: true},
		{name: "fragment", in: "spiffe://gatehouse.local/svc/catalog#x", wantErr: true},
		{name: "uppercase service", in: "spiffe://gatehouse.local/svc/Catalog", wantErr: true},
		{name: "uppercase trust domain", in: "spiffe://Gatehouse.local/svc/catalog", wantErr: true},
		{name: "empty service", in: "spiffe://gatehouse.local/svc/", wantErr: true},
		{name: "empty", in: "", wantErr: true},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := identity.Parse(tt.in)
			if tt.wantErr {
				if !errors.Is(err, identity.ErrInvalid) {
					t.Fatalf("Parse(%q) = %v, %v; want ErrInvalid", tt.in, id, err)
				}

				return
			}

			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}

			if id.TrustDomain() != tt.wantTD || id.Service() != tt.wantSvc {
				t.Errorf("Parse(%q) = %q/%q, want %q/%q", tt.in, id.TrustDomain(), id.Service(),
					tt.wantTD, tt.wantSvc)
			}

			if id.String() != tt.in {
				t.Errorf("String() = %q, want %q", id.String(), tt.in)
			}
		})
	}
}

func TestFromCertificate(t *testing.T) {
	u := func(s string) *url.URL {
		parsed, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}

		return parsed
	}

	tests := []struct {
		name    string
		uris    []*url.URL
		want    string
		wantErr error
	}{
		{name: "one identity", uris: []*url.URL{u("spiffe://gatehouse.local/svc/orders")},
			want: "spiffe://gatehouse.local/svc/orders"},
		{name: "none", wantErr: identity.ErrNoIdentity},
		{name: "two", uris: []*url.URL{u("spiffe://a/svc/x"), u("spiffe://a/svc/y")},
			wantErr: identity.ErrInvalid},
		{name: "not an identity", uris: []*url.URL{u("https://example.invalid/")},
			wantErr: identity.ErrInvalid},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := identity.FromCertificate(&x509.Certificate{URIs: tt.uris})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("FromCertificate = %v, %v; want %v", id, err, tt.wantErr)
				}

				return
			}

			if err != nil || id.String() != tt.want {
				t.Fatalf("FromCertificate = %v, %v; want %s", id, err, tt.want)
			}
		})
	}
}

func TestNewAndNames(t *testing.T) {
	id, err := identity.New("gatehouse.local", "catalog")
	if err != nil {
		t.Fatal(err)
	}

	if got, want := id.DNSName(), "catalog.svc.gatehouse.local"; got != want {
		t.Errorf("DNSName() = %q, want %q", got, want)
	}

	if got, want := id.URL().String(), "spiffe://gatehouse.local/svc/catalog"; got != want {
		t.Errorf("URL() = %q, want %q", got, want)
	}

	if id.IsZero() || !(identity.ID{}).IsZero() {
		t.Errorf("IsZero wrong: %v for %s, %v for the zero ID", id.IsZero(), id,
			(identity.ID{}).IsZero())
	}

	for _, bad := range [][2]string{{"", "catalog"}, {"gatehouse.local", ""},
		{"bad_domain", "catalog"}, {"gatehouse.local", "-catalog"}} {
		if _, err := identity.New(bad[0], bad[1]); !errors.Is(err, identity.ErrInvalid) {
			t.Errorf("New(%q, %q) error = %v, want ErrInvalid", bad[0], bad[1], err)
		}
	}
}

func ExampleParse() {
	id, err := identity.Parse("spiffe://gatehouse.local/svc/orders")
	if err != nil {
		panic(err)
	}

	fmt.Println(id.Service(), id.TrustDomain(), id.DNSName())
	// Output: orders gatehouse.local orders.svc.gatehouse.local
}
