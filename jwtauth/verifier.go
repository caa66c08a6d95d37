// Package jwtauth verifies OAuth 2.0 bearer tokens (signed JWTs) from one
// or more issuers and turns them into a Principal.
//
// Each issuer has its own key source (OpenID discovery, a JWKS URL or a
// JWKS file), its own algorithm allowlist and its own audiences. Keys are
// fetched by Start, refreshed periodically and when a token names an unknown
// kid (at most once per cool-down), and kept in use while the source fails,
// up to a maximum staleness. Verified tokens are remembered, keyed by their
// SHA-256, until their exp, so a busy client pays one signature check.
//
// The package also extracts bearer tokens from HTTP requests and gRPC
// metadata, and renders RFC 6750 WWW-Authenticate challenges. Signature and
// JOSE handling is go-jose's; nothing here parses or checks crypto by hand.
package jwtauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"
)

// supportedAlgorithms are the only alg values go-jose is asked to parse;
// each issuer then narrows them to its own allowlist.
var supportedAlgorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256,
	jose.ES256, jose.ES384, jose.EdDSA, jose.HS256,
}

// acceptedTypes are the typ header values taken for an access token; an
// absent typ is accepted too.
var acceptedTypes = []string{"jwt", "at+jwt", "application/at+jwt"}

// issuer is one configured issuer, ready to check tokens.
type issuer struct {
	cfg        IssuerConfig
	algorithms []string
	keys       *keySet // nil when the issuer signs with HS256 only
}

// Verifier checks bearer tokens. It is safe for concurrent use. Call Start
// before serving (it fetches the keys) and Close when done (it stops the
// refresh goroutine).
type Verifier struct {
	opts    options
	logger  *zap.Logger
	issuers map[string]*issuer
	cache   *tokenCache // nil when caching is off

	mu      sync.Mutex
	started bool
	stop    context.CancelFunc
	done    chan struct{}
}

// New builds a Verifier for the given issuers. It validates everything and
// fetches nothing; see Start.
func New(issuers []IssuerConfig, opts ...Option) (*Verifier, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("jwtauth: %w", err)
	}
	if len(issuers) == 0 {
		return nil, errors.New("jwtauth: no issuer configured")
	}

	v := &Verifier{opts: o, logger: o.logger, issuers: make(map[string]*issuer)}
	for i := range issuers {
		cfg := issuers[i]
		if err := cfg.Validate(); err != nil {
			return nil, fmt.Errorf("jwtauth: %w", err)
		}
		if _, dup := v.issuers[cfg.Issuer]; dup {
			return nil, fmt.Errorf("jwtauth: issuer %q configured twice", cfg.Issuer)
		}

		cfg.Audiences = slices.Clone(cfg.Audiences)
		cfg.HMACSecret = slices.Clone(cfg.HMACSecret)
		iss := &issuer{cfg: cfg, algorithms: slices.Clone(cfg.algorithms())}
		iss.keys = v.newKeySet(&iss.cfg)
		v.issuers[cfg.Issuer] = iss
	}

	if o.cacheSize > 0 {
		v.cache = newTokenCache(o.cacheSize)
	}

	return v, nil
}

func (v *Verifier) newKeySet(cfg *IssuerConfig) *keySet {
	var src keySource
	switch {
	case cfg.Discovery:
		src = &discoverySource{cfg: cfg, client: v.opts.httpClient}
	case cfg.JWKSURL != "":
		src = urlSource{url: cfg.JWKSURL, client: v.opts.httpClient}
	case cfg.JWKSFile != "":
		src = fileSource{path: cfg.JWKSFile}
	default:
		return nil
	}

	return &keySet{
		issuer:       cfg.Issuer,
		source:       src,
		logger:       v.logger,
		now:          v.opts.now,
		cooldown:     v.opts.refreshCooldown,
		maxStaleness: v.opts.maxStaleness,
		fetchTimeout: v.opts.fetchTimeout,
	}
}

// Start fetches every issuer's keys and, when all succeed, starts the
// goroutine that refreshes them every refresh interval until Close. It
// returns the fetch errors otherwise, and may then be called again. ctx
// bounds the first fetch only. Call it before reporting ready: without it,
// keys are fetched by the first Verify of each issuer (within the
// cool-down) and never refreshed periodically.
func (v *Verifier) Start(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()

	if v.started {
		return errors.New("jwtauth: verifier already started")
	}

	if err := v.Refresh(ctx); err != nil {
		return err
	}

	loopCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	v.started, v.stop, v.done = true, stop, make(chan struct{})
	go v.refreshLoop(loopCtx, v.done)

	return nil
}

// Refresh fetches every issuer's keys now, ignoring the cool-down, and
// returns the errors of the sources that failed (their previous keys stay
// in use).
func (v *Verifier) Refresh(ctx context.Context) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, iss := range v.issuers {
		if iss.keys == nil {
			continue
		}

		wg.Go(func() {
			if _, err := iss.keys.refresh(ctx, true); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()

	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("jwtauth: fetch signing keys: %w", err)
	}

	return nil
}

// Ready returns nil when the keys of every issuer are fresh enough to check
// tokens, and an error wrapping ErrKeysUnavailable otherwise. A readiness
// endpoint can serve it.
func (v *Verifier) Ready() error {
	var errs []error
	for _, iss := range v.issuers {
		if iss.keys == nil {
			continue
		}

		if err := iss.keys.ready(); err != nil {
			errs = append(errs, err)
		}
	}

	return errors.Join(errs...)
}

// Close stops the refresh goroutine and waits for it. Verify keeps working
// with the keys already fetched until they reach the maximum staleness.
// Close may be called more than once.
func (v *Verifier) Close() error {
	v.mu.Lock()
	defer v.mu.Unlock()

	if v.stop != nil {
		v.stop()
		<-v.done
		v.stop = nil
	}

	return nil
}

func (v *Verifier) refreshLoop(ctx context.Context, done chan<- struct{}) {
	defer close(done)

	ticker := time.NewTicker(v.opts.refreshInterval)
	defer ticker.Stop()

	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			// Failures are logged by the key sets; old keys stay in use.
			_ = v.Refresh(ctx)
		}
	}
}

