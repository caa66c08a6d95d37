package ratelimit

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
)

// ErrInvalidPolicy is returned (wrapped) by Policy.Validate and Config.Validate.
var ErrInvalidPolicy = errors.New("invalid rate limit policy")

// sharedScope names the bucket shared by every route that has no rule of
// its own.
const sharedScope = "*"

// Policy declares the limits of one stage: a default Rule, overrides per
// gRPC method and per HTTP route, and overrides per principal class (a
// claim or scope value such as a plan tier).
//
// For a request, the most specific entry wins, in this order:
//
//  1. the class's rule for the method or route,
//  2. the rule for the method or route,
//  3. the class's default,
//  4. Default.
//
// So a class never loosens a route's own rule unless it names that route.
// An HTTP request can match both a route and, when the stage knows which
// RPC it calls, a method; the route then comes first within 1 and 2.
//
// A request matched by a method or route rule (1 or 2) draws from a bucket
// of its own for that method or route; every other request of the same
// caller shares one bucket.
type Policy struct {
	// Default applies when nothing more specific does.
	Default Rule `json:"default"`
	// Methods maps a gRPC full method ("/pkg.Service/Method") or a whole
	// service ("/pkg.Service/*") to its rule.
	Methods map[string]Rule `json:"methods,omitempty"`
	// Routes maps an HTTP route, written as a net/http ServeMux pattern
	// ("POST /v1/orders", "GET /v1/products/{id}"), to its rule. The most
	// specific matching pattern applies, as in ServeMux.
	Routes map[string]Rule `json:"routes,omitempty"`
	// Classes maps a principal class to its overrides.
	Classes map[string]ClassPolicy `json:"classes,omitempty"`
	// DryRun makes the stage count and log the requests it would refuse
	// while refusing none.
	DryRun bool `json:"dryRun,omitempty"`
}

// ClassPolicy holds the overrides for one principal class.
type ClassPolicy struct {
	// Default replaces Policy.Default for the class; nil keeps it.
	Default *Rule `json:"default,omitempty"`
	// Methods are per-method rules for the class, as in Policy.Methods.
	Methods map[string]Rule `json:"methods,omitempty"`
	// Routes are per-route rules for the class, as in Policy.Routes.
	Routes map[string]Rule `json:"routes,omitempty"`
}

// Validate reports every problem with p, one per line, naming the entry.
func (p *Policy) Validate() error {
	_, err := compilePolicy(p)
	return err
}

// compiledPolicy answers "which rule and which bucket" for a request.
type compiledPolicy struct {
	policy Policy
	// methods and classMethods index Policy.Methods and each class's.
	methods      methodRules
	classMethods map[string]methodRules
	// routes matches HTTP requests against Policy.Routes; nil when empty.
	routes *http.ServeMux
	// classRoutes does the same for each class's Routes.
	classRoutes map[string]*http.ServeMux
}

func compilePolicy(p *Policy) (*compiledPolicy, error) {
	c := &compiledPolicy{
		policy:       clonePolicy(p),
		methods:      newMethodRules(p.Methods),
		classMethods: map[string]methodRules{},
		classRoutes:  map[string]*http.ServeMux{},
	}

	var errs []error
	check := func(where string, r Rule) {
		if err := r.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
		}
	}

	checkMaps := func(prefix string, methods, routes map[string]Rule) *http.ServeMux {
		for _, m := range slices.Sorted(maps.Keys(methods)) {
			where := fmt.Sprintf("%smethods[%q]", prefix, m)
			if err := checkMethodName(m); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
			}

			check(where, methods[m])
		}

		for _, r := range slices.Sorted(maps.Keys(routes)) {
			check(fmt.Sprintf("%sroutes[%q]", prefix, r), routes[r])
		}

		mux, err := routeMux(prefix, routes)
		if err != nil {
			errs = append(errs, err)
		}

		return mux
	}

	check("default", p.Default)
	c.routes = checkMaps("", p.Methods, p.Routes)

	for _, name := range slices.Sorted(maps.Keys(p.Classes)) {
		cp := p.Classes[name]
		prefix := fmt.Sprintf("classes[%q].", name)
		if name == "" {
			errs = append(errs, errors.New(`classes[""]: a class needs a name`))
		}

		if cp.Default != nil {
			check(prefix+"default", *cp.Default)
		}

		c.classMethods[name] = newMethodRules(cp.Methods)
		if mux := checkMaps(prefix, cp.Methods, cp.Routes); mux != nil {
			c.classRoutes[name] = mux
		}
	}

	if len(errs) > 0 {
		return nil, fmt.Errorf("%w:\n%w", ErrInvalidPolicy, errors.Join(errs...))
	}

	return c, nil
}

