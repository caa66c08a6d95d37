package jwtauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
)

// claims are the parts of a JWT claims set this package reads.
type claims struct {
	Issuer          string           `json:"iss"`
	Subject         string           `json:"sub"`
	Audience        jwt.Audience     `json:"aud"`
	Expiry          *jwt.NumericDate `json:"exp"`
	NotBefore       *jwt.NumericDate `json:"nbf"`
	IssuedAt        *jwt.NumericDate `json:"iat"`
	AuthorizedParty string           `json:"azp"`
	ClientID        string           `json:"client_id"`
	Scope           spaceList        `json:"scope"`
	Scp             spaceList        `json:"scp"`
	Roles           stringList       `json:"roles"`

	// all is every claim, for Principal.Claims.
	all map[string]any
}

// decodeClaims reads a claims set. It does not check any of it.
func decodeClaims(payload []byte) (*claims, error) {
	var c claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, fmt.Errorf("%w: decode claims: %w", ErrMalformedToken, err)
	}

	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&c.all); err != nil {
		return nil, fmt.Errorf("%w: decode claims: %w", ErrMalformedToken, err)
	}

	return &c, nil
}

// checkTime applies exp, nbf and iat at now with the given leeway. exp is
// required: a token that never expires is refused.
func (c *claims) checkTime(now time.Time, leeway time.Duration) error {
	if c.Expiry == nil {
		return fmt.Errorf("%w: exp", ErrMissingClaim)
	}

	exp := c.Expiry.Time()
	if !now.Before(exp.Add(leeway)) {
		return fmt.Errorf("%w: exp %s, now %s", ErrTokenExpired,
			exp.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}

	if c.NotBefore != nil && now.Before(c.NotBefore.Time().Add(-leeway)) {
		return fmt.Errorf("%w: nbf %s, now %s", ErrTokenNotYetValid,
			c.NotBefore.Time().UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}

	if c.IssuedAt != nil && now.Before(c.IssuedAt.Time().Add(-leeway)) {
		return fmt.Errorf("%w: iat %s in the future, now %s", ErrTokenNotYetValid,
			c.IssuedAt.Time().UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}

	return nil
}

// checkAudience accepts the token when any of its aud values is accepted.
func (c *claims) checkAudience(accepted []string) error {
	for _, a := range c.Audience {
		if slices.Contains(accepted, a) {
			return nil
		}
	}

	return fmt.Errorf("%w: token names %s", ErrWrongAudience, quoteList(c.Audience, 4))
}

func (c *claims) principal() *Principal {
	clientID := c.ClientID
	if clientID == "" {
		clientID = c.AuthorizedParty
	}

	scopes := slices.Clone([]string(c.Scope))
	for _, s := range c.Scp {
		if !slices.Contains(scopes, s) {
			scopes = append(scopes, s)
		}
	}

	return &Principal{
		Subject:  c.Subject,
		ClientID: clientID,
		Issuer:   c.Issuer,
		Scopes:   scopes,
		Roles:    slices.Clone([]string(c.Roles)),
		Claims:   c.all,
		Expiry:   c.Expiry.Time(),
	}
}

// spaceList decodes a space-separated string or an array of strings.
type spaceList []string

func (l *spaceList) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		*l = nil
		return nil
	}

	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*l = strings.Fields(s)
		return nil
	}

	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return errors.New("want a string or an array of strings")
	}
	*l = list

	return nil
}

// stringList decodes one string or an array of strings.
type stringList []string

func (l *stringList) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		*l = nil
		return nil
	}

	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*l = []string{s}
		return nil
	}

	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return errors.New("want a string or an array of strings")
	}
	*l = list

	return nil
}

// quoteList renders at most limit values of untrusted input for a log line.
func quoteList(values []string, limit int) string {
	if len(values) == 0 {
		return "nothing"
	}

	quoted := make([]string, 0, min(len(values), limit))
	for _, v := range values[:min(len(values), limit)] {
		quoted = append(quoted, quote(v))
	}
	if len(values) > limit {
		quoted = append(quoted, fmt.Sprintf("and %d more", len(values)-limit))
	}

	return strings.Join(quoted, ", ")
}

// quote renders untrusted input for a log line, cut to 64 bytes.
func quote(s string) string {
	const limit = 64
	if len(s) > limit {
		return fmt.Sprintf("%q...", s[:limit])
	}

	return fmt.Sprintf("%q", s)
}
