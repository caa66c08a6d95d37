package securityevent

import (
	"errors"

	"github.com/gatehouse-dev/gatehouse/jwtauth"
)

// TokenReason is the reason to record for a token that was not accepted,
// from the jwtauth sentinel err wraps; anything else counts as malformed.
func TokenReason(err error) Reason {
	reasons := []struct {
		err    error
		reason Reason
	}{
		{jwtauth.ErrNoToken, ReasonMissingCredentials},
		{jwtauth.ErrTokenExpired, ReasonExpired},
		{jwtauth.ErrTokenNotYetValid, ReasonNotYetValid},
		{jwtauth.ErrBadSignature, ReasonBadSignature},
		{jwtauth.ErrUnknownIssuer, ReasonWrongIssuer},
		{jwtauth.ErrWrongAudience, ReasonWrongAudience},
		{jwtauth.ErrUnknownKey, ReasonUnknownKey},
		// Our failure, not the caller's, but counted with the rest.
		{jwtauth.ErrKeysUnavailable, "keys_unavailable"},
	}

	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}

	return ReasonMalformedToken
}
