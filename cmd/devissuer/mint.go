package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/devissuer"
)

func mint(args []string) error {
	fs := flag.NewFlagSet("mint", flag.ContinueOnError)
	var (
		claims   listFlag
		keyFile  = fs.String("keys", defaultKeyFile, "key file of serve (created 0600 when missing)")
		issuer   = fs.String("iss", "http://127.0.0.1:8081", "iss claim")
		subject  = fs.String("sub", "dev-user", "sub claim")
		clientID = fs.String("client-id", "devissuer-cli", "client_id claim")
		scope    = fs.String("scope", "", "space-separated scopes")
		roles    = fs.String("roles", "", "comma-separated roles")
		audience = fs.String("aud", "gatehouse", "aud claim (comma-separated for several)")
		ttl      = fs.Duration("ttl", devissuer.DefaultTokenTTL,
			"lifetime; negative mints an already expired token")
		alg = fs.String("alg", devissuer.ES256, "signing algorithm: ES256 or RS256")
	)
	fs.Var(&claims, "claim", "extra string claim k=v (repeatable)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *ttl == 0 {
		return fmt.Errorf("-ttl %v: want a non-zero duration", *ttl)
	}

	extra, err := parseClaims(claims)
	if err != nil {
		return err
	}

	keys, created, err := devissuer.LoadOrCreateKeyRing(*keyFile)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(os.Stderr, "devissuer: created key file %s; serve publishes its keys\n",
			*keyFile)
	}

	now := time.Now()
	token, err := keys.Mint(*alg, devissuer.TokenClaims{
		Issuer:   *issuer,
		Subject:  *subject,
		Audience: splitList(*audience),
		ClientID: *clientID,
		Scopes:   strings.Fields(*scope),
		Roles:    splitList(*roles),
		Extra:    extra,
		IssuedAt: now,
		Expiry:   now.Add(*ttl),
	})
	if err != nil {
		return err
	}

	fmt.Println(token)

	return nil
}

// parseClaims reads k=v pairs; values stay strings.
func parseClaims(pairs []string) (map[string]any, error) {
	out := make(map[string]any, len(pairs))
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("-claim %q: want name=value", p)
		}
		out[k] = v
	}

	return out, nil
}
