// Package policy holds the access rules of the gRPC methods a binary
// serves: which services may call each method over mutual TLS, and what the
// end user's token must carry. The rules are declared next to the API, as
// the (gatehouse.policy.v1.method) option of each RPC, and read from the
// generated descriptors at startup.
//
// Deny by default: Load refuses to build a policy in which a served method
// has no rule or a rule names a service that is not known, so a binary stops
// with a message naming the method rather than serving it open or closed by
// accident. A few services that come with gRPC itself have built-in rules:
//
//   - grpc.health.v1.Health: every known service, which includes "consul",
//     the identity Consul's agent presents for its health checks, and the
//     gateway for /readyz.
//   - grpc.reflection.v1 and v1alpha ServerReflection: nobody, unless
//     WithReflectionCallers names services. Reflection lists every method
//     and message; it is a tool for developers, not for workloads.
package policy

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	policyv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/policy/v1"
	"github.com/gatehouse-dev/gatehouse/identity"
)

// DefaultServices are the service identities a policy may name unless
// WithKnownServices says otherwise.
var DefaultServices = []string{"gateway", "orders", "catalog", "consul"}

// Names of the gRPC services with built-in rules.
const (
	HealthService          = "grpc.health.v1.Health"
	ReflectionService      = "grpc.reflection.v1.ServerReflection"
	ReflectionAlphaService = "grpc.reflection.v1alpha.ServerReflection"
)

var (
	// ErrMissingRule marks a served method without a rule (Load).
	ErrMissingRule = errors.New("method has no access rule")

	// ErrUnknownService marks a rule naming a service that is not known
	// (Load).
	ErrUnknownService = errors.New("rule names an unknown service")

	// ErrNoRule is returned by Check for a method the policy has no rule for.
	ErrNoRule = errors.New("no access rule for method")

	// ErrNotAllowed is returned by Check for a caller the rule does not list.
	ErrNotAllowed = errors.New("caller not allowed")
)

// Origin says where a rule comes from.
type Origin string

// The origins of rules.
const (
	// FromProto is a rule read from the method's proto option.
	FromProto Origin = "proto"
	// BuiltIn is one of this package's rules for gRPC's own services.
	BuiltIn Origin = "built-in"
)

// Rule is the access rule of one method.
type Rule struct {
	// Method is the full method name, "/package.Service/Method".
	Method string
	// Callers are the service names allowed to call it, sorted.
	Callers []string
	// User is the end-user rule from the proto option; nil for built-in
	// rules. The token interceptor of the JWT work reads it.
	User *policyv1.UserRule
	// Origin says where the rule comes from.
	Origin Origin
}

// Allows reports whether the service named caller may call the method.
func (r Rule) Allows(caller string) bool {
	_, found := slices.BinarySearch(r.Callers, caller)
	return found
}

// Option configures Load.
type Option func(*options)

type options struct {
	known             []string
	files             *protoregistry.Files
	reflectionCallers []string
}

// WithKnownServices replaces DefaultServices as the set of service names a
// rule may name.
func WithKnownServices(names ...string) Option {
	return func(o *options) { o.known = slices.Clone(names) }
}

// WithFiles reads descriptors from files instead of
// protoregistry.GlobalFiles, e.g. in tests.
func WithFiles(files *protoregistry.Files) Option {
	return func(o *options) { o.files = files }
}

// WithReflectionCallers lets the named services call server reflection; by
// default nobody can.
func WithReflectionCallers(names ...string) Option {
	return func(o *options) { o.reflectionCallers = slices.Clone(names) }
}

// Policy is the set of rules of the methods a binary serves. It never
// changes after Load and is safe for concurrent use.
type Policy struct {
	rules map[string]Rule
}

// Load builds the policy of the served services, as returned by
// grpc.Server.GetServiceInfo. Every served method must have a rule (built in,
// or the (gatehouse.policy.v1.method) option of its descriptor) naming only
// known services. All problems are reported at once, each naming its
// method; they wrap ErrMissingRule or ErrUnknownService.
func Load(served map[string]grpc.ServiceInfo, opts ...Option) (*Policy, error) {
	o := options{known: slices.Clone(DefaultServices), files: protoregistry.GlobalFiles}
	for _, opt := range opts {
		opt(&o)
	}

	known, err := knownSet(o.known)
	if err != nil {
		return nil, fmt.Errorf("load access policy: %w", err)
	}

	builtins := builtinCallers(o)

	p := &Policy{rules: map[string]Rule{}}

	var errs []error

	for _, svc := range sortedKeys(served) {
		for _, m := range served[svc].Methods {
			method := "/" + svc + "/" + m.Name

			rule, err := ruleFor(o.files, builtins, svc, m.Name)
			if err == nil {
				err = checkCallers(rule.Callers, known)
			}

			if err != nil {
				errs = append(errs, fmt.Errorf("method %s: %w", method, err))
				continue
			}

			rule.Method = method
			p.rules[method] = rule
		}
	}

	if len(errs) > 0 {
		return nil, fmt.Errorf("load access policy: %w", errors.Join(errs...))
	}

	return p, nil
}

