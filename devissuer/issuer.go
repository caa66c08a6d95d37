// Package devissuer is a small OAuth 2.0 / OpenID Connect issuer for local
// runs and tests: the client-credentials grant at POST /oauth2/token, the
// public keys at /.well-known/jwks.json and the discovery document at
// /.well-known/openid-configuration. Tokens are JWTs signed with ES256 by
// default or RS256 per client; keys can be rotated, the old public keys
// staying published for a grace period.
//
// It is for development only: clients and secrets come from configuration
// in plain text, and nothing is rate limited.
package devissuer

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Paths served by an Issuer.
const (
	TokenPath     = "/oauth2/token"
	JWKSPath      = "/.well-known/jwks.json"
	DiscoveryPath = "/.well-known/openid-configuration"
)

// Client is an OAuth client allowed to use the client-credentials grant.
type Client struct {
	// ID is the client_id; it is also the sub of the tokens issued to it.
	ID string `json:"id"`
	// Secret is the client_secret.
	Secret string `json:"secret"`
	// Scopes the client may ask for; all of them when it asks for none.
	Scopes []string `json:"scopes"`
	// Roles put in the roles claim of every token of the client.
	Roles []string `json:"roles"`
	// Claims are extra string claims of every token (e.g. "tenant").
	Claims map[string]string `json:"claims"`
	// Algorithm signs the client's tokens: ES256 (default) or RS256.
	Algorithm string `json:"alg"`
}

// Config describes an Issuer.
type Config struct {
	// Issuer is the iss of every token and the base of every URL in the
	// discovery document: scheme and host only, e.g. http://127.0.0.1:8081.
	Issuer string
	// Audience is the aud of every token.
	Audience string
	// Clients allowed to get tokens.
	Clients []Client
	// TokenTTL is the lifetime of issued tokens; 0 means 15 minutes.
	TokenTTL time.Duration
}

// DefaultTokenTTL is the lifetime of tokens when Config.TokenTTL is 0.
const DefaultTokenTTL = 15 * time.Minute

// Validate reports the first problem with c.
func (c *Config) Validate() error {
	u, err := url.Parse(c.Issuer)
	switch {
	case err != nil:
		return fmt.Errorf("issuer URL %q: %w", c.Issuer, err)
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "":
		return fmt.Errorf("issuer URL %q: want http(s)://host[:port]", c.Issuer)
	case u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return fmt.Errorf("issuer URL %q: want no path, query or credentials", c.Issuer)
	case c.Audience == "":
		return errors.New("audience is empty")
	case len(c.Clients) == 0:
		return errors.New("no client configured")
	case c.TokenTTL < 0:
		return fmt.Errorf("token TTL %v is negative", c.TokenTTL)
	}

	seen := make(map[string]bool, len(c.Clients))
	for _, cl := range c.Clients {
		switch {
		case cl.ID == "" || cl.Secret == "":
			return fmt.Errorf("client %q: id and secret are required", cl.ID)
		case seen[cl.ID]:
			return fmt.Errorf("client %q configured twice", cl.ID)
		case cl.Algorithm != "" && !slices.Contains(algorithms, cl.Algorithm):
			return fmt.Errorf("client %q: algorithm %q is not ES256 or RS256", cl.ID, cl.Algorithm)
		case slices.Contains(cl.Scopes, "") || slices.ContainsFunc(cl.Scopes, hasSpace):
			return fmt.Errorf("client %q: scopes must be non-empty words", cl.ID)
		}
		seen[cl.ID] = true
	}

	return nil
}

func hasSpace(s string) bool { return strings.ContainsAny(s, " \t\r\n") }

// Issuer is the http.Handler of the dev issuer. It is safe for concurrent
// use and owns no goroutine.
type Issuer struct {
	cfg     Config
	clients map[string]*client
	keys    *KeyRing
	opts    options
}

type client struct {
	Client
	secretDigest [32]byte
}

type options struct {
	logger  *zap.Logger
	now     func() time.Time
	keyFile string
	grace   time.Duration
}

// Option configures an Issuer.
type Option func(*options)

// WithLogger sets the logger for issued tokens and refused requests.
func WithLogger(logger *zap.Logger) Option {
	return func(o *options) {
		if logger != nil {
			logger = logger.Named("devissuer")
		}
		o.logger = logger
	}
}

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// WithKeyFile saves the key ring to path after every rotation, so a
// restarted issuer or the mint command signs with the same keys.
func WithKeyFile(path string) Option {
	return func(o *options) { o.keyFile = path }
}

