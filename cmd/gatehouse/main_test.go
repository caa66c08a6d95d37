package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/pki"
)

func TestCerts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")

	tests := []struct {
		name    string
		args    []string
		wantErr error // nil, errUsage, or any error (errAny)
		wantOut string
	}{
		{name: "no command", args: nil, wantErr: errUsage},
		{name: "unknown command", args: []string{"nope"}, wantErr: errUsage},
		{name: "unknown certs subcommand", args: []string{"certs", "nope"}, wantErr: errUsage},
		{name: "issue before init", args: []string{"certs", "issue", "-dir", dir, "catalog"},
			wantErr: errAny},
		{name: "init", args: []string{"certs", "init", "-dir", dir},
			wantOut: "created CA for trust domain gatehouse.local"},
		{name: "init again", args: []string{"certs", "init", "-dir", dir}, wantErr: errAny},
		{name: "issue with flags after the names",
			args:    []string{"certs", "issue", "catalog", "orders", "-dir", dir, "-ttl", "2h"},
			wantOut: "issued spiffe://gatehouse.local/svc/orders"},
		{name: "issue without name", args: []string{"certs", "issue", "-dir", dir},
			wantErr: errUsage},
		{name: "issue reserved name", args: []string{"certs", "issue", "-dir", dir, "ca"},
			wantErr: pki.ErrReservedName},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer

			err := run(tt.args, &stdout, &stderr)

			switch {
			case tt.wantErr == nil:
				if err != nil {
					t.Fatalf("run(%q): %v\n%s", tt.args, err, stderr.String())
				}
			case errors.Is(tt.wantErr, errAny):
				if err == nil {
					t.Fatalf("run(%q) succeeded, want an error", tt.args)
				}
			case !errors.Is(err, tt.wantErr):
				t.Fatalf("run(%q) = %v, want %v", tt.args, err, tt.wantErr)
			}

			if !strings.Contains(stdout.String(), tt.wantOut) {
				t.Errorf("output %q lacks %q", stdout.String(), tt.wantOut)
			}
		})
	}

	leaf, err := pki.LoadLeaf(pki.Dir(dir).Cert("orders"), pki.Dir(dir).Key("orders"))
	if err != nil {
		t.Fatal(err)
	}

	if life := time.Until(leaf.Cert.NotAfter); life > 2*time.Hour || life < time.Hour {
		t.Errorf("-ttl 2h gave a leaf living %v", life)
	}

	info, err := os.Stat(pki.Dir(dir).Key("catalog"))
	if err != nil {
		t.Fatal(err)
	}

	if info.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v, want 0600", info.Mode().Perm())
	}
}

// errAny stands for "some error" in the table above.
var errAny = errors.New("any error")
