package jwtauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"
)

const (
	// maxKeys bounds how many keys one JWKS may hold.
	maxKeys = 100
	// minRSABits is the smallest RSA modulus accepted from a JWKS.
	minRSABits = 2048
)

// publicKey is a published verification key with its RFC 7638 thumbprint,
// which tells two keys apart even when an issuer reuses a kid.
type publicKey struct {
	jwk        jose.JSONWebKey
	thumbprint string
}

// keySet holds the public keys of one issuer, fetched from its key source.
// It is safe for concurrent use.
type keySet struct {
	issuer       string
	source       keySource
	logger       *zap.Logger
	now          func() time.Time
	cooldown     time.Duration
	maxStaleness time.Duration
	fetchTimeout time.Duration

	mu sync.RWMutex
	// keys maps kid to the keys published under it ("" for keys with none).
	keys map[string][]publicKey
	// fetchedAt is when keys were last fetched successfully.
	fetchedAt time.Time
	// lastAttempt is when the last fetch started, successful or not.
	lastAttempt time.Time
	// inflight is closed when the fetch in progress ends; nil when idle.
	inflight chan struct{}
	// lastErr is the outcome of the last fetch.
	lastErr error
}

// find returns a key published under kid that can check alg, without
// fetching anything. A token without kid matches only keys published
// without one.
func (s *keySet) find(kid, alg string) (*publicKey, error) {
	s.mu.RLock()
	candidates := s.keys[kid]
	fetchedAt := s.fetchedAt
	s.mu.RUnlock()

	if err := s.freshness(fetchedAt); err != nil {
		return nil, err
	}

	for i := range candidates {
		if compatible(&candidates[i].jwk, alg) {
			return &candidates[i], nil
		}
	}

	return nil, fmt.Errorf("%w: issuer %q has no %s key with kid %s",
		ErrUnknownKey, s.issuer, alg, quote(kid))
}

// freshness fails when the keys were never fetched or are too old to trust.
func (s *keySet) freshness(fetchedAt time.Time) error {
	if fetchedAt.IsZero() {
		return fmt.Errorf("%w: keys of issuer %q were never fetched",
			ErrKeysUnavailable, s.issuer)
	}

	if age := s.now().Sub(fetchedAt); age > s.maxStaleness {
		return fmt.Errorf("%w: keys of issuer %q are %v old, limit %v",
			ErrKeysUnavailable, s.issuer, age.Round(time.Second), s.maxStaleness)
	}

	return nil
}

// ready reports whether tokens of this issuer can be checked now.
func (s *keySet) ready() error {
	s.mu.RLock()
	fetchedAt := s.fetchedAt
	s.mu.RUnlock()

	return s.freshness(fetchedAt)
}

// key finds a key for kid and alg, fetching the key set again once when it
// is missing, unless a fetch started less than the cool-down ago.
func (s *keySet) key(ctx context.Context, kid, alg string) (*publicKey, error) {
	k, err := s.find(kid, alg)
	if err == nil {
		return k, nil
	}

	if fetched, _ := s.refresh(ctx, false); !fetched {
		return nil, err
	}

	return s.find(kid, alg)
}

// refresh fetches the key set, or joins a fetch already running. Unless
// force is set, it fetches nothing when the last fetch started less than the
// cool-down ago, and reports false. The fetch is not cancelled with ctx,
// since other callers may wait for it; the fetch timeout bounds it instead.
//
// Limitation: the cool-down counts from the last fetch of any kind, so a key
// published right after a periodic refresh is found up to one cool-down
// later; tokens signed with it are refused until then.
// Limitation: the caller that starts a fetch waits for it up to the fetch
// timeout even when its own ctx ends sooner; callers joining it do not.
func (s *keySet) refresh(ctx context.Context, force bool) (bool, error) {
	s.mu.Lock()
	if done := s.inflight; done != nil {
		s.mu.Unlock()
		return true, s.wait(ctx, done)
	}

	if !force && s.now().Sub(s.lastAttempt) < s.cooldown {
		s.mu.Unlock()
		return false, nil
	}

	done := make(chan struct{})
	s.inflight = done
	s.lastAttempt = s.now()
	s.mu.Unlock()

	fetchCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.fetchTimeout)
	keys, err := s.fetch(fetchCtx)
	cancel()

	s.mu.Lock()
	defer s.mu.Unlock()

	s.inflight = nil
	s.lastErr = err
	close(done)

	if err != nil {
		s.logger.Warn("refresh of signing keys failed; keeping the previous ones",
			zap.String("issuer", s.issuer), zap.Time("fetchedAt", s.fetchedAt), zap.Error(err))
		return true, err
	}

	s.keys = keys
	s.fetchedAt = s.now()
	s.logger.Debug("signing keys refreshed",
		zap.String("issuer", s.issuer), zap.Int("kids", len(keys)))

	return true, nil
}

