package jwtauth

import (
	"context"
	"slices"
	"time"
)

// Principal is the caller a verified token speaks for. A Principal returned
// by Verify may be shared by every request that presents the same token (it
// comes from the verified-token cache), so it must be treated as read-only.
type Principal struct {
	// Subject is the sub claim: the user or service the token is about.
	Subject string
	// ClientID is the OAuth client the token was issued to: the client_id
	// claim, or azp when client_id is absent.
	ClientID string
	// Issuer is the iss claim, one of the configured issuers.
	Issuer string
	// Scopes come from the space-separated scope claim and the scp claim
	// (array or space-separated string), without duplicates.
	Scopes []string
	// Roles come from the roles claim (array of strings, or one string).
	Roles []string
	// Claims holds every claim of the token as decoded from JSON; numbers
	// are json.Number.
	Claims map[string]any
	// Expiry is the exp claim.
	Expiry time.Time
}

// HasScope reports whether the token grants scope.
func (p *Principal) HasScope(scope string) bool {
	return p != nil && slices.Contains(p.Scopes, scope)
}

// HasRole reports whether the token carries role.
func (p *Principal) HasRole(role string) bool {
	return p != nil && slices.Contains(p.Roles, role)
}

type principalKey struct{}

// WithPrincipal returns a copy of ctx carrying p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal stored by WithPrincipal, if any.
// Public methods called without a token have none.
func PrincipalFrom(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(*Principal)
	return p, ok && p != nil
}

// Name is how logs, events and limits name the principal: the token's
// subject, or its OAuth client id when the token has no subject; "" for a
// nil principal.
func (p *Principal) Name() string {
	if p == nil {
		return ""
	}
	if p.Subject != "" {
		return p.Subject
	}

	return p.ClientID
}

// NameFrom is the Name of the principal in ctx, or "" when there is none.
func NameFrom(ctx context.Context) string {
	p, _ := PrincipalFrom(ctx)

	return p.Name()
}
