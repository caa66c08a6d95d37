package jwtauth_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gatehouse-dev/gatehouse/jwtauth"
)

// A verifier for one OpenID provider, started before the server reports
// ready and closed on shutdown.
func ExampleNew() {
	v, err := jwtauth.New([]jwtauth.IssuerConfig{{
		Issuer:     "https://127.0.0.1:8443/realms/gatehouse",
		Audiences:  []string{"gatehouse"},
		Algorithms: []string{jwtauth.ES256, jwtauth.RS256},
		Discovery:  true,
	}}, jwtauth.WithLeeway(30*time.Second), jwtauth.WithMaxStaleness(time.Hour))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = v.Close() }()

	// In a server: if err := v.Start(ctx); err != nil { refuse to start }
	fmt.Println(v.Ready() != nil)
	// Output: true
}

// Answering a refused request the RFC 6750 way.
func ExampleChallengeFor() {
	r, _ := http.NewRequest(http.MethodGet, "/v1/orders?access_token=abc", nil)

	_, err := jwtauth.BearerToken(r)
	c := jwtauth.ChallengeFor(err)

	fmt.Println(errors.Is(err, jwtauth.ErrTokenInQuery), c.Status)
	fmt.Println(c.Header("gatehouse"))
	// Output:
	// true 400
	// Bearer realm="gatehouse", error="invalid_request", error_description="access token not accepted in the query string"
}

// Handlers find the caller in their context.
func ExamplePrincipalFrom() {
	ctx := jwtauth.WithPrincipal(context.Background(),
		&jwtauth.Principal{Subject: "alice", Scopes: []string{"orders.read"}})

	if p, ok := jwtauth.PrincipalFrom(ctx); ok {
		fmt.Println(p.Subject, p.HasScope("orders.read"), p.HasScope("orders.write"))
	}
	// Output: alice true false
}
