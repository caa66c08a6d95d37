package testsupport_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/testsupport"
)

func TestRepoRoot(t *testing.T) {
	root, err := testsupport.RepoRoot()
	if err != nil {
		t.Fatalf("RepoRoot: %v", err)
	}

	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Errorf("RepoRoot() = %q, which has no go.mod: %v", root, err)
	}

	if _, err := os.Stat(filepath.Join(root, "internal", "testsupport")); err != nil {
		t.Errorf("RepoRoot() = %q, which does not hold internal/testsupport: %v", root, err)
	}
}

func TestConsulBin(t *testing.T) {
	present := filepath.Join(t.TempDir(), "consul")
	if err := os.WriteFile(present, []byte("#!/bin/sh\n"), 0o700); err != nil {
		t.Fatalf("write %s: %v", present, err)
	}

	tests := []struct {
		name    string
		env     string
		want    string // expected path, when no error
		wantErr string
	}{
		{name: "env points at a file", env: present, want: present},
		{name: "env points nowhere", env: present + "-missing", wantErr: "CONSUL_BIN"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(testsupport.ConsulBinEnv, tt.env)

			got, err := testsupport.ConsulBin()

			switch {
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("ConsulBin() = %q, %v; want error containing %q", got, err, tt.wantErr)
			case tt.wantErr == "" && (err != nil || got != tt.want):
				t.Fatalf("ConsulBin() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
