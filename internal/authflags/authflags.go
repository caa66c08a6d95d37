// Package authflags holds the bearer-token flags shared by the gateway and
// the services, and builds the one verifier and guard each binary uses, so
// the edge and every service check tokens the same way.
package authflags

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/gatehouse-dev/gatehouse/authz"
	"github.com/gatehouse-dev/gatehouse/interceptors/auth"
	"github.com/gatehouse-dev/gatehouse/jwtauth"
	"go.uber.org/zap"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// DefaultIssuer is where `make run` serves its dev OAuth 2.0 issuer.
const DefaultIssuer = "http://127.0.0.1:8081"

// Flags are the token settings of a binary.
type Flags struct {
	// Issuer is the exact iss of accepted tokens; its keys are found through
	// its OpenID discovery document unless JWKSFile is set.
	Issuer string
	// Audience the tokens must name.
	Audience string
	// Algorithms allowed, comma-separated.
	Algorithms string
	// JWKSFile reads the issuer's keys from a file instead of discovery.
	JWKSFile string
	// StartTimeout bounds the first key fetch.
	StartTimeout time.Duration
}

// Register adds the token flags to fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.Issuer, "jwt-issuer", DefaultIssuer,
		"issuer (iss) of accepted bearer tokens; keys via its OpenID discovery document")
	fs.StringVar(&f.Audience, "jwt-audience", "gatehouse", "audience bearer tokens must name")
	fs.StringVar(&f.Algorithms, "jwt-algorithms", "ES256,RS256",
		"signing algorithms accepted, comma-separated")
	fs.StringVar(&f.JWKSFile, "jwt-jwks-file", "",
		"read the issuer's keys from this JWKS file instead of discovery")
	fs.DurationVar(&f.StartTimeout, "jwt-start-timeout", time.Minute,
		"longest wait for the issuer's keys at startup")
}

// Verifier builds the token verifier and fetches the issuer's keys, waiting
// (with retries inside StartTimeout) for the issuer to come up. The caller
// closes it.
func (f *Flags) Verifier(ctx context.Context, logger *zap.Logger) (*jwtauth.Verifier, error) {
	v, err := f.NewVerifier(logger)
	if err != nil {
		return nil, err
	}

	ctx, cancel := context.WithTimeout(ctx, f.StartTimeout)
	defer cancel()

	if err := keepStarting(ctx, v, f.Issuer, logger); err != nil {
		_ = v.Close()
		return nil, err
	}

	return v, nil
}

// StartInBackground fetches the verifier's keys in a goroutine, retrying
// until it succeeds or ctx ends, so a binary can serve (and report not
// ready, and answer 503 to token checks) while the issuer is not up yet.
func (f *Flags) StartInBackground(ctx context.Context, v *jwtauth.Verifier, logger *zap.Logger) {
	go func() {
		if err := keepStarting(ctx, v, f.Issuer, logger); err != nil {
			logger.Warn("token issuer keys never fetched", zap.Error(err))
		}
	}()
}

// NewVerifier builds the token verifier without fetching keys yet.
func (f *Flags) NewVerifier(logger *zap.Logger) (*jwtauth.Verifier, error) {
	issuer := jwtauth.IssuerConfig{
		Issuer:     f.Issuer,
		Audiences:  []string{f.Audience},
		Algorithms: strings.Split(f.Algorithms, ","),
		Discovery:  f.JWKSFile == "",
		JWKSFile:   f.JWKSFile,
	}
	v, err := jwtauth.New([]jwtauth.IssuerConfig{issuer}, jwtauth.WithLogger(logger))
	if err != nil {
		return nil, fmt.Errorf("token verifier: %w", err)
	}

	return v, nil
}

// keepStarting retries v.Start every half second until it succeeds or ctx
// ends, logging the wait once.
func keepStarting(
	ctx context.Context,
	v *jwtauth.Verifier,
	issuer string,
	logger *zap.Logger,
) error {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()

	logged := false
	for {
		err := v.Start(ctx)
		if err == nil {
			if logged {
				logger.Info("token issuer keys fetched", zap.String("issuer", issuer))
			}
			return nil
		}
		if !logged {
			logger.Info("waiting for the token issuer's keys", zap.String("issuer", issuer),
				zap.Error(err))
			logged = true
		}

		select {
		case <-ctx.Done():
			return fmt.Errorf("fetch keys of issuer %q: %w", issuer, err)
		case <-tick.C:
		}
	}
}

// Guard builds the auth guard for the named gRPC services from the
// (gatehouse.policy.v1.method) options of their methods, plus rules for
// extra methods (e.g. health checks). It fails, naming each method, when a
// method has no rule: deny by default.
func Guard(
	verifier auth.TokenVerifier,
	logger *zap.Logger,
	services []string,
	extra ...authz.Option,
) (*auth.Guard, error) {
	return GuardWith(verifier, services, extra, auth.WithLogger(logger))
}

// GuardWith is Guard taking options for the guard itself, such as
// auth.WithLogger and auth.WithRefusalHook, after the extra rules.
func GuardWith(
	verifier auth.TokenVerifier,
	services []string,
	extra []authz.Option,
	opts ...auth.Option,
) (*auth.Guard, error) {
	descs, err := authz.FindServices(protoregistry.GlobalFiles, services...)
	if err != nil {
		return nil, err
	}

	policy, err := authz.Load(descs, extra...)
	if err != nil {
		return nil, err
	}

	return auth.New(verifier, policy, opts...)
}
