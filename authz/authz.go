// Package authz decides whether an authenticated caller may call an RPC,
// from the user rule declared on the method as the
// (gatehouse.policy.v1.method) option: public, or required scopes (all of
// them), roles (any of them) and claim values (each exactly).
//
// Rules are read once from the generated descriptors by Load, which refuses
// any method without a user rule: deny by default, reported at startup.
// Only the user half of the option is handled here; the callers half (mTLS)
// belongs to the service-identity policy.
package authz

import (
	"errors"
	"fmt"
	"strings"

	policyv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/policy/v1"
	"github.com/gatehouse-dev/gatehouse/jwtauth"
)

var (
	// ErrForbidden is wrapped by every refusal of an authenticated caller.
	ErrForbidden = errors.New("forbidden")
	// ErrNoRule means a method has no user rule: Load refuses to build a
	// policy with such a method, and Authorize refuses to let it be called.
	ErrNoRule = errors.New("no user rule")
	// ErrInvalidRule means a user rule cannot mean what its author intended
	// (an empty scope or role, a claim match without a name), or a WithRule
	// exception is misused.
	ErrInvalidRule = errors.New("invalid user rule")
)

// Requirement kinds named by DeniedError.
const (
	RequirementScopes = "scopes"
	RequirementRoles  = "roles"
	RequirementClaims = "claims"
)

// DeniedError says which requirement of a rule the caller does not meet.
// It wraps ErrForbidden.
type DeniedError struct {
	// Requirement is RequirementScopes, RequirementRoles or
	// RequirementClaims.
	Requirement string
	// Missing lists the scopes absent from the token, the roles of which
	// none is present, or the claim whose value differs.
	Missing []string
	// Scopes lists every scope the rule requires, for an RFC 6750
	// insufficient_scope challenge.
	Scopes []string
}

// Error names the requirement and what is missing, for server logs.
func (e *DeniedError) Error() string {
	var what string
	switch e.Requirement {
	case RequirementScopes:
		what = "missing scopes "
	case RequirementRoles:
		what = "none of the roles "
	case RequirementClaims:
		what = "claim mismatch on "
	default:
		what = e.Requirement + " "
	}

	return fmt.Sprintf("%v: %s%q", ErrForbidden, what, strings.Join(e.Missing, " "))
}

// Unwrap returns ErrForbidden.
func (e *DeniedError) Unwrap() error { return ErrForbidden }

// Evaluate checks p against rule and returns nil, or an error wrapping
// ErrForbidden (a *DeniedError when a requirement is not met). A nil rule
// refuses everyone; a public rule admits everyone, even a nil p.
func Evaluate(rule *policyv1.UserRule, p *jwtauth.Principal) error {
	if rule == nil {
		return fmt.Errorf("%w: %w", ErrForbidden, ErrNoRule)
	}
	if rule.GetPublic() {
		return nil
	}
	if p == nil {
		return fmt.Errorf("%w: no authenticated caller", ErrForbidden)
	}

	var missing []string
	for _, s := range rule.GetScopes() {
		if !p.HasScope(s) {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		return &DeniedError{Requirement: RequirementScopes, Missing: missing,
			Scopes: rule.GetScopes()}
	}

	if roles := rule.GetRoles(); len(roles) > 0 && !hasAnyRole(p, roles) {
		return &DeniedError{Requirement: RequirementRoles, Missing: roles,
			Scopes: rule.GetScopes()}
	}

	for _, c := range rule.GetClaims() {
		// Limitation: only string claims can match; a number or boolean
		// claim never equals the rule's value, so such a rule always denies.
		if v, ok := p.Claims[c.GetName()].(string); !ok || v != c.GetValue() {
			return &DeniedError{Requirement: RequirementClaims,
				Missing: []string{c.GetName()}, Scopes: rule.GetScopes()}
		}
	}

	return nil
}

func hasAnyRole(p *jwtauth.Principal, roles []string) bool {
	for _, r := range roles {
		if p.HasRole(r) {
			return true
		}
	}

	return false
}
