package devissuer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Signing algorithms a KeyRing holds a key for.
const (
	ES256 = string(jose.ES256)
	RS256 = string(jose.RS256)
)

// algorithms lists the key types of a ring; the first is the default.
var algorithms = []string{ES256, RS256}

// rsaBits is the size of generated RSA keys.
const rsaBits = 2048

// KeyRing holds one active private key per algorithm (ES256 and RS256) and
// the public keys retired by rotation, published until their grace period
// ends so tokens they signed stay verifiable. It is safe for concurrent
// use.
type KeyRing struct {
	mu      sync.RWMutex
	active  map[string]jose.JSONWebKey // by algorithm; private keys
	retired []retiredKey
}

type retiredKey struct {
	Key   jose.JSONWebKey `json:"key"`
	Until time.Time       `json:"until"`
}

// keyFile is the on-disk form of a KeyRing.
type keyFile struct {
	Active  []jose.JSONWebKey `json:"active"`
	Retired []retiredKey      `json:"retired"`
}

// GenerateKeyRing returns a ring with a new key for every algorithm.
func GenerateKeyRing() (*KeyRing, error) {
	active := make(map[string]jose.JSONWebKey, len(algorithms))
	for _, alg := range algorithms {
		k, err := generateKey(alg)
		if err != nil {
			return nil, err
		}
		active[alg] = k
	}

	return &KeyRing{active: active}, nil
}

func generateKey(alg string) (jose.JSONWebKey, error) {
	var (
		priv crypto.Signer
		err  error
	)
	switch alg {
	case ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case RS256:
		priv, err = rsa.GenerateKey(rand.Reader, rsaBits)
	default:
		return jose.JSONWebKey{}, fmt.Errorf("devissuer: unsupported algorithm %q", alg)
	}
	if err != nil {
		return jose.JSONWebKey{}, fmt.Errorf("devissuer: generate %s key: %w", alg, err)
	}

	k := jose.JSONWebKey{Key: priv, Algorithm: alg, Use: "sig"}
	pub := k.Public()
	thumb, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return jose.JSONWebKey{}, fmt.Errorf("devissuer: thumbprint of %s key: %w", alg, err)
	}
	k.KeyID = base64.RawURLEncoding.EncodeToString(thumb)

	return k, nil
}

// LoadKeyRing reads a ring written by Save.
func LoadKeyRing(path string) (*KeyRing, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("devissuer: read key file: %w", err)
	}

	var f keyFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("devissuer: decode key file %q: %w", path, err)
	}

	ring := &KeyRing{active: make(map[string]jose.JSONWebKey), retired: f.Retired}
	for _, k := range f.Active {
		if k.IsPublic() || !k.Valid() || !slices.Contains(algorithms, k.Algorithm) {
			return nil, fmt.Errorf("devissuer: key file %q: key %q is not a usable private key",
				path, k.KeyID)
		}
		ring.active[k.Algorithm] = k
	}
	for _, alg := range algorithms {
		if _, ok := ring.active[alg]; !ok {
			return nil, fmt.Errorf("devissuer: key file %q has no %s key", path, alg)
		}
	}

	return ring, nil
}

// LoadOrCreateKeyRing reads the ring at path, or generates one and saves it
// there when the file does not exist. created reports the latter.
func LoadOrCreateKeyRing(path string) (ring *KeyRing, created bool, err error) {
	ring, err = LoadKeyRing(path)
	if err == nil {
		return ring, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}

	ring, err = GenerateKeyRing()
	if err != nil {
		return nil, false, err
	}
	if err := ring.Save(path); err != nil {
		return nil, false, err
	}

	return ring, true, nil
}

// Save writes the ring, private keys included, to path with mode 0600
// (its folder is created with 0700). The file is replaced atomically.
func (r *KeyRing) Save(path string) error {
	r.mu.RLock()
	f := keyFile{Retired: slices.Clone(r.retired)}
	for _, alg := range slices.Sorted(maps.Keys(r.active)) {
		f.Active = append(f.Active, r.active[alg])
	}
	r.mu.RUnlock()

	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("devissuer: encode keys: %w", err)
	}

	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("devissuer: create key folder: %w", err)
	}

	tmp, err := os.CreateTemp(dir, ".keys-*.json")
	if err != nil {
		return fmt.Errorf("devissuer: create key file: %w", err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }()

	if err := tmp.Chmod(0o600); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("devissuer: restrict key file: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("devissuer: write key file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("devissuer: write key file: %w", err)
	}

	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("devissuer: replace key file %q: %w", path, err)
	}

	return nil
}

