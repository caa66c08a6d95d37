package host

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"

	"github.com/gatehouse-dev/gatehouse/authz"
	policyv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/policy/v1"
	"github.com/gatehouse-dev/gatehouse/interceptors/auth"
	"github.com/gatehouse-dev/gatehouse/internal/authflags"
)

// publicBuiltins are the methods of the services every host registers
// itself, whose protos carry no user rule. They need no user token:
//
//   - grpc.health.v1.Health is called by Consul and by dependent services
//     on their own behalf, never for a user;
//   - server reflection is a developer's tool, and whether a service may
//     use it at all is the mTLS policy's decision, which denies it to every
//     caller unless Config.ReflectionCallers names some. A user token would
//     add nothing there.
//
// Any other method of those services is refused at startup: deny by
// default.
var publicBuiltins = []string{
	healthpb.Health_Check_FullMethodName,
	healthpb.Health_Watch_FullMethodName,
	healthpb.Health_List_FullMethodName,
	reflectionv1.ServerReflection_ServerReflectionInfo_FullMethodName,
	reflectionv1alpha.ServerReflection_ServerReflectionInfo_FullMethodName,
}

// errGuardNotLoaded refuses calls that come before Run built the guard;
// none can, since the server only accepts connections afterwards.
var errGuardNotLoaded = status.Error(codes.Unavailable, "not ready")

// servedGuard is the end-user token guard of the served methods. The
// interceptor chain is built by New, before services are registered; Run
// builds the guard from their rules once they are. It is safe for
// concurrent use.
type servedGuard struct {
	g atomic.Pointer[guardInterceptors]
}

type guardInterceptors struct {
	unary  grpc.UnaryServerInterceptor
	stream grpc.StreamServerInterceptor
}

// unary is the guard's unary interceptor, refusing everything until loaded.
func (s *servedGuard) unary(
	ctx context.Context,
	req any,
	info *grpc.UnaryServerInfo,
	handler grpc.UnaryHandler,
) (any, error) {
	g := s.g.Load()
	if g == nil {
		return nil, errGuardNotLoaded
	}

	return g.unary(ctx, req, info, handler)
}

// stream is the guard's stream interceptor, refusing everything until
// loaded.
func (s *servedGuard) stream(
	srv any,
	ss grpc.ServerStream,
	info *grpc.StreamServerInfo,
	handler grpc.StreamHandler,
) error {
	g := s.g.Load()
	if g == nil {
		return errGuardNotLoaded
	}

	return g.stream(srv, ss, info, handler)
}

// finishChain completes the parts of the interceptor chain that need the
// registered services: the end-user token guard, built from their user
// rules (an error names every method without one), and the metrics of
// every method, reported at zero before its first call.
func (h *Host) finishChain() error {
	services, builtins, err := guardScope(h.server.GetServiceInfo())
	if err != nil {
		return fmt.Errorf("host: %s: user rules: %w", h.cfg.Service, err)
	}

	g, err := authflags.GuardWith(h.cfg.Tokens, services, builtins,
		auth.WithLogger(h.logger), auth.WithRefusalHook(h.tokenRefused))
	if err != nil {
		return fmt.Errorf("host: %s: %w", h.cfg.Service, err)
	}

	h.guard.g.Store(&guardInterceptors{
		unary:  g.UnaryServerInterceptor(),
		stream: g.StreamServerInterceptor(),
	})
	h.logger.Info("user token rules loaded", zap.Strings("services", services))

	if h.metrics != nil {
		h.metrics.InitializeMetrics(h.server)
	}

	return nil
}

// guardScope splits the served services into those whose user rules come
// from their proto options, and public rules for the methods of the
// built-in ones (health, reflection) listed in publicBuiltins. A built-in
// method not listed there is an error wrapping authz.ErrNoRule.
func guardScope(served map[string]grpc.ServiceInfo) ([]string, []authz.Option, error) {
	var (
		services []string
		builtins []authz.Option
		errs     []error
	)

	for _, name := range slices.Sorted(maps.Keys(served)) {
		if name != healthpb.Health_ServiceDesc.ServiceName &&
			!strings.HasPrefix(name, "grpc.reflection.") {
			services = append(services, name)
			continue
		}

		for _, m := range served[name].Methods {
			method := "/" + name + "/" + m.Name
			if !slices.Contains(publicBuiltins, method) {
				errs = append(errs, fmt.Errorf("method %s: %w", method, authz.ErrNoRule))
				continue
			}

			builtins = append(builtins, authz.WithRule(method, &policyv1.UserRule{Public: true}))
		}
	}

	return services, builtins, errors.Join(errs...)
}
