package jwtauth

import "errors"

// Errors about the request that carried (or failed to carry) a token. They
// come from BearerToken and ParseAuthorization.
var (
	// ErrNoToken means the request has no Authorization header at all.
	ErrNoToken = errors.New("no bearer token")
	// ErrUnsupportedScheme means the Authorization header uses a scheme
	// other than Bearer (for example Basic).
	ErrUnsupportedScheme = errors.New("authorization scheme is not bearer")
	// ErrMalformedHeader means the Authorization header is repeated, holds
	// an empty token, or holds characters a bearer token cannot contain.
	ErrMalformedHeader = errors.New("malformed authorization header")
	// ErrTokenInQuery means the request carries an access_token query
	// parameter; tokens in URLs end up in logs and browser history, so they
	// are refused even when a header is present too.
	ErrTokenInQuery = errors.New("access token in query string")
)

// Errors about the token itself. They come from Verifier.Verify, wrapped
// with detail meant for server logs, never for the caller.
var (
	// ErrTokenTooLarge means the token is longer than the configured maximum
	// and was refused before any parsing.
	ErrTokenTooLarge = errors.New("token too large")
	// ErrMalformedToken means the token is not a compact JWS with a JSON
	// claims set of the expected shape.
	ErrMalformedToken = errors.New("malformed token")
	// ErrAlgorithmNotAllowed means the token's alg header is not in its
	// issuer's allowlist (this covers "none" and HMAC without a secret).
	ErrAlgorithmNotAllowed = errors.New("signing algorithm not allowed")
	// ErrUnknownIssuer means the token's iss claim names no configured
	// issuer.
	ErrUnknownIssuer = errors.New("unknown token issuer")
	// ErrUnknownKey means the issuer publishes no usable key for the token's
	// kid and alg, even after a refresh (when the cool-down allowed one).
	ErrUnknownKey = errors.New("unknown signing key")
	// ErrBadSignature means the signature does not verify with the key.
	ErrBadSignature = errors.New("invalid token signature")
	// ErrTokenExpired means exp is in the past, beyond the leeway.
	ErrTokenExpired = errors.New("token expired")
	// ErrTokenNotYetValid means nbf or iat is in the future, beyond the
	// leeway.
	ErrTokenNotYetValid = errors.New("token not yet valid")
	// ErrWrongAudience means none of the token's aud values is an audience
	// configured for its issuer.
	ErrWrongAudience = errors.New("token audience not accepted")
	// ErrMissingClaim means a required claim (sub or exp) is absent.
	ErrMissingClaim = errors.New("required claim missing")
	// ErrKeysUnavailable means the issuer's keys were never fetched or are
	// older than the maximum staleness, so no token of that issuer can be
	// checked. It is our failure, not the caller's.
	ErrKeysUnavailable = errors.New("signing keys unavailable")
)
