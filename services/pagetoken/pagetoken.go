// Package pagetoken makes the opaque page tokens of the List RPCs: a token
// names the last key of the previous page, so paging stays stable while
// items are added. Tokens are not signed; they carry nothing secret and a
// forged one only moves the caller's own cursor.
package pagetoken

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

const prefix = "after:"

// ErrInvalid is returned for a token this package did not make.
var ErrInvalid = errors.New("invalid page token")

// Encode returns the token for the page after the item with key lastKey.
func Encode(lastKey string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(prefix + lastKey))
}

// Decode returns the key a token was made from; the empty token means the
// first page and decodes to "".
func Decode(token string) (string, error) {
	if token == "" {
		return "", nil
	}

	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return "", fmt.Errorf("decode page token: %w", ErrInvalid)
	}

	key, ok := strings.CutPrefix(string(raw), prefix)
	if !ok || key == "" {
		return "", fmt.Errorf("page token without key: %w", ErrInvalid)
	}

	return key, nil
}
