package pagetoken_test

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/services/pagetoken"
)

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		key  string
	}{
		{name: "product id", key: "p-1001"},
		{name: "uuid", key: "6f1c2f0e-8a3b-4d4e-9a51-0c1d2e3f4a5b"},
		{name: "one byte", key: "x"},
		{name: "contains prefix", key: "after:after:"},
		{name: "url unsafe characters", key: "a/b+c?d=e&f g~"},
		{name: "unicode", key: "produkt-ä-ß-日本"},
		{name: "long", key: strings.Repeat("k", 200)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			token := pagetoken.Encode(tc.key)
			if token == "" {
				t.Fatalf("Encode(%q) = empty token; empty means first page", tc.key)
			}
			if strings.ContainsAny(token, "+/=") {
				t.Errorf("Encode(%q) = %q, not URL-safe unpadded base64", tc.key, token)
			}
			if strings.Contains(token, tc.key) {
				t.Errorf("Encode(%q) = %q shows the key in clear", tc.key, token)
			}

			got, err := pagetoken.Decode(token)
			if err != nil {
				t.Fatalf("Decode(Encode(%q)) error: %v", tc.key, err)
			}
			if got != tc.key {
				t.Errorf("Decode(Encode(%q)) = %q", tc.key, got)
			}
		})
	}
}

func TestDecodeEmptyTokenIsFirstPage(t *testing.T) {
	got, err := pagetoken.Decode("")
	if err != nil {
		t.Fatalf("Decode(\"\") error: %v", err)
	}
	if got != "" {
		t.Errorf("Decode(\"\") = %q, want \"\"", got)
	}
}

func TestDecodeInvalid(t *testing.T) {
	enc := base64.RawURLEncoding.EncodeToString
	tests := []struct {
		name  string
		token string
	}{
		{name: "garbage", token: "!!not a token!!"},
		{name: "base64 without prefix", token: enc([]byte("p-1001"))},
		{name: "prefix without key", token: enc([]byte("after:"))},
		{name: "prefix not at start", token: enc([]byte("p-1001after:x"))},
		{name: "padded std base64", token: base64.StdEncoding.EncodeToString([]byte("after:p"))},
		{name: "raw key", token: "p-1001"},
		{name: "truncated", token: pagetoken.Encode("p-1001")[:1]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pagetoken.Decode(tc.token)
			if !errors.Is(err, pagetoken.ErrInvalid) {
				t.Fatalf("Decode(%q) = %q, %v; want an error wrapping ErrInvalid",
					tc.token, got, err)
			}
			if got != "" {
				t.Errorf("Decode(%q) returned key %q along with its error", tc.token, got)
			}
		})
	}
}
