package certflags_test

import (
	"flag"
	"slices"
	"testing"

	"github.com/gatehouse-dev/gatehouse/certsource"
	"github.com/gatehouse-dev/gatehouse/internal/certflags"
)

func TestFlags(t *testing.T) {
	t.Setenv("GATEHOUSE_TRUST_DOMAIN", "")
	t.Setenv("GATEHOUSE_CERT_DIR", "")

	tests := []struct {
		name      string
		args      []string
		files     certsource.Files
		id        string
		known     []string
		reflect   []string
		dryRun    bool
		wantIDErr bool
	}{
		{
			name:  "cert dir",
			args:  []string{"-cert-dir", "/pki"},
			files: certsource.Files{Cert: "/pki/orders.pem", Key: "/pki/orders-key.pem", CA: "/pki/ca.pem"},
			id:    "spiffe://gatehouse.local/svc/orders",
			known: []string{"gateway", "orders", "catalog", "consul"},
		},
		{
			name: "single files and trust domain",
			args: []string{"-cert-dir", "/pki", "-key", "/secret/k.pem", "-ca", "/trust/ca.pem",
				"-trust-domain", "prod.example", "-known-services", "a, b",
				"-reflection-callers", "a", "-auth-dry-run"},
			files:   certsource.Files{Cert: "/pki/orders.pem", Key: "/secret/k.pem", CA: "/trust/ca.pem"},
			id:      "spiffe://prod.example/svc/orders",
			known:   []string{"a", "b"},
			reflect: []string{"a"},
			dryRun:  true,
		},
		{
			name:      "bad trust domain",
			args:      []string{"-trust-domain", "Not Valid"},
			wantIDErr: true,
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("test", flag.ContinueOnError)

			var (
				f certflags.Flags
				a certflags.Auth
			)

			f.Register(fs)
			a.Register(fs)

			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}

			id, err := f.ID("orders")
			if tt.wantIDErr {
				if err == nil {
					t.Fatalf("ID succeeded with %v", tt.args)
				}

				return
			}

			if err != nil || id.String() != tt.id {
				t.Errorf("ID = %v, %v; want %s", id, err, tt.id)
			}

			if got := f.Files("orders"); got != tt.files {
				t.Errorf("Files = %+v, want %+v", got, tt.files)
			}

			if !slices.Equal(a.KnownServices, tt.known) || !slices.Equal(a.ReflectionCallers, tt.reflect) ||
				a.DryRun != tt.dryRun {
				t.Errorf("auth = %+v", a)
			}
		})
	}
}
