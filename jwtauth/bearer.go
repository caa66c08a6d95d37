package jwtauth

import (
	"errors"
	"net/http"
	"strings"
)

// BearerToken returns the bearer token of r's Authorization header. It
// refuses a request with an access_token query parameter (ErrTokenInQuery)
// whatever its headers say.
// Limitation: an access_token in a form-encoded body is ignored rather than
// refused, since reading it would mean consuming the body here.
func BearerToken(r *http.Request) (string, error) {
	// Parse the query only when it could name access_token: spelled out or
	// with any character percent-encoded ("access%5Ftoken").
	if q := r.URL.RawQuery; (strings.Contains(q, "access_token") ||
		strings.Contains(q, "%")) && r.URL.Query().Has("access_token") {
		return "", ErrTokenInQuery
	}

	return ParseAuthorization(r.Header.Values("Authorization"))
}

// ParseAuthorization returns the token of the values of an Authorization
// header, or of the authorization key of gRPC metadata. There must be
// exactly one value, of the form "Bearer <token>" with the scheme in any
// case and the token in the RFC 6750 b64token alphabet.
func ParseAuthorization(values []string) (string, error) {
	switch len(values) {
	case 0:
		return "", ErrNoToken
	case 1:
	default:
		return "", ErrMalformedHeader
	}

	scheme, token, _ := strings.Cut(values[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", ErrUnsupportedScheme
	}

	token = strings.TrimLeft(token, " ")
	if !isB64Token(token) {
		return "", ErrMalformedHeader
	}

	return token, nil
}

// isB64Token reports whether s is 1*(ALPHA / DIGIT / "-" / "." / "_" / "~"
// / "+" / "/") *"=", the token syntax of RFC 6750 section 2.1.
func isB64Token(s string) bool {
	body := strings.TrimRight(s, "=")
	if body == "" {
		return false
	}

	// Every request's token passes here, so one table load per byte.
	for i := 0; i < len(body); i++ {
		if !b64TokenByte[body[i]] {
			return false
		}
	}

	return true
}

// b64TokenByte marks the bytes allowed before a b64token's padding.
var b64TokenByte = func() (t [256]bool) {
	for c := range 256 {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
			t[c] = true
		case c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/':
			t[c] = true
		}
	}

	return t
}()

// RFC 6750 error codes.
const (
	ErrorInvalidRequest    = "invalid_request"
	ErrorInvalidToken      = "invalid_token"
	ErrorInsufficientScope = "insufficient_scope"
)

// Challenge is the answer to a refused request under RFC 6750: the HTTP
// status, the error code and description of the WWW-Authenticate header,
// and for insufficient_scope the scopes needed. Descriptions are short and
// fixed; they never carry detail from the token or the verifier.
type Challenge struct {
	// Status is 400, 401, 403 or 503.
	Status int
	// Error is an RFC 6750 error code, or empty when the request carried no
	// bearer credentials at all (RFC 6750 section 3.1).
	Error string
	// Description is a short, safe message for the caller.
	Description string
	// Scope lists the scopes the resource needs (insufficient_scope only).
	Scope []string
}

// ChallengeFor maps an error from BearerToken, ParseAuthorization or
// Verifier.Verify to its challenge. Errors it does not know are answered
// as an invalid token: refusing is the safe default.
func ChallengeFor(err error) Challenge {
	switch {
	case errors.Is(err, ErrNoToken):
		return Challenge{Status: http.StatusUnauthorized, Description: "bearer token required"}
	case errors.Is(err, ErrUnsupportedScheme):
		return Challenge{Status: http.StatusUnauthorized,
			Description: "authorization scheme must be Bearer"}
	case errors.Is(err, ErrMalformedHeader):
		return Challenge{Status: http.StatusBadRequest, Error: ErrorInvalidRequest,
			Description: "malformed authorization header"}
	case errors.Is(err, ErrTokenInQuery):
		return Challenge{Status: http.StatusBadRequest, Error: ErrorInvalidRequest,
			Description: "access token not accepted in the query string"}
	case errors.Is(err, ErrKeysUnavailable):
		return Challenge{Status: http.StatusServiceUnavailable,
			Description: "token verification unavailable"}
	case errors.Is(err, ErrTokenExpired):
		return Challenge{Status: http.StatusUnauthorized, Error: ErrorInvalidToken,
			Description: "token expired"}
	case errors.Is(err, ErrTokenNotYetValid):
		return Challenge{Status: http.StatusUnauthorized, Error: ErrorInvalidToken,
			Description: "token not yet valid"}
	}

	return Challenge{Status: http.StatusUnauthorized, Error: ErrorInvalidToken,
		Description: "invalid token"}
}

// InsufficientScope is the challenge for a known caller whose token lacks
// what the resource requires; scopes are the scopes the resource needs.
func InsufficientScope(description string, scopes ...string) Challenge {
	return Challenge{
		Status:      http.StatusForbidden,
		Error:       ErrorInsufficientScope,
		Description: description,
		Scope:       scopes,
	}
}

// Header renders the WWW-Authenticate value for realm, or "" for a status
// that takes no challenge (503). Characters RFC 6750 forbids in its
// quoted values are dropped.
func (c Challenge) Header(realm string) string {
	switch c.Status {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden:
	default:
		return ""
	}

	var b strings.Builder
	b.WriteString("Bearer")
	sep := " "
	param := func(name, value string) {
		b.WriteString(sep)
		b.WriteString(name)
		b.WriteString(`="`)
		b.WriteString(cleanQuoted(value))
		b.WriteString(`"`)
		sep = ", "
	}

	if realm != "" {
		param("realm", realm)
	}
	if c.Error != "" {
		param("error", c.Error)
		param("error_description", c.Description)
	}
	if len(c.Scope) > 0 {
		param("scope", strings.Join(c.Scope, " "))
	}

	return b.String()
}

// cleanQuoted keeps %x20-21 / %x23-5B / %x5D-7E, the characters RFC 6750
// allows inside its quoted attribute values.
func cleanQuoted(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return -1
		}
		return r
	}, s)
}
