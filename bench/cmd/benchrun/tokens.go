package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/devissuer"
)

// tokenTTL outlives the longest run.
const tokenTTL = 6 * time.Hour

// tokenFiles are the token sets of a run, one token a line.
type tokenFiles struct {
	hotES256 string
	hotRS256 string
	// pool holds distinct tokens, ES256 and RS256 alternately, fewer than
	// the verifier's cache holds.
	pool string
	// beyond holds more distinct ES256 tokens than the verifier's cache
	// holds, so each is verified in full every time.
	beyond string
	// es256PEM and rs256PEM are the issuer's public keys, for HAProxy.
	es256PEM string
	rs256PEM string
}

// mintTokens loads the issuer's key file (waiting for the issuer to create
// it) and writes the token sets and public keys into dir.
func mintTokens(keyFile, issuer, dir string, poolSize, beyondSize int) (tokenFiles, error) {
	ring, err := waitKeyRing(keyFile, 15*time.Second)
	if err != nil {
		return tokenFiles{}, err
	}

	t := tokenFiles{
		hotES256: filepath.Join(dir, "tokens-hot-es256.txt"),
		hotRS256: filepath.Join(dir, "tokens-hot-rs256.txt"),
		pool:     filepath.Join(dir, "tokens-pool.txt"),
		beyond:   filepath.Join(dir, "tokens-beyond-cache.txt"),
		es256PEM: filepath.Join(dir, "issuer-es256.pem"),
		rs256PEM: filepath.Join(dir, "issuer-rs256.pem"),
	}

	sets := []struct {
		path string
		n    int
		alg  func(i int) string
		sub  string
	}{
		{t.hotES256, 1, func(int) string { return devissuer.ES256 }, "bench-hot-es"},
		{t.hotRS256, 1, func(int) string { return devissuer.RS256 }, "bench-hot-rs"},
		{t.pool, poolSize, alternate, "bench-pool"},
		{t.beyond, beyondSize, func(int) string { return devissuer.ES256 }, "bench-beyond"},
	}
	for _, s := range sets {
		if err := writeTokens(ring, issuer, s.path, s.n, s.alg, s.sub); err != nil {
			return tokenFiles{}, err
		}
	}

	if err := writePublicKeys(ring, t); err != nil {
		return tokenFiles{}, err
	}

	return t, nil
}

func alternate(i int) string {
	if i%2 == 0 {
		return devissuer.ES256
	}

	return devissuer.RS256
}

func waitKeyRing(path string, timeout time.Duration) (*devissuer.KeyRing, error) {
	deadline := time.Now().Add(timeout)
	for {
		ring, err := devissuer.LoadKeyRing(path)
		if err == nil {
			return ring, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("issuer keys: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// writeTokens mints n tokens with distinct subjects prefix-0, prefix-1, …
// and the scopes every API route needs.
func writeTokens(
	ring *devissuer.KeyRing,
	issuer, path string,
	n int,
	alg func(int) string,
	prefix string,
) error {
	now := time.Now()
	var b strings.Builder
	for i := range n {
		sub := prefix
		if n > 1 {
			sub = fmt.Sprintf("%s-%05d", prefix, i)
		}

		token, err := ring.Mint(alg(i), devissuer.TokenClaims{
			Issuer:   issuer,
			Subject:  sub,
			Audience: []string{"gatehouse"},
			ClientID: "bench",
			Scopes:   []string{"orders.read", "orders.write"},
			IssuedAt: now.Add(-time.Minute),
			Expiry:   now.Add(tokenTTL),
		})
		if err != nil {
			return err
		}
		b.WriteString(token)
		b.WriteByte('\n')
	}

	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("write tokens: %w", err)
	}

	return nil
}

// writePublicKeys writes the active ES256 and RS256 public keys as PEM.
func writePublicKeys(ring *devissuer.KeyRing, t tokenFiles) error {
	paths := map[string]string{devissuer.ES256: t.es256PEM, devissuer.RS256: t.rs256PEM}
	for alg, path := range paths {
		kid := ring.KeyID(alg)

		var der []byte
		for _, k := range ring.JWKS(time.Now()).Keys {
			if k.KeyID != kid {
				continue
			}

			var err error
			if der, err = x509.MarshalPKIXPublicKey(k.Key); err != nil {
				return fmt.Errorf("encode %s public key: %w", alg, err)
			}
		}
		if der == nil {
			return errors.New("no published key for " + alg)
		}

		data := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return fmt.Errorf("write %s public key: %w", alg, err)
		}
	}

	return nil
}
