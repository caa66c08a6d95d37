package jwtauth

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// Algorithm names accepted in IssuerConfig.Algorithms.
const (
	RS256 = string(jose.RS256)
	RS384 = string(jose.RS384)
	RS512 = string(jose.RS512)
	PS256 = string(jose.PS256)
	ES256 = string(jose.ES256)
	ES384 = string(jose.ES384)
	EdDSA = string(jose.EdDSA)
	HS256 = string(jose.HS256)
)

// asymmetricAlgorithms is the default allowlist: every public-key algorithm
// this package supports.
var asymmetricAlgorithms = []string{RS256, RS384, RS512, PS256, ES256, ES384, EdDSA}

// minHMACSecret is the shortest HS256 secret accepted: as long as the hash.
const minHMACSecret = 32

// IssuerConfig describes one token issuer: how to find its keys, which
// algorithms it may sign with and which audiences its tokens must name.
// Exactly one key source (Discovery, JWKSURL or JWKSFile) is needed unless
// the issuer signs with HS256 only.
type IssuerConfig struct {
	// Issuer is the exact iss value of the issuer's tokens, e.g.
	// "https://login.example.com/realm".
	Issuer string

	// Audiences accepted for this issuer: a token must name at least one.
	Audiences []string

	// Algorithms the issuer may sign with; empty means every asymmetric one
	// (RS256, RS384, RS512, PS256, ES256, ES384, EdDSA). HS256 must be named
	// explicitly and needs HMACSecret.
	Algorithms []string

	// Discovery finds the JWKS URL in the OpenID discovery document at
	// Issuer + "/.well-known/openid-configuration".
	Discovery bool
	// JWKSURL is fetched directly.
	JWKSURL string
	// JWKSFile is read from disk (and read again on every refresh).
	JWKSFile string

	// HMACSecret is the shared HS256 secret, at least 32 bytes.
	HMACSecret []byte

	// InsecureHTTP allows plain http:// URLs for hosts other than loopback.
	// Without it, discovery and JWKS URLs must be https:// or point at
	// 127.0.0.1, ::1 or localhost.
	InsecureHTTP bool
}

// Validate reports the first problem with c.
func (c *IssuerConfig) Validate() error {
	if c.Issuer == "" {
		return errors.New("issuer is empty")
	}
	if len(c.Audiences) == 0 || slices.Contains(c.Audiences, "") {
		return fmt.Errorf("issuer %q: audiences must be non-empty strings", c.Issuer)
	}

	for _, alg := range c.algorithms() {
		if alg != HS256 && !slices.Contains(asymmetricAlgorithms, alg) {
			return fmt.Errorf("issuer %q: algorithm %q is not supported", c.Issuer, alg)
		}
	}

	hmac := slices.Contains(c.Algorithms, HS256)
	switch {
	case hmac && len(c.HMACSecret) < minHMACSecret:
		return fmt.Errorf("issuer %q: HS256 needs an HMAC secret of at least %d bytes",
			c.Issuer, minHMACSecret)
	case !hmac && len(c.HMACSecret) > 0:
		return fmt.Errorf("issuer %q: HMAC secret given but HS256 is not allowed", c.Issuer)
	}

	return c.validateKeySource()
}

func (c *IssuerConfig) validateKeySource() error {
	sources := 0
	for _, set := range []bool{c.Discovery, c.JWKSURL != "", c.JWKSFile != ""} {
		if set {
			sources++
		}
	}

	if sources > 1 {
		return fmt.Errorf("issuer %q: set only one of Discovery, JWKSURL and JWKSFile", c.Issuer)
	}
	if sources == 0 && c.needsKeySource() {
		return fmt.Errorf("issuer %q: asymmetric algorithms need a key source", c.Issuer)
	}

	if c.Discovery {
		return c.checkURL(c.Issuer + wellKnownPath)
	}
	if c.JWKSURL != "" {
		return c.checkURL(c.JWKSURL)
	}

	return nil
}

// needsKeySource reports whether any allowed algorithm uses public keys.
func (c *IssuerConfig) needsKeySource() bool {
	for _, alg := range c.algorithms() {
		if alg != HS256 {
			return true
		}
	}

	return false
}

func (c *IssuerConfig) algorithms() []string {
	if len(c.Algorithms) == 0 {
		return asymmetricAlgorithms
	}

	return c.Algorithms
}

// checkURL accepts https URLs, and http URLs on loopback or when
// InsecureHTTP is set.
func (c *IssuerConfig) checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("issuer %q: parse key URL %q: %w", c.Issuer, raw, err)
	}

	switch {
	case u.Host == "":
		return fmt.Errorf("issuer %q: key URL %q has no host", c.Issuer, raw)
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && (c.InsecureHTTP || isLoopback(u.Hostname())):
		return nil
	}

	return fmt.Errorf("issuer %q: key URL %q must use https (or http on loopback)",
		c.Issuer, raw)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}

	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