// clonePolicy copies p's maps, so a caller changing its Policy later cannot
// race with the requests using it.
func clonePolicy(p *Policy) Policy {
	out := *p
	out.Methods = maps.Clone(p.Methods)
	out.Routes = maps.Clone(p.Routes)
	out.Classes = make(map[string]ClassPolicy, len(p.Classes))
	for name, cp := range p.Classes {
		if cp.Default != nil {
			d := *cp.Default
			cp.Default = &d
		}

		cp.Methods = maps.Clone(cp.Methods)
		cp.Routes = maps.Clone(cp.Routes)
		out.Classes[name] = cp
	}

	return out
}

// checkMethodName accepts "/pkg.Service/Method" and "/pkg.Service/*".
func checkMethodName(m string) error {
	service, method, ok := strings.Cut(strings.TrimPrefix(m, "/"), "/")
	if !strings.HasPrefix(m, "/") || !ok || service == "" || method == "" ||
		strings.ContainsAny(m, " \t|") || strings.Contains(method, "/") {
		return errors.New(`want a gRPC full method "/pkg.Service/Method" or "/pkg.Service/*"`)
	}

	return nil
}

// routeMux registers every route pattern in a ServeMux used only for
// matching. ServeMux reports a bad or conflicting pattern by panicking,
// which registerPattern turns into an error.
func routeMux(prefix string, routes map[string]Rule) (*http.ServeMux, error) {
	if len(routes) == 0 {
		return nil, nil
	}

	mux := http.NewServeMux()
	noop := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	for _, p := range slices.Sorted(maps.Keys(routes)) {
		if strings.Contains(p, "|") {
			return nil, fmt.Errorf("%sroutes[%q]: a pattern may not contain '|'", prefix, p)
		}

		if err := registerPattern(mux, p, noop); err != nil {
			return nil, fmt.Errorf("%sroutes[%q]: %w", prefix, p, err)
		}
	}

	return mux, nil
}

func registerPattern(mux *http.ServeMux, pattern string, h http.Handler) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("not a usable ServeMux pattern: %v", v)
		}
	}()

	mux.Handle(pattern, h)

	return nil
}

// forMethod returns the rule and bucket scope for a gRPC method.
func (c *compiledPolicy) forMethod(fullMethod, class string) (Rule, string) {
	cls, hasClass := c.policy.Classes[class]
	if class == "" {
		hasClass = false
	}

	if hasClass {
		if r, scope, ok := c.classMethods[class].find(fullMethod); ok {
			return r, scope
		}
	}

	if r, scope, ok := c.methods.find(fullMethod); ok {
		return r, scope
	}

	return c.fallback(cls, hasClass)
}

// methodRules indexes per-method rules for lookups that do not allocate.
type methodRules struct {
	exact map[string]Rule
	// byService maps "/pkg.Service/" to the rule written "/pkg.Service/*".
	byService map[string]serviceRule
}

type serviceRule struct {
	rule  Rule
	scope string
}

func newMethodRules(m map[string]Rule) methodRules {
	mr := methodRules{exact: map[string]Rule{}, byService: map[string]serviceRule{}}
	for name, r := range m {
		if service, ok := strings.CutSuffix(name, "/*"); ok {
			mr.byService[service+"/"] = serviceRule{rule: r, scope: name}
		} else {
			mr.exact[name] = r
		}
	}

	return mr
}

// find returns the rule for fullMethod and its scope, the name it was
// configured under.
func (mr methodRules) find(fullMethod string) (Rule, string, bool) {
	if r, ok := mr.exact[fullMethod]; ok {
		return r, fullMethod, true
	}

	i := strings.LastIndexByte(fullMethod, '/')
	if i <= 0 {
		return Rule{}, "", false
	}

	sr, ok := mr.byService[fullMethod[:i+1]]

	return sr.rule, sr.scope, ok
}

// forRequest returns the rule and bucket scope for an HTTP request that
// calls fullMethod ("" when unknown). Routes are more specific than
// methods, as they are written for HTTP.
func (c *compiledPolicy) forRequest(r *http.Request, fullMethod, class string) (Rule, string) {
	cls, hasClass := c.policy.Classes[class]
	if class == "" {
		hasClass = false
	}

	if hasClass {
		if rule, pattern, ok := matchRoute(c.classRoutes[class], cls.Routes, r); ok {
			return rule, pattern
		}

		if rule, scope, ok := c.classMethods[class].find(fullMethod); ok && fullMethod != "" {
			return rule, scope
		}
	}

	if rule, pattern, ok := matchRoute(c.routes, c.policy.Routes, r); ok {
		return rule, pattern
	}

	if rule, scope, ok := c.methods.find(fullMethod); ok && fullMethod != "" {
		return rule, scope
	}

	return c.fallback(cls, hasClass)
}

func matchRoute(mux *http.ServeMux, routes map[string]Rule, r *http.Request) (Rule, string, bool) {
	if mux == nil {
		return Rule{}, "", false
	}

	_, pattern := mux.Handler(r)
	rule, ok := routes[pattern]

	return rule, pattern, ok
}

func (c *compiledPolicy) fallback(cls ClassPolicy, hasClass bool) (Rule, string) {
	if hasClass && cls.Default != nil {
		return *cls.Default, sharedScope
	}

	return c.policy.Default, sharedScope
}
