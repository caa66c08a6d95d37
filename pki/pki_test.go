package pki_test

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/identity"
	"github.com/gatehouse-dev/gatehouse/pki"
)

func mustID(t *testing.T, td, svc string) identity.ID {
	t.Helper()

	id, err := identity.New(td, svc)
	if err != nil {
		t.Fatal(err)
	}

	return id
}

func TestIssue(t *testing.T) {
	ca, err := pki.NewCA("gatehouse.local")
	if err != nil {
		t.Fatal(err)
	}

	leaf, err := ca.Issue(mustID(t, "gatehouse.local", "orders"))
	if err != nil {
		t.Fatal(err)
	}

	c := leaf.Cert
	if len(c.URIs) != 1 || c.URIs[0].String() != "spiffe://gatehouse.local/svc/orders" {
		t.Errorf("URIs = %v", c.URIs)
	}

	if !slices.Equal(c.DNSNames, []string{"orders.svc.gatehouse.local"}) {
		t.Errorf("DNSNames = %v", c.DNSNames)
	}

	if !slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageServerAuth) ||
		!slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		t.Errorf("ExtKeyUsage = %v, want server and client auth", c.ExtKeyUsage)
	}

	if c.IsCA {
		t.Errorf("leaf is a CA")
	}

	if life := time.Until(c.NotAfter); life < 23*time.Hour || life > pki.DefaultLeafTTL {
		t.Errorf("leaf lives %v from now, want about %v", life, pki.DefaultLeafTTL)
	}

	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)

	if _, err := c.Verify(x509.VerifyOptions{Roots: roots, DNSName: "orders.svc.gatehouse.local",
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("leaf does not verify against its CA: %v", err)
	}

	if ca.Cert.PublicKeyAlgorithm != x509.ECDSA || c.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("key algorithms %v/%v, want ECDSA", ca.Cert.PublicKeyAlgorithm,
			c.PublicKeyAlgorithm)
	}
}

