package jwtauth_test

import (
	"context"
	"testing"

	"github.com/gatehouse-dev/gatehouse/jwtauth"
)

func TestPrincipalName(t *testing.T) {
	tests := []struct {
		name string
		p    *jwtauth.Principal
		want string
	}{
		{"subject wins", &jwtauth.Principal{Subject: "alice", ClientID: "app"}, "alice"},
		{"client id without subject", &jwtauth.Principal{ClientID: "app"}, "app"},
		{"nil principal", nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.Name(); got != tc.want {
				t.Fatalf("Name() = %q, want %q", got, tc.want)
			}
		})
	}

	ctx := jwtauth.WithPrincipal(context.Background(), &jwtauth.Principal{Subject: "bob"})
	if got := jwtauth.NameFrom(ctx); got != "bob" {
		t.Fatalf("NameFrom = %q, want bob", got)
	}
	if got := jwtauth.NameFrom(context.Background()); got != "" {
		t.Fatalf("NameFrom without a principal = %q, want empty", got)
	}
}
