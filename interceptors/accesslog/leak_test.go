package accesslog_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/requestid"
)

// TestNoSecretsInLogs sends credentials every way a client can (bearer
// token, cookie, query parameter, API key header, forwarded metadata, key
// material in a body) through gateway -> orders -> catalog, including a
// request whose handler panics, and greps everything logged at debug level
// for them.
func TestNoSecretsInLogs(t *testing.T) {
	s := newStack(t)

	const (
		token     = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2VjcmV0LXNpZ25hdHVyZQ"
		cookie    = "session-4f1d9c2ab7e3"
		queryTok  = "qtok-8c1e0b7d55aa"
		apiKey    = "ak-live-93b1f0e6c2d4"
		forwarded = "fwd-secret-77de21c0"
		keyPEM    = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg"
	)
	body := `{"customerId":"alice","lineItems":[{"productId":"p-1001","quantity":1}]}`

	tests := []struct {
		name   string
		method string
		path   string
		body   string
	}{
		{"create order", http.MethodPost, "/v1/orders", body},
		{"read product", http.MethodGet, "/v1/products/p-1001", ""},
		{"unknown product", http.MethodGet, "/v1/products/p-0000", ""},
		{"key material in body", http.MethodPost, "/echo",
			"-----BEGIN PRIVATE KEY-----\n" + keyPEM + "\n-----END PRIVATE KEY-----\n"},
		{"panicking handler", http.MethodGet, "/panic", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := "leak-" + strings.ReplaceAll(tt.name, " ", "-")
			target := s.url + tt.path + "?access_token=" + url.QueryEscape(queryTok)
			req, err := http.NewRequest(tt.method, target, strings.NewReader(tt.body))
			if err != nil {
				t.Fatalf("new request: %v", err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set(requestid.Header, id)
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("Cookie", "session="+cookie)
			req.Header.Set("X-Api-Key", apiKey)
			req.Header.Set("Grpc-Metadata-X-Secret", forwarded)

			if _, err := s.do(t, req); err != nil {
				t.Fatalf("%s %s: %v", tt.method, tt.path, err)
			}

			// Wait for the request's line so the grep below sees all of it.
			s.line(t, "gateway.access", "http request", id)
		})
	}

	logs := s.sink.String()
	if !strings.Contains(logs, "leak-create-order") || !strings.Contains(logs, "panic in handler") {
		t.Fatalf("logs do not show the requests, the grep would prove nothing:\n%s", logs)
	}
	for name, secret := range map[string]string{
		"bearer token": token, "token signature": "c2VjcmV0LXNpZ25hdHVyZQ",
		"cookie": cookie, "query token": queryTok, "api key": apiKey,
		"forwarded metadata": forwarded, "private key": keyPEM, "PEM header": "PRIVATE KEY",
	} {
		if strings.Contains(logs, secret) {
			t.Errorf("the %s %q appears in the logs:\n%s", name, secret, logs)
		}
	}
}