func TestIssueOptions(t *testing.T) {
	ca, err := pki.NewCA("gatehouse.local", pki.WithTTL(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}

	id := mustID(t, "gatehouse.local", "orders")
	now := time.Now()

	tests := []struct {
		name    string
		opts    []pki.Option
		wantErr bool
		check   func(*x509.Certificate) error
	}{
		{name: "ttl", opts: []pki.Option{pki.WithTTL(time.Hour)}, check: func(c *x509.Certificate) error {
			if d := time.Until(c.NotAfter); d > time.Hour || d < 59*time.Minute {
				return fmt.Errorf("lives %v, want an hour", d)
			}
			return nil
		}},
		{name: "capped at the ca", opts: []pki.Option{pki.WithTTL(100 * time.Hour)},
			check: func(c *x509.Certificate) error {
				if !c.NotAfter.Equal(ca.Cert.NotAfter) {
					return fmt.Errorf("not after %v, want the ca's %v", c.NotAfter, ca.Cert.NotAfter)
				}
				return nil
			}},
		{name: "exact window", opts: []pki.Option{pki.WithValidity(now.Add(-2*time.Hour),
			now.Add(-time.Hour))}, check: func(c *x509.Certificate) error {
			if !c.NotAfter.Before(now) {
				return fmt.Errorf("not after %v, want expired", c.NotAfter)
			}
			return nil
		}},
		{name: "zero ttl", opts: []pki.Option{pki.WithTTL(0)}, wantErr: true},
		{name: "reversed window", opts: []pki.Option{pki.WithValidity(now, now.Add(-time.Hour))},
			wantErr: true},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaf, err := ca.Issue(id, tt.opts...)
			if tt.wantErr {
				if !errors.Is(err, pki.ErrInvalidOptions) {
					t.Fatalf("Issue = %v, want ErrInvalidOptions", err)
				}

				return
			}

			if err != nil {
				t.Fatal(err)
			}

			if err := tt.check(leaf.Cert); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestDirFilesAndModes(t *testing.T) {
	dir := pki.Dir(filepath.Join(t.TempDir(), "certs"))

	ca, err := dir.Init("gatehouse.local", false)
	if err != nil {
		t.Fatal(err)
	}

	if _, err := dir.Init("gatehouse.local", false); err == nil {
		t.Errorf("second Init without force succeeded; it would orphan every leaf")
	}

	leaf, err := dir.Issue("gatehouse.local", "catalog")
	if err != nil {
		t.Fatal(err)
	}

	if _, err := dir.Issue("gatehouse.local", "ca"); !errors.Is(err, pki.ErrReservedName) {
		t.Errorf("Issue(ca) = %v, want ErrReservedName", err)
	}

	for path, want := range map[string]os.FileMode{
		dir.CAKey(): 0o600, dir.Key("catalog"): 0o600,
		dir.CACert(): 0o644, dir.Cert("catalog"): 0o644,
	} {
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}

		if got := info.Mode().Perm(); got != want {
			t.Errorf("%s mode %v, want %v", path, got, want)
		}
	}

	loaded, err := pki.LoadLeaf(dir.Cert("catalog"), dir.Key("catalog"))
	if err != nil {
		t.Fatal(err)
	}

	if loaded.ID != leaf.ID || !loaded.Cert.Equal(leaf.Cert) || !loaded.Key.Equal(leaf.Key) {
		t.Errorf("loaded leaf differs from the issued one")
	}

	loadedCA, bundle, err := dir.LoadCA()
	if err != nil {
		t.Fatal(err)
	}

	if !loadedCA.Cert.Equal(ca.Cert) || loadedCA.TrustDomain != "gatehouse.local" || len(bundle) != 1 {
		t.Errorf("loaded ca %v trust domain %q bundle of %d", loadedCA.Cert.Subject,
			loadedCA.TrustDomain, len(bundle))
	}

	if _, err := pki.LoadLeaf(dir.Cert("catalog"), dir.CAKey()); err == nil {
		t.Errorf("LoadLeaf with another key succeeded")
	}
}

func TestEnsure(t *testing.T) {
	dir := pki.Dir(t.TempDir())
	services := []string{"catalog", "orders"}

	written, err := dir.Ensure("gatehouse.local", services)
	if err != nil {
		t.Fatal(err)
	}

	if len(written) != 6 {
		t.Fatalf("first Ensure wrote %v, want the ca and two leaves", written)
	}

	tests := []struct {
		name    string
		prepare func(t *testing.T)
		want    []string
	}{
		{name: "complete", prepare: func(*testing.T) {}, want: nil},
		{name: "missing leaf", prepare: func(t *testing.T) {
			if err := os.Remove(dir.Key("orders")); err != nil {
				t.Fatal(err)
			}
		}, want: []string{dir.Cert("orders"), dir.Key("orders")}},
		{name: "leaf near expiry", prepare: func(t *testing.T) {
			if _, err := dir.Issue("gatehouse.local", "catalog", pki.WithTTL(time.Hour)); err != nil {
				t.Fatal(err)
			}
		}, want: []string{dir.Cert("catalog"), dir.Key("catalog")}},
		{name: "leaf of another ca", prepare: func(t *testing.T) {
			other, err := pki.NewCA("gatehouse.local")
			if err != nil {
				t.Fatal(err)
			}

			leaf, err := other.Issue(mustID(t, "gatehouse.local", "orders"))
			if err != nil {
				t.Fatal(err)
			}

			if err := leaf.WriteFiles(dir.Cert("orders"), dir.Key("orders")); err != nil {
				t.Fatal(err)
			}
		}, want: []string{dir.Cert("orders"), dir.Key("orders")}},
		{name: "ca missing", prepare: func(t *testing.T) {
			if err := os.Remove(dir.CAKey()); err != nil {
				t.Fatal(err)
			}
		}, want: []string{dir.CACert(), dir.CAKey(), dir.Cert("catalog"), dir.Key("catalog"),
			dir.Cert("orders"), dir.Key("orders")}},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.prepare(t)

			got, err := dir.Ensure("gatehouse.local", services)
			if err != nil {
				t.Fatal(err)
			}

			if !slices.Equal(got, tt.want) {
				t.Errorf("Ensure wrote %v, want %v", got, tt.want)
			}
		})
	}

	if _, err := dir.Ensure("other.local", services); err == nil {
		t.Errorf("Ensure for another trust domain succeeded over the existing ca")
	}
}

func ExampleCA_Issue() {
	ca, err := pki.NewCA("gatehouse.local")
	if err != nil {
		panic(err)
	}

	id, err := identity.New("gatehouse.local", "orders")
	if err != nil {
		panic(err)
	}

	leaf, err := ca.Issue(id, pki.WithTTL(time.Hour))
	if err != nil {
		panic(err)
	}

	fmt.Println(leaf.Cert.URIs[0], leaf.Cert.DNSNames[0])
	// Output: spiffe://gatehouse.local/svc/orders orders.svc.gatehouse.local
}