// Rotate replaces every active key with a new one. The old public keys stay
// published until now+grace.
func (r *KeyRing) Rotate(now time.Time, grace time.Duration) error {
	fresh := make(map[string]jose.JSONWebKey, len(algorithms))
	for _, alg := range algorithms {
		k, err := generateKey(alg)
		if err != nil {
			return err
		}
		fresh[alg] = k
	}

	r.mu.Lock()
	defer r.mu.Unlock()

	for _, alg := range algorithms {
		old := r.active[alg]
		r.retired = append(r.retired, retiredKey{Key: old.Public(), Until: now.Add(grace)})
	}
	r.active = fresh
	r.pruneLocked(now)

	return nil
}

func (r *KeyRing) pruneLocked(now time.Time) {
	r.retired = slices.DeleteFunc(r.retired, func(k retiredKey) bool {
		return !now.Before(k.Until)
	})
}

// JWKS returns the public keys to publish at now: the active ones and the
// retired ones still in their grace period.
func (r *KeyRing) JWKS(now time.Time) jose.JSONWebKeySet {
	r.mu.RLock()
	defer r.mu.RUnlock()

	var set jose.JSONWebKeySet
	for _, alg := range algorithms {
		k := r.active[alg]
		set.Keys = append(set.Keys, k.Public())
	}
	for _, k := range r.retired {
		if now.Before(k.Until) {
			set.Keys = append(set.Keys, k.Key)
		}
	}

	return set
}

// KeyID returns the kid of the active key for alg, or "" for an algorithm
// the ring does not hold.
func (r *KeyRing) KeyID(alg string) string {
	r.mu.RLock()
	defer r.mu.RUnlock()

	return r.active[alg].KeyID
}

// TokenClaims are the claims of a token to mint.
type TokenClaims struct {
	Issuer   string
	Subject  string
	Audience []string
	ClientID string
	Scopes   []string
	Roles    []string
	// Extra claims; they cannot replace the registered ones above.
	Extra map[string]any
	// IssuedAt is iat and nbf; Expiry is exp.
	IssuedAt time.Time
	Expiry   time.Time
}

// Mint signs claims with the active key for alg (ES256 or RS256) and
// returns the compact token. The header carries the key's kid and
// typ "at+jwt".
func (r *KeyRing) Mint(alg string, c TokenClaims) (string, error) {
	r.mu.RLock()
	key, ok := r.active[alg]
	r.mu.RUnlock()
	if !ok {
		return "", fmt.Errorf("devissuer: no key for algorithm %q", alg)
	}

	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: key},
		(&jose.SignerOptions{}).WithType("at+jwt"),
	)
	if err != nil {
		return "", fmt.Errorf("devissuer: signer for %s: %w", alg, err)
	}

	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", fmt.Errorf("devissuer: token id: %w", err)
	}

	registered := jwt.Claims{
		Issuer:    c.Issuer,
		Subject:   c.Subject,
		Audience:  jwt.Audience(c.Audience),
		IssuedAt:  jwt.NewNumericDate(c.IssuedAt),
		NotBefore: jwt.NewNumericDate(c.IssuedAt),
		Expiry:    jwt.NewNumericDate(c.Expiry),
		ID:        hex.EncodeToString(jti),
	}
	private := map[string]any{}
	for k, v := range c.Extra {
		private[k] = v
	}
	if c.ClientID != "" {
		private["client_id"] = c.ClientID
	}
	if len(c.Scopes) > 0 {
		private["scope"] = joinScopes(c.Scopes)
	}
	if len(c.Roles) > 0 {
		private["roles"] = c.Roles
	}

	token, err := jwt.Signed(signer).Claims(private).Claims(registered).Serialize()
	if err != nil {
		return "", fmt.Errorf("devissuer: sign token: %w", err)
	}

	return token, nil
}
