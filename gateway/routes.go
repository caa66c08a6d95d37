package gateway

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// route is one HTTP binding of an RPC, read from its google.api.http
// option, with the limits that apply to it.
type route struct {
	method   string // HTTP method
	template string // path template as declared, e.g. /v1/orders/{id}:watch
	rpc      string // full gRPC method name
	body     bool   // the request message comes (partly) from the body
	stream   bool   // the server streams its answer

	segments []segment
	verb     string

	maxBody    int64
	timeout    time.Duration
	maxTimeout time.Duration
}

// segment is one path segment of a template: a literal or a variable that
// matches any single segment.
type segment struct {
	literal  string
	variable string // the variable's name; empty for a literal
}

// routeTable knows every route the mux serves. It is read-only after
// construction and so safe for concurrent use.
type routeTable struct {
	// byPattern is keyed by HTTP method and the pattern as grpc-gateway
	// renders it ("GET /v1/orders/{id=*}:watch").
	byPattern map[string]*route
	all       []*route
}

// newRouteTable reads the HTTP bindings of every service in files and
// gives each the limits of its kind, overridden by cfg.Routes.
func newRouteTable(cfg Config, files ...protoreflect.FileDescriptor) (*routeTable, error) {
	t := &routeTable{byPattern: map[string]*route{}}
	known := map[string]bool{}

	for _, fd := range files {
		for i := range fd.Services().Len() {
			methods := fd.Services().Get(i).Methods()
			for j := range methods.Len() {
				md := methods.Get(j)
				rpc := fmt.Sprintf("/%s/%s", md.Parent().FullName(), md.Name())
				known[rpc] = true

				if err := t.addMethod(cfg, rpc, md); err != nil {
					return nil, err
				}
			}
		}
	}

	for rpc := range cfg.Routes {
		if !known[rpc] {
			return nil, fmt.Errorf("gateway: limits given for unknown method %q", rpc)
		}
	}

	return t, nil
}

func (t *routeTable) addMethod(cfg Config, rpc string, md protoreflect.MethodDescriptor) error {
	rule, ok := proto.GetExtension(md.Options(), annotations.E_Http).(*annotations.HttpRule)
	if !ok || rule == nil {
		return nil // not exposed over HTTP
	}

	for _, b := range append([]*annotations.HttpRule{rule}, rule.GetAdditionalBindings()...) {
		method, template := httpBinding(b)
		if template == "" {
			return fmt.Errorf("gateway: %s has an HTTP binding without a path", rpc)
		}

		r := &route{
			method:   method,
			template: template,
			rpc:      rpc,
			body:     b.GetBody() != "",
			stream:   md.IsStreamingServer(),
		}
		if md.IsStreamingClient() {
			return fmt.Errorf("gateway: %s streams requests, which REST cannot carry", rpc)
		}

		var err error
		if r.segments, r.verb, err = parseTemplate(template); err != nil {
			return fmt.Errorf("gateway: route %s %s of %s: %w", method, template, rpc, err)
		}
		if err := r.setLimits(cfg, cfg.Routes[rpc]); err != nil {
			return err
		}

		t.byPattern[method+" "+r.pattern()] = r
		t.all = append(t.all, r)
	}

	return nil
}

func httpBinding(b *annotations.HttpRule) (method, template string) {
	switch p := b.GetPattern().(type) {
	case *annotations.HttpRule_Get:
		return http.MethodGet, p.Get
	case *annotations.HttpRule_Put:
		return http.MethodPut, p.Put
	case *annotations.HttpRule_Post:
		return http.MethodPost, p.Post
	case *annotations.HttpRule_Delete:
		return http.MethodDelete, p.Delete
	case *annotations.HttpRule_Patch:
		return http.MethodPatch, p.Patch
	case *annotations.HttpRule_Custom:
		return p.Custom.GetKind(), p.Custom.GetPath()
	}

	return "", ""
}

// parseTemplate splits a path template into segments and a verb. It
// accepts the subset our protos use: literal segments, single-segment
// variables "{name}" and a final ":verb".
//
// Limitation: templates with "*", "**" or "{name=pattern}" are refused at
// start-up; supporting them means matching them here the way grpc-gateway
// does.
func parseTemplate(template string) (segments []segment, verb string, err error) {
	if !strings.HasPrefix(template, "/") {
		return nil, "", fmt.Errorf("template %q does not start with /", template)
	}

	path := template[1:]
	if i := strings.LastIndexByte(path, ':'); i >= 0 && !strings.Contains(path[i:], "/") {
		path, verb = path[:i], path[i+1:]
	}

	for _, seg := range strings.Split(path, "/") {
		switch {
		case len(seg) > 2 && seg[0] == '{' && seg[len(seg)-1] == '}' &&
			!strings.ContainsAny(seg[1:len(seg)-1], "{}=*/:"):
			segments = append(segments, segment{variable: seg[1 : len(seg)-1]})
		case seg == "" || strings.ContainsAny(seg, "{}*=:"):
			return nil, "", fmt.Errorf("segment %q is not supported", seg)
		default:
			segments = append(segments, segment{literal: seg})
		}
	}

	return segments, verb, nil
}