// WithRotationGrace sets how long a rotated-out public key stays published
// (1 hour by default). It must be at least the token TTL, or tokens signed
// just before a rotation would fail verification before they expire.
func WithRotationGrace(d time.Duration) Option {
	return func(o *options) { o.grace = d }
}

// New builds an Issuer signing with keys.
func New(cfg Config, keys *KeyRing, opts ...Option) (*Issuer, error) {
	o := options{logger: zap.NewNop(), now: time.Now, grace: time.Hour}
	for _, opt := range opts {
		opt(&o)
	}

	if cfg.TokenTTL == 0 {
		cfg.TokenTTL = DefaultTokenTTL
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("devissuer: %w", err)
	}

	switch {
	case keys == nil:
		return nil, errors.New("devissuer: key ring is nil")
	case o.logger == nil:
		return nil, errors.New("devissuer: logger is nil")
	case o.now == nil:
		return nil, errors.New("devissuer: clock is nil")
	case o.grace < cfg.TokenTTL:
		return nil, fmt.Errorf("devissuer: rotation grace %v is shorter than the token TTL %v",
			o.grace, cfg.TokenTTL)
	}

	iss := &Issuer{cfg: cfg, keys: keys, opts: o, clients: make(map[string]*client)}
	for _, c := range cfg.Clients {
		if c.Algorithm == "" {
			c.Algorithm = ES256
		}
		iss.clients[c.ID] = &client{Client: c, secretDigest: sha256.Sum256([]byte(c.Secret))}
	}

	return iss, nil
}

// Rotate replaces the signing keys, keeps the old public keys published for
// the grace period, and saves the ring when a key file is set.
func (i *Issuer) Rotate() error {
	if err := i.keys.Rotate(i.opts.now(), i.opts.grace); err != nil {
		return err
	}

	i.opts.logger.Info("signing keys rotated",
		zap.String("es256Kid", i.keys.KeyID(ES256)), zap.String("rs256Kid", i.keys.KeyID(RS256)))

	if i.opts.keyFile == "" {
		return nil
	}

	return i.keys.Save(i.opts.keyFile)
}

// URL returns the issuer URL, the iss of its tokens.
func (i *Issuer) URL() string { return i.cfg.Issuer }

// ServeHTTP implements http.Handler.
func (i *Issuer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case TokenPath:
		if r.Method != http.MethodPost {
			methodNotAllowed(w, http.MethodPost)
			return
		}
		i.token(w, r)
	case JWKSPath:
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			methodNotAllowed(w, http.MethodGet)
			return
		}
		w.Header().Set("Cache-Control", "max-age=60")
		writeJSON(w, http.StatusOK, i.keys.JWKS(i.opts.now()))
	case DiscoveryPath:
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			methodNotAllowed(w, http.MethodGet)
			return
		}
		writeJSON(w, http.StatusOK, i.discovery())
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found"})
	}
}

func (i *Issuer) discovery() map[string]any {
	var scopes []string
	for _, c := range i.clients {
		for _, s := range c.Scopes {
			if !slices.Contains(scopes, s) {
				scopes = append(scopes, s)
			}
		}
	}
	slices.Sort(scopes)

	return map[string]any{
		"issuer":                                i.cfg.Issuer,
		"token_endpoint":                        i.cfg.Issuer + TokenPath,
		"jwks_uri":                              i.cfg.Issuer + JWKSPath,
		"grant_types_supported":                 []string{"client_credentials"},
		"response_types_supported":              []string{"token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": algorithms,
		"token_endpoint_auth_methods_supported": []string{
			"client_secret_basic", "client_secret_post",
		},
		"scopes_supported": scopes,
	}
}

// maxFormSize bounds the token request body.
const maxFormSize = 16 << 10

// tokenResponse is the RFC 6749 section 5.1 answer.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope,omitempty"`
}

