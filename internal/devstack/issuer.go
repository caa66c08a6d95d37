package devstack

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"time"
)

// Demo client of the dev issuer: `make run` prints how to get a token with
// it, and the end-to-end tests use it.
const (
	DemoClientID     = "demo"
	DemoClientSecret = "demo-secret"
	// DemoScopes are the scopes the demo client may ask for.
	DemoScopes = "orders.read orders.write"
)

// startIssuer starts the dev OAuth 2.0 issuer. Its signing keys live next
// to the stack's certificates, so a restarted `make run` keeps them.
func (s *Stack) startIssuer() error {
	addr, err := resolvePort(s.cfg.IssuerAddr)
	if err != nil {
		return err
	}
	s.IssuerURL = "http://" + addr

	client := strings.Join([]string{DemoClientID, DemoClientSecret,
		strings.ReplaceAll(DemoScopes, " ", ",")}, ":")
	_, err = s.spawn("issuer", "devissuer", []string{"serve",
		"-listen", addr,
		"-issuer", s.IssuerURL,
		"-keys", filepath.Join(s.CertDir, "devissuer-keys.json"),
		"-client", client,
		"-log-format", s.cfg.LogFormat,
	})

	return err
}

// Token gets an access token for the demo client with the given
// space-separated scopes through the client-credentials grant.
func (s *Stack) Token(ctx context.Context, scopes string) (string, error) {
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {scopes}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.IssuerURL+"/oauth2/token",
		strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(DemoClientID, DemoClientSecret)

	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("devstack: token request: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()

	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return "", fmt.Errorf("devstack: token response (%s): %w", resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK || body.AccessToken == "" {
		return "", fmt.Errorf("devstack: token endpoint answered %s", resp.Status)
	}

	return body.AccessToken, nil
}
