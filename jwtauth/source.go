package jwtauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
)

const (
	// wellKnownPath is where an OpenID provider publishes its metadata.
	wellKnownPath = "/.well-known/openid-configuration"
	// maxDocumentSize bounds discovery documents and JWKS bodies.
	maxDocumentSize = 1 << 20
)

// keySource returns the bytes of a JWK set.
type keySource interface {
	fetch(ctx context.Context) ([]byte, error)
}

// fileSource reads a JWKS file.
type fileSource struct {
	path string
}

func (s fileSource) fetch(context.Context) ([]byte, error) {
	f, err := os.Open(s.path)
	if err != nil {
		return nil, fmt.Errorf("open JWKS file: %w", err)
	}
	defer func() { _ = f.Close() }()

	body, err := readLimited(f)
	if err != nil {
		return nil, fmt.Errorf("read JWKS file %q: %w", s.path, err)
	}

	return body, nil
}

// urlSource fetches a JWKS URL.
type urlSource struct {
	url    string
	client *http.Client
}

func (s urlSource) fetch(ctx context.Context) ([]byte, error) {
	return get(ctx, s.client, s.url)
}

// discoverySource finds the JWKS URL in the issuer's OpenID discovery
// document, remembers it, and looks it up again after a failed fetch.
type discoverySource struct {
	cfg    *IssuerConfig
	client *http.Client

	mu      sync.Mutex
	jwksURL string
}

func (s *discoverySource) fetch(ctx context.Context) ([]byte, error) {
	s.mu.Lock()
	jwksURL := s.jwksURL
	s.mu.Unlock()

	if jwksURL == "" {
		found, err := s.discover(ctx)
		if err != nil {
			return nil, err
		}
		jwksURL = found
	}

	body, err := get(ctx, s.client, jwksURL)

	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.jwksURL = ""
		return nil, err
	}
	s.jwksURL = jwksURL

	return body, nil
}

func (s *discoverySource) discover(ctx context.Context) (string, error) {
	body, err := get(ctx, s.client, s.cfg.Issuer+wellKnownPath)
	if err != nil {
		return "", err
	}

	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", fmt.Errorf("decode discovery document of %q: %w", s.cfg.Issuer, err)
	}

	// OpenID Connect Discovery requires the document to name the issuer it
	// was fetched for; anything else means a misrouted or forged document.
	if doc.Issuer != s.cfg.Issuer {
		return "", fmt.Errorf("discovery document of %q names issuer %s",
			s.cfg.Issuer, quote(doc.Issuer))
	}
	if doc.JWKSURI == "" {
		return "", fmt.Errorf("discovery document of %q has no jwks_uri", s.cfg.Issuer)
	}
	if err := s.cfg.checkURL(doc.JWKSURI); err != nil {
		return "", err
	}

	return doc.JWKSURI, nil
}

// get fetches url and returns its body when the status is 200.
// Limitation: HTTP caching headers of the key source are ignored; keys are
// fetched on the verifier's own schedule.
func get(ctx context.Context, client *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("build request for %q: %w", url, err)
	}
	req.Header.Set("Accept", "application/json")

	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("get %q: %w", url, err)
	}
	defer func() { _ = resp.Body.Close() }()

	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDocumentSize))
		return nil, fmt.Errorf("get %q: status %d", url, resp.StatusCode)
	}

	body, err := readLimited(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read %q: %w", url, err)
	}

	return body, nil
}

func readLimited(r io.Reader) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r, maxDocumentSize+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxDocumentSize {
		return nil, errors.New("document larger than 1 MiB")
	}

	return body, nil
}
