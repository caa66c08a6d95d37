package discovery

import (
	"encoding/json"
	"fmt"
	"sort"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// ServiceConfig is the plain gRPC service config for connections dialed
// through this package's resolver: round-robin over every passing instance,
// so load spreads and a failed instance's share moves to the others.
const ServiceConfig = `{"loadBalancingConfig":[{"round_robin":{}}]}`

// RetryPolicy is the retry policy applied to safe methods by
// RetryingServiceConfig.
type RetryPolicy struct {
	MaxAttempts          int      `json:"maxAttempts"`
	InitialBackoff       string   `json:"initialBackoff"`
	MaxBackoff           string   `json:"maxBackoff"`
	BackoffMultiplier    float64  `json:"backoffMultiplier"`
	RetryableStatusCodes []string `json:"retryableStatusCodes"`
}

// DefaultRetryPolicy retries twice, quickly, and only on UNAVAILABLE: the
// code of a call that failed because its instance went away.
var DefaultRetryPolicy = RetryPolicy{
	MaxAttempts:          3,
	InitialBackoff:       "0.01s",
	MaxBackoff:           "0.1s",
	BackoffMultiplier:    2,
	RetryableStatusCodes: []string{"UNAVAILABLE"},
}

type methodName struct {
	Service string `json:"service"`
	Method  string `json:"method"`
}

type methodConfig struct {
	Name        []methodName `json:"name"`
	RetryPolicy RetryPolicy  `json:"retryPolicy"`
}

type serviceConfig struct {
	LoadBalancingConfig []map[string]struct{} `json:"loadBalancingConfig"`
	MethodConfig        []methodConfig        `json:"methodConfig,omitempty"`
}

// RetryingServiceConfig returns ServiceConfig plus a retry policy for every
// method of the named services whose proto declares it safe to repeat
// (idempotency_level NO_SIDE_EFFECTS or IDEMPOTENT). Such a call that fails
// with UNAVAILABLE, because its instance crashed, is retried on another
// instance; any other method is never retried, so an order is never placed
// twice. Services are looked up in the global protobuf registry, which
// holds every generated package the binary links.
//
// Limitation: gRPC retries only a call that got no response headers, so an
// UNAVAILABLE returned by a handler of a server that sets headers early
// (services/host names the instance in a header on every call) is final.
// What is retried is the call whose instance went away before answering:
// a crash, a refused connection, a connection closed under it.
func RetryingServiceConfig(policy RetryPolicy, services ...string) (string, error) {
	var names []methodName
	for _, svc := range services {
		desc, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
		if err != nil {
			return "", fmt.Errorf("discovery: find service %q: %w", svc, err)
		}
		sd, ok := desc.(protoreflect.ServiceDescriptor)
		if !ok {
			return "", fmt.Errorf("discovery: %q is not a service", svc)
		}
		names = append(names, safeMethods(sd)...)
	}
	sort.Slice(names, func(i, j int) bool {
		return names[i].Service+"/"+names[i].Method < names[j].Service+"/"+names[j].Method
	})

	cfg := serviceConfig{LoadBalancingConfig: []map[string]struct{}{{"round_robin": {}}}}
	if len(names) > 0 {
		cfg.MethodConfig = []methodConfig{{Name: names, RetryPolicy: policy}}
	}

	b, err := json.Marshal(cfg)
	if err != nil {
		return "", fmt.Errorf("discovery: encode service config: %w", err)
	}

	return string(b), nil
}

func safeMethods(sd protoreflect.ServiceDescriptor) []methodName {
	var out []methodName
	methods := sd.Methods()
	for i := range methods.Len() {
		md := methods.Get(i)
		opts, ok := md.Options().(*descriptorpb.MethodOptions)
		if !ok {
			continue
		}
		switch opts.GetIdempotencyLevel() {
		case descriptorpb.MethodOptions_NO_SIDE_EFFECTS, descriptorpb.MethodOptions_IDEMPOTENT:
			out = append(out, methodName{Service: string(sd.FullName()), Method: string(md.Name())})
		}
	}

	return out
}
