package authz

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	policyv1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/policy/v1"
	"github.com/gatehouse-dev/gatehouse/jwtauth"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// Policy maps gRPC full method names ("/pkg.Service/Method") to user
// rules. It is read-only after Load and safe for concurrent use.
type Policy struct {
	rules map[string]*policyv1.UserRule
}

type options struct {
	extra map[string]*policyv1.UserRule
}

// Option configures Load.
type Option func(*options)

// WithRule adds a rule for a method whose proto carries no
// (gatehouse.policy.v1.method) option, such as grpc.health.v1.Health/Check.
// Every such exception is then visible where the policy is built.
func WithRule(fullMethod string, rule *policyv1.UserRule) Option {
	return func(o *options) { o.extra[fullMethod] = rule }
}

// Load reads the user rule of every method of services. It fails, naming
// every method concerned, when a method has no user rule (wrapping
// ErrNoRule) or a rule is malformed; a binary should refuse to start then.
func Load(services []protoreflect.ServiceDescriptor, opts ...Option) (*Policy, error) {
	o := options{extra: make(map[string]*policyv1.UserRule)}
	for _, opt := range opts {
		opt(&o)
	}

	p := &Policy{rules: make(map[string]*policyv1.UserRule)}
	var errs []error
	for _, sd := range services {
		methods := sd.Methods()
		for i := range methods.Len() {
			md := methods.Get(i)
			name := FullMethod(md)
			rule, err := ruleOf(md)
			if _, ok := o.extra[name]; ok && errors.Is(err, ErrNoRule) {
				// The proto declares nothing; the WithRule exception is
				// added, and checked, with the others below.
				continue
			}
			if err != nil {
				errs = append(errs, err)
				continue
			}
			p.rules[name] = rule
		}
	}

	for _, name := range slices.Sorted(maps.Keys(o.extra)) {
		if err := p.addExtra(name, o.extra[name]); err != nil {
			errs = append(errs, err)
		}
	}

	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("authz: load policy: %w", err)
	}

	return p, nil
}

func (p *Policy) addExtra(fullMethod string, rule *policyv1.UserRule) error {
	if _, dup := p.rules[fullMethod]; dup {
		return fmt.Errorf("method %s: %w: given in its proto and with WithRule",
			fullMethod, ErrInvalidRule)
	}
	if !strings.HasPrefix(fullMethod, "/") || strings.Count(fullMethod, "/") != 2 {
		return fmt.Errorf("method %q: %w: want /package.Service/Method", fullMethod,
			ErrInvalidRule)
	}
	if rule == nil {
		return fmt.Errorf("method %s: %w (nil WithRule)", fullMethod, ErrNoRule)
	}
	if err := validateRule(rule); err != nil {
		return fmt.Errorf("method %s: %w", fullMethod, err)
	}

	p.rules[fullMethod] = proto.CloneOf(rule)

	return nil
}

// ruleOf returns the checked user rule declared on md.
func ruleOf(md protoreflect.MethodDescriptor) (*policyv1.UserRule, error) {
	name := FullMethod(md)

	opts := md.Options()
	if opts == nil || !proto.HasExtension(opts, policyv1.E_Method) {
		return nil, fmt.Errorf("method %s: %w: (gatehouse.policy.v1.method) option missing",
			name, ErrNoRule)
	}

	mp, ok := proto.GetExtension(opts, policyv1.E_Method).(*policyv1.MethodPolicy)
	if !ok || mp.GetUser() == nil {
		return nil, fmt.Errorf("method %s: %w: option has no user field", name, ErrNoRule)
	}

	if err := validateRule(mp.GetUser()); err != nil {
		return nil, fmt.Errorf("method %s: %w", name, err)
	}

	return proto.CloneOf(mp.GetUser()), nil
}

// validateRule refuses rules that cannot mean what their author intended.
func validateRule(r *policyv1.UserRule) error {
	if r.GetPublic() {
		return nil
	}

	if slices.Contains(r.GetScopes(), "") {
		return fmt.Errorf("%w: empty scope", ErrInvalidRule)
	}
	if slices.Contains(r.GetRoles(), "") {
		return fmt.Errorf("%w: empty role", ErrInvalidRule)
	}
	for _, c := range r.GetClaims() {
		if c.GetName() == "" {
			return fmt.Errorf("%w: claim match without a name", ErrInvalidRule)
		}
	}

	return nil
}

// FullMethod returns the gRPC name of md, "/package.Service/Method", as
// seen in grpc.UnaryServerInfo.FullMethod.
func FullMethod(md protoreflect.MethodDescriptor) string {
	return "/" + string(md.Parent().FullName()) + "/" + string(md.Name())
}

// FindServices looks services up by full name ("gatehouse.catalog.v1.
// CatalogService") in files, usually protoregistry.GlobalFiles.
func FindServices(
	files *protoregistry.Files,
	names ...string,
) ([]protoreflect.ServiceDescriptor, error) {
	out := make([]protoreflect.ServiceDescriptor, 0, len(names))
	for _, n := range names {
		d, err := files.FindDescriptorByName(protoreflect.FullName(n))
		if err != nil {
			return nil, fmt.Errorf("authz: find service %q: %w", n, err)
		}

		sd, ok := d.(protoreflect.ServiceDescriptor)
		if !ok {
			return nil, fmt.Errorf("authz: %q is a %T, not a service", n, d)
		}
		out = append(out, sd)
	}

	return out, nil
}

// Rule returns the user rule of fullMethod.
func (p *Policy) Rule(fullMethod string) (*policyv1.UserRule, bool) {
	r, ok := p.rules[fullMethod]
	return r, ok
}

// Methods returns every method with a rule, sorted.
func (p *Policy) Methods() []string {
	return slices.Sorted(maps.Keys(p.rules))
}

// Authorize checks principal against the rule of fullMethod. A method
// unknown to the policy is refused with ErrForbidden and ErrNoRule.
func (p *Policy) Authorize(fullMethod string, principal *jwtauth.Principal) error {
	rule, ok := p.rules[fullMethod]
	if !ok {
		return fmt.Errorf("%w: method %q: %w", ErrForbidden, fullMethod, ErrNoRule)
	}

	return Evaluate(rule, principal)
}
