package devstack

import (
	"fmt"
	"os"
	"path/filepath"

	"go.uber.org/zap"

	"github.com/gatehouse-dev/gatehouse/internal/consulagent"
	"github.com/gatehouse-dev/gatehouse/pki"
)

// preparePKI makes sure the stack's certificate directory holds a CA and a
// usable certificate for every identity, creating only what is missing or
// about to expire. It returns the directory and whether it is a temporary
// one that Stop must remove.
func preparePKI(cfg Config) (string, bool, error) {
	dir, temp := cfg.CertDir, false
	if dir != "" {
		// Consul and the services may run elsewhere than here.
		abs, err := filepath.Abs(dir)
		if err != nil {
			return "", false, fmt.Errorf("devstack: certificate directory %q: %w", dir, err)
		}

		dir = abs
	} else {
		d, err := os.MkdirTemp("", "gatehouse-certs-*")
		if err != nil {
			return "", false, fmt.Errorf("devstack: create certificate directory: %w", err)
		}

		dir, temp = d, true
	}

	written, err := pki.Dir(dir).Ensure(cfg.TrustDomain, pkiServices)
	if err != nil {
		if temp {
			_ = os.RemoveAll(dir)
		}

		return "", false, fmt.Errorf("devstack: %w", err)
	}

	if len(written) > 0 {
		cfg.Logger.Info("development pki updated", zap.String("dir", dir),
			zap.Strings("written", written))
	}

	return dir, temp, nil
}

// consulTLS is the agent configuration that makes Consul run its gRPC
// health checks over mutual TLS: it presents the "consul" certificate and
// verifies each instance against the CA bundle and the check's server name.
// See consulagent.ChecksOverMutualTLS for its limitation.
func consulTLS(dir pki.Dir) string {
	return consulagent.ChecksOverMutualTLS(dir.CACert(), dir.Cert("consul"), dir.Key("consul"))
}