// wait blocks until the fetch in progress ends and returns its outcome.
func (s *keySet) wait(ctx context.Context, done <-chan struct{}) error {
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("wait for keys of issuer %q: %w", s.issuer, ctx.Err())
	}

	s.mu.RLock()
	defer s.mu.RUnlock()

	return s.lastErr
}

func (s *keySet) fetch(ctx context.Context) (map[string][]publicKey, error) {
	body, err := s.source.fetch(ctx)
	if err != nil {
		return nil, err
	}

	keys, err := parseJWKS(body, s.logger.With(zap.String("issuer", s.issuer)))
	if err != nil {
		return nil, fmt.Errorf("issuer %q: %w", s.issuer, err)
	}

	return keys, nil
}

// parseJWKS reads a JWK set, keeping the public signing keys that are
// usable and skipping (and logging) the others, so one odd key does not
// take the whole set down.
func parseJWKS(body []byte, logger *zap.Logger) (map[string][]publicKey, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("decode JWKS: %w", err)
	}
	if len(doc.Keys) > maxKeys {
		return nil, fmt.Errorf("JWKS holds %d keys, limit %d", len(doc.Keys), maxKeys)
	}

	keys := make(map[string][]publicKey)
	usable := 0
	for i, raw := range doc.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil {
			logger.Warn("skipping unreadable JWKS key", zap.Int("index", i), zap.Error(err))
			continue
		}

		if err := usableKey(&k); err != nil {
			logger.Warn("skipping JWKS key", zap.Int("index", i),
				zap.String("kid", quote(k.KeyID)), zap.Error(err))
			continue
		}

		thumb, err := k.Thumbprint(crypto.SHA256)
		if err != nil {
			logger.Warn("skipping JWKS key without thumbprint", zap.Int("index", i),
				zap.String("kid", quote(k.KeyID)), zap.Error(err))
			continue
		}

		keys[k.KeyID] = append(keys[k.KeyID], publicKey{jwk: k, thumbprint: string(thumb)})
		usable++
	}

	if usable == 0 {
		return nil, errors.New("JWKS has no usable signing key")
	}

	return keys, nil
}

// usableKey accepts valid public signature keys of the supported types.
func usableKey(k *jose.JSONWebKey) error {
	switch {
	case !k.Valid():
		return errors.New("invalid key")
	case !k.IsPublic():
		// Symmetric and private keys never belong in a published JWKS.
		return errors.New("not a public key")
	case k.Use != "" && k.Use != "sig":
		return fmt.Errorf("key use %q is not sig", k.Use)
	}

	switch pub := k.Key.(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < minRSABits {
			return fmt.Errorf("RSA key of %d bits, minimum %d", pub.N.BitLen(), minRSABits)
		}
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() && pub.Curve != elliptic.P384() {
			return fmt.Errorf("unsupported curve %s", pub.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("unsupported key type %T", k.Key)
	}

	return nil
}

// compatible reports whether k may check a signature made with alg: the key
// type must fit the algorithm family (so an RSA key is never used as an
// HMAC secret), and a key that names its alg must name this one.
func compatible(k *jose.JSONWebKey, alg string) bool {
	if k.Algorithm != "" && k.Algorithm != alg {
		return false
	}

	switch pub := k.Key.(type) {
	case *rsa.PublicKey:
		return alg == RS256 || alg == RS384 || alg == RS512 || alg == PS256
	case *ecdsa.PublicKey:
		return (alg == ES256 && pub.Curve == elliptic.P256()) ||
			(alg == ES384 && pub.Curve == elliptic.P384())
	case ed25519.PublicKey:
		return alg == EdDSA
	}

	return false
}