// Verify checks token and returns its Principal. Errors wrap one of the
// token sentinels (ErrTokenExpired, ErrUnknownKey...) with detail for server
// logs; do not send them to the caller. ctx bounds the wait for a key
// refresh caused by an unknown kid.
func (v *Verifier) Verify(ctx context.Context, token string) (*Principal, error) {
	if len(token) > v.opts.maxTokenSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d",
			ErrTokenTooLarge, len(token), v.opts.maxTokenSize)
	}

	now := v.opts.now()
	digest := tokenDigest(sha256.Sum256([]byte(token)))
	if p, ok := v.cached(digest, now); ok {
		return p, nil
	}

	entry, err := v.verify(ctx, token, now)
	if err != nil {
		return nil, err
	}

	if v.cache != nil {
		entry.digest = digest
		v.cache.add(entry)
	}

	return entry.principal, nil
}

// cached returns the principal of a token verified earlier, provided the
// token has not expired and the key that signed it is still published and
// fresh.
func (v *Verifier) cached(d tokenDigest, now time.Time) (*Principal, bool) {
	if v.cache == nil {
		return nil, false
	}

	e, ok := v.cache.get(d, now)
	if !ok {
		return nil, false
	}

	if e.issuer.keys != nil && e.alg != HS256 {
		k, err := e.issuer.keys.find(e.kid, e.alg)
		if err != nil || k.thumbprint != e.thumbprint {
			v.cache.remove(d)
			return nil, false
		}
	}

	return e.principal, true
}

// verify runs every check on a token not found in the cache.
func (v *Verifier) verify(ctx context.Context, token string, now time.Time) (*cacheEntry, error) {
	jws, err := jose.ParseSignedCompact(token, supportedAlgorithms)
	if err != nil {
		if _, ok := errors.AsType[*jose.ErrUnexpectedSignatureAlgorithm](err); ok {
			return nil, fmt.Errorf("%w: %w", ErrAlgorithmNotAllowed, err)
		}
		return nil, fmt.Errorf("%w: %w", ErrMalformedToken, err)
	}
	header := jws.Signatures[0].Header

	if err := checkType(header); err != nil {
		return nil, err
	}

	c, err := decodeClaims(jws.UnsafePayloadWithoutVerification())
	if err != nil {
		return nil, err
	}

	iss, ok := v.issuers[c.Issuer]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnknownIssuer, quote(c.Issuer))
	}

	key, thumbprint, err := v.key(ctx, iss, header)
	if err != nil {
		return nil, err
	}

	// Only now are the claims decoded above known to be the issuer's.
	if _, err := jws.Verify(key); err != nil {
		return nil, fmt.Errorf("%w: issuer %q, kid %s: %w",
			ErrBadSignature, iss.cfg.Issuer, quote(header.KeyID), err)
	}

	if err := checkClaims(c, iss, now, v.opts.leeway); err != nil {
		return nil, err
	}

	return &cacheEntry{
		principal:  c.principal(),
		issuer:     iss,
		kid:        header.KeyID,
		alg:        header.Algorithm,
		thumbprint: thumbprint,
		expiry:     c.Expiry.Time(),
	}, nil
}

// key picks the verification key: the issuer's HMAC secret for HS256, a
// published key of the matching type for everything else, returned with
// its thumbprint.
func (v *Verifier) key(
	ctx context.Context,
	iss *issuer,
	header jose.Header,
) (any, string, error) {
	alg := header.Algorithm
	if !slices.Contains(iss.algorithms, alg) {
		return nil, "", fmt.Errorf("%w: %s for issuer %q", ErrAlgorithmNotAllowed, quote(alg),
			iss.cfg.Issuer)
	}

	if alg == HS256 {
		return iss.cfg.HMACSecret, "", nil
	}

	if iss.keys == nil {
		return nil, "", fmt.Errorf("%w: issuer %q has no key source", ErrUnknownKey,
			iss.cfg.Issuer)
	}

	k, err := iss.keys.key(ctx, header.KeyID, alg)
	if err != nil {
		return nil, "", err
	}

	return &k.jwk, k.thumbprint, nil
}

func checkType(header jose.Header) error {
	typ, present := header.ExtraHeaders[jose.HeaderType]
	if !present {
		return nil
	}

	s, ok := typ.(string)
	if !ok || !slices.Contains(acceptedTypes, strings.ToLower(s)) {
		return fmt.Errorf("%w: typ header %v is not an access token type", ErrMalformedToken, typ)
	}

	return nil
}

func checkClaims(c *claims, iss *issuer, now time.Time, leeway time.Duration) error {
	if err := c.checkTime(now, leeway); err != nil {
		return err
	}

	if err := c.checkAudience(iss.cfg.Audiences); err != nil {
		return err
	}

	if c.Subject == "" {
		return fmt.Errorf("%w: sub", ErrMissingClaim)
	}

	return nil
}

// Fingerprint returns a short SHA-256 prefix of token, enough to correlate
// log lines about the same token without logging the token.
func Fingerprint(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:6])
}