// setLimits gives r the defaults of its kind, then the non-zero fields of
// override.
func (r *route) setLimits(cfg Config, override RouteLimits) error {
	r.timeout, r.maxTimeout = cfg.Timeout, cfg.MaxTimeout
	if r.stream {
		r.timeout, r.maxTimeout = cfg.StreamTimeout, cfg.MaxStreamTimeout
	}
	if r.body {
		r.maxBody = cfg.MaxBodyBytes
	}

	setOverride(&r.timeout, override.Timeout)
	setOverride(&r.maxTimeout, override.MaxTimeout)
	if r.body {
		setOverride(&r.maxBody, override.MaxBodyBytes)
	}

	if r.timeout > r.maxTimeout {
		return fmt.Errorf("gateway: route %s %s: timeout %v exceeds its maximum %v",
			r.method, r.template, r.timeout, r.maxTimeout)
	}

	return nil
}

func setOverride[T int64 | time.Duration](v *T, override T) {
	if override != 0 {
		*v = override
	}
}

// pattern renders the template the way grpc-gateway's Pattern.String does,
// which is how the mux middleware finds the route it matched.
func (r *route) pattern() string {
	var b strings.Builder
	for _, seg := range r.segments {
		b.WriteByte('/')
		if seg.variable != "" {
			b.WriteString("{" + seg.variable + "=*}")
			continue
		}
		b.WriteString(seg.literal)
	}
	if r.verb != "" {
		b.WriteString(":" + r.verb)
	}

	return b.String()
}

// matches reports whether the unescaped path fits r's template, splitting
// it the way grpc-gateway's mux does in its default unescaping mode.
func (r *route) matches(path string) bool {
	// One segment per slash: counting first spares splitting a path of
	// the wrong length, which a client can make as long as its headers.
	if !strings.HasPrefix(path, "/") || strings.Count(path, "/") != len(r.segments) {
		return false
	}

	comps := strings.Split(path[1:], "/")
	if r.verb != "" {
		last := comps[len(comps)-1]
		base, ok := strings.CutSuffix(last, ":"+r.verb)
		if !ok || base == "" {
			return false
		}
		comps[len(comps)-1] = base
	}
	if len(comps) != len(r.segments) {
		return false
	}

	for i, seg := range r.segments {
		if seg.variable == "" && seg.literal != comps[i] {
			return false
		}
	}

	return true
}

// lookup returns the route the mux matched for r, or nil. Inside the mux
// middleware it is the one labelRoute found; rendering the pattern to find
// it costs a few allocations, so that is done once per request.
func (t *routeTable) lookup(r *http.Request) *route {
	if st := routedFrom(r.Context()); st != nil {
		return st.route
	}

	pat, ok := runtime.HTTPPattern(r.Context())
	if !ok {
		return nil
	}

	return t.byPattern[r.Method+" "+pat.String()]
}

// match returns the route for the HTTP method and path, or nil; method ""
// takes any method. A route with a verb wins over one whose variable
// would take the verb in, as in the mux: "/v1/orders/a:watch" is the
// watch route's. It serves callers outside the mux, which have no matched
// pattern to look up.
func (t *routeTable) match(method, path string) *route {
	var found *route
	for _, r := range t.all {
		if (method != "" && r.method != method) || !r.matches(path) {
			continue
		}
		if r.verb != "" {
			return r
		}
		if found == nil {
			found = r
		}
	}

	return found
}

// template returns the path template of a route that matches path, to
// label a request no route took (a 405, or a refusal before the mux); ""
// when no route matches.
func (t *routeTable) template(path string) string {
	if r := t.match("", path); r != nil {
		return r.template
	}

	return ""
}

// allowed lists the methods with a route for path, sorted, for the Allow
// header of a 405.
func (t *routeTable) allowed(path string) []string {
	var methods []string
	for _, r := range t.all {
		if r.matches(path) && !slices.Contains(methods, r.method) {
			methods = append(methods, r.method)
		}
	}
	slices.Sort(methods)

	return methods
}