// Rule returns the rule of fullMethod ("/package.Service/Method").
func (p *Policy) Rule(fullMethod string) (Rule, bool) {
	r, ok := p.rules[fullMethod]
	return r, ok
}

// Methods returns the full names of every method with a rule, sorted.
func (p *Policy) Methods() []string {
	return sortedKeys(p.rules)
}

// Check returns nil when the service named caller may call fullMethod, and
// otherwise an error wrapping ErrNoRule or ErrNotAllowed that says why.
func (p *Policy) Check(fullMethod, caller string) error {
	r, ok := p.rules[fullMethod]
	if !ok {
		return fmt.Errorf("%w %s", ErrNoRule, fullMethod)
	}

	if !r.Allows(caller) {
		if len(r.Callers) == 0 {
			return fmt.Errorf("%w: %s may not be called by any service (%s rule)",
				ErrNotAllowed, fullMethod, r.Origin)
		}

		return fmt.Errorf("%w: %s allows only %s (%s rule), not %q", ErrNotAllowed,
			fullMethod, strings.Join(r.Callers, ", "), r.Origin, caller)
	}

	return nil
}

func ruleFor(
	files *protoregistry.Files,
	builtins map[string][]string,
	svc, method string,
) (Rule, error) {
	if callers, ok := builtins[svc]; ok {
		return Rule{Callers: sortedUnique(callers), Origin: BuiltIn}, nil
	}

	d, err := files.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return Rule{}, fmt.Errorf("%w: service descriptor not registered: %w", ErrMissingRule, err)
	}

	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return Rule{}, fmt.Errorf("%w: %s is not a service", ErrMissingRule, svc)
	}

	md := sd.Methods().ByName(protoreflect.Name(method))
	if md == nil {
		return Rule{}, fmt.Errorf("%w: method not in the service descriptor", ErrMissingRule)
	}

	mo, ok := md.Options().(*descriptorpb.MethodOptions)
	if !ok || mo == nil || !proto.HasExtension(mo, policyv1.E_Method) {
		return Rule{}, fmt.Errorf("%w: add the (gatehouse.policy.v1.method) option to %s",
			ErrMissingRule, md.FullName())
	}

	mp, ok := proto.GetExtension(mo, policyv1.E_Method).(*policyv1.MethodPolicy)
	if !ok || mp == nil {
		return Rule{}, fmt.Errorf("%w: (gatehouse.policy.v1.method) of %s is unreadable",
			ErrMissingRule, md.FullName())
	}

	return Rule{Callers: sortedUnique(mp.GetCallers()), User: mp.GetUser(), Origin: FromProto}, nil
}

func builtinCallers(o options) map[string][]string {
	return map[string][]string{
		HealthService:          o.known,
		ReflectionService:      o.reflectionCallers,
		ReflectionAlphaService: o.reflectionCallers,
	}
}

func knownSet(names []string) (map[string]bool, error) {
	if len(names) == 0 {
		return nil, errors.New("no known services")
	}

	set := make(map[string]bool, len(names))
	for _, n := range names {
		if err := identity.ValidateService(n); err != nil {
			return nil, fmt.Errorf("known service: %w", err)
		}

		set[n] = true
	}

	return set, nil
}

func checkCallers(callers []string, known map[string]bool) error {
	var unknown []string
	for _, c := range callers {
		if !known[c] {
			unknown = append(unknown, fmt.Sprintf("%q", c))
		}
	}

	if len(unknown) > 0 {
		return fmt.Errorf("%w %s (known: %s)", ErrUnknownService, strings.Join(unknown, ", "),
			strings.Join(sortedKeys(known), ", "))
	}

	return nil
}

func sortedUnique(names []string) []string {
	out := slices.Clone(names)
	sort.Strings(out)

	return slices.Compact(out)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}

	sort.Strings(keys)

	return keys
}
