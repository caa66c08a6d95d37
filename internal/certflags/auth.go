package certflags

import (
	"flag"
	"strings"

	"github.com/gatehouse-dev/gatehouse/policy"
)

// Auth are the caller-authorization settings of a service binary (see
// package policy and interceptors/peerauth).
type Auth struct {
	// KnownServices are the service names access rules may name.
	KnownServices []string
	// ReflectionCallers may call server reflection.
	ReflectionCallers []string
	// DryRun logs denials instead of denying.
	DryRun bool
}

// Register adds -known-services, -reflection-callers and -auth-dry-run to fs.
func (a *Auth) Register(fs *flag.FlagSet) {
	a.KnownServices = policy.DefaultServices

	fs.Func("known-services", "comma-separated service names access rules may name "+
		"(default "+strings.Join(policy.DefaultServices, ",")+")", func(s string) error {
		a.KnownServices = splitList(s)
		return nil
	})
	fs.Func("reflection-callers", "comma-separated services allowed to call server "+
		"reflection (default none)", func(s string) error {
		a.ReflectionCallers = splitList(s)
		return nil
	})
	fs.BoolVar(&a.DryRun, "auth-dry-run", false,
		"log calls the access policy would deny instead of denying them "+
			"(callers without a verified certificate are refused regardless)")
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if p := strings.TrimSpace(part); p != "" {
			out = append(out, p)
		}
	}

	return out
}