func (i *Issuer) token(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")

	r.Body = http.MaxBytesReader(w, r.Body, maxFormSize)
	if err := r.ParseForm(); err != nil {
		i.refuse(w, r, http.StatusBadRequest, "invalid_request", "unreadable form body", err)
		return
	}

	if gt := r.PostForm.Get("grant_type"); gt != "client_credentials" {
		i.refuse(w, r, http.StatusBadRequest, "unsupported_grant_type",
			"only client_credentials is supported", fmt.Errorf("grant_type %q", gt))
		return
	}

	c, err := i.authenticate(r)
	if err != nil {
		if errors.Is(err, errTwoAuthMethods) {
			i.refuse(w, r, http.StatusBadRequest, "invalid_request",
				"use one client authentication method", err)
			return
		}
		if _, _, basic := r.BasicAuth(); basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="devissuer"`)
		}
		i.refuse(w, r, http.StatusUnauthorized, "invalid_client",
			"client authentication failed", err)
		return
	}

	scopes, err := grantedScopes(c, r.PostForm.Get("scope"))
	if err != nil {
		i.refuse(w, r, http.StatusBadRequest, "invalid_scope",
			"scope not allowed for this client", err)
		return
	}

	i.issue(w, c, scopes)
}

func (i *Issuer) issue(w http.ResponseWriter, c *client, scopes []string) {
	now := i.opts.now()
	extra := make(map[string]any, len(c.Claims))
	for k, v := range c.Claims {
		extra[k] = v
	}

	token, err := i.keys.Mint(c.Algorithm, TokenClaims{
		Issuer:   i.cfg.Issuer,
		Subject:  c.ID,
		Audience: []string{i.cfg.Audience},
		ClientID: c.ID,
		Scopes:   scopes,
		Roles:    c.Roles,
		Extra:    extra,
		IssuedAt: now,
		Expiry:   now.Add(i.cfg.TokenTTL),
	})
	if err != nil {
		i.opts.logger.Error("token signing failed", zap.String("client", c.ID), zap.Error(err))
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error"})
		return
	}

	sum := sha256.Sum256([]byte(token))
	i.opts.logger.Info("token issued", zap.String("client", c.ID),
		zap.Strings("scopes", scopes), zap.String("alg", c.Algorithm),
		zap.String("token", hex.EncodeToString(sum[:6])))

	writeJSON(w, http.StatusOK, tokenResponse{
		AccessToken: token,
		TokenType:   "Bearer",
		ExpiresIn:   int64(i.cfg.TokenTTL / time.Second),
		Scope:       joinScopes(scopes),
	})
}

var (
	errTwoAuthMethods = errors.New("client authenticated with both basic auth and form")
	errBadClient      = errors.New("unknown client or wrong secret")
)

// authenticate finds the client from HTTP Basic credentials (form-encoded
// as RFC 6749 section 2.3.1 asks) or from client_id and client_secret in
// the form body, never both.
func (i *Issuer) authenticate(r *http.Request) (*client, error) {
	id, secret, basic := r.BasicAuth()
	formID, formSecret := r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")

	switch {
	case basic && (formID != "" || formSecret != ""):
		return nil, errTwoAuthMethods
	case basic:
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("decode basic credentials: %w", err)
		}
	default:
		id, secret = formID, formSecret
	}

	c, known := i.clients[id]
	want := [32]byte{}
	if known {
		want = c.secretDigest
	}
	// Compare digests in constant time, and compare even for unknown
	// clients, so timing tells neither the secret nor which ids exist.
	got := sha256.Sum256([]byte(secret))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 || !known {
		return nil, fmt.Errorf("%w: client %q", errBadClient, id)
	}

	return c, nil
}

// grantedScopes returns the requested scopes, all of which the client must
// be allowed, or every allowed scope when none is requested.
func grantedScopes(c *client, requested string) ([]string, error) {
	asked := strings.Fields(requested)
	if len(asked) == 0 {
		return slices.Clone(c.Scopes), nil
	}

	var granted []string
	for _, s := range asked {
		if !slices.Contains(c.Scopes, s) {
			return nil, fmt.Errorf("client %q asked for scope %q", c.ID, s)
		}
		if !slices.Contains(granted, s) {
			granted = append(granted, s)
		}
	}

	return granted, nil
}

func (i *Issuer) refuse(
	w http.ResponseWriter,
	r *http.Request,
	httpStatus int,
	code, description string,
	err error,
) {
	i.opts.logger.Info("token request refused", zap.String("error", code),
		zap.String("remote", r.RemoteAddr), zap.Error(err))
	writeJSON(w, httpStatus, map[string]string{"error": code, "error_description": description})
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method_not_allowed"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"error":"server_error"}`)
	}

	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

func joinScopes(scopes []string) string { return strings.Join(scopes, " ") }
