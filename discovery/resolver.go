package discovery

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/hashicorp/consul/api"
	"go.uber.org/zap"
	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/resolver"
)

// Scheme is the gRPC target scheme served by the resolver builder.
const Scheme = "consul"

// querySlack is added to the blocking query's wait time (plus the up to
// wait/16 jitter Consul adds) to bound a single query, so that a Consul that
// accepts the connection but never answers cannot stall the resolver.
const querySlack = 5 * time.Second

// Target returns the gRPC target that resolves service through Consul,
// "consul:///<service>".
func Target(service string) string {
	return Scheme + ":///" + service
}

// instanceIDKey is the attribute key under which the resolver stores the
// Consul instance id on each address and endpoint.
type instanceIDKey struct{}

// InstanceID returns the Consul instance id that the resolver attached to
// addr, and whether there was one.
func InstanceID(addr resolver.Address) (string, bool) {
	id, ok := addr.Attributes.Value(instanceIDKey{}).(string)

	return id, ok
}

// builder builds resolvers for consul:/// targets.
type builder struct {
	client *api.Client
	opts   options
}

// NewResolverBuilder returns a gRPC resolver builder for the "consul" scheme
// that queries Consul through client. It is not registered globally; pass it
// to grpc.NewClient with grpc.WithResolvers. It panics if client is nil or an
// option is invalid, as both are programming errors.
func NewResolverBuilder(client *api.Client, opts ...Option) resolver.Builder {
	if client == nil {
		panic("discovery: NewResolverBuilder: consul client must not be nil")
	}

	o, err := newOptions(opts)
	if err != nil {
		panic(fmt.Sprintf("discovery: NewResolverBuilder: %v", err))
	}

	o.logger = o.logger.Named("discovery")

	return &builder{client: client, opts: o}
}

// Scheme implements resolver.Builder.
func (b *builder) Scheme() string {
	return Scheme
}

// Build implements resolver.Builder. The target must be "consul:///<service>"
// with a valid service name and no authority.
func (b *builder) Build(
	target resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions,
) (resolver.Resolver, error) {
	if target.URL.Host != "" {
		return nil, fmt.Errorf("build resolver for %q: authority %q not supported, use %s",
			target.URL.String(), target.URL.Host, Target("<service>"))
	}

	service := target.Endpoint()
	if err := validateServiceName(service); err != nil {
		return nil, fmt.Errorf("build resolver for %q: %w", target.URL.String(), err)
	}

	ctx, cancel := context.WithCancel(context.Background())

	r := &consulResolver{
		client:  b.client,
		service: service,
		cc:      cc,
		opts:    b.opts,
		logger:  b.opts.logger.With(zap.String("service", service)),
		cancel:  cancel,
		done:    make(chan struct{}),
	}

	go r.watch(ctx)

	return r, nil
}

// consulResolver follows the passing instances of one service.
type consulResolver struct {
	client  *api.Client
	service string
	cc      resolver.ClientConn
	opts    options
	logger  *zap.Logger

	cancel context.CancelFunc
	done   chan struct{}
}

// instance is one passing service instance.
type instance struct {
	id   string
	addr string
}

// ResolveNow implements resolver.Resolver. It does nothing: the blocking
// queries already pick up every change as soon as Consul knows of it.
func (r *consulResolver) ResolveNow(resolver.ResolveNowOptions) {}

// Close implements resolver.Resolver. It stops the watch and waits for it.
func (r *consulResolver) Close() {
	r.cancel()
	<-r.done
}

// watch runs blocking queries until ctx is cancelled and pushes every change
// of the passing set to gRPC.
//
// Policy for an empty passing set: it is pushed as an empty address list,
// like any other answer. gRPC then fails RPCs fast with Unavailable (unless
// they are wait-for-ready) instead of sending them to instances Consul knows
// to be unhealthy, and recovers as soon as an instance passes again. Errors
// talking to Consul are different: they say nothing about the instances, so
// the last known set is kept.
func (r *consulResolver) watch(ctx context.Context) {
	defer close(r.done)

	var (
		index       uint64
		last        []instance
		synced      bool // whether any query has succeeded yet
		failures    int  // consecutive failed queries
		outageStart time.Time
	)

	for {
		entries, meta, err := r.query(ctx, index)
		if ctx.Err() != nil {
			return
		}

		if err != nil {
			failures++
			if failures == 1 {
				outageStart = time.Now()
			}

			r.onQueryError(err, failures, synced)

			// Consul may come back with fresh state and a lower index (a
			// restarted dev agent, a new leader of a rebuilt cluster); a
			// non-blocking first query after the outage finds out at once
			// instead of blocking on an index that may never be reached.
			index = 0

			if !sleepCtx(ctx, r.backoff(failures)) {
				return
			}

			continue
		}

		if failures > 0 {
			r.logger.Info("consul answering again",
				zap.Int("failed_queries", failures),
				zap.Duration("outage", time.Since(outageStart)))

			failures = 0
		}

		index = nextIndex(index, meta.LastIndex)

		set := passingInstances(entries)
		if synced && slices.Equal(set, last) {
			continue
		}

		r.push(set)
		last, synced = set, true
	}
}

// query runs one blocking health query for the passing instances.
func (r *consulResolver) query(
	ctx context.Context, index uint64,
) ([]*api.ServiceEntry, *api.QueryMeta, error) {
	timeout := r.opts.waitTime + r.opts.waitTime/8 + querySlack

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	q := (&api.QueryOptions{WaitIndex: index, WaitTime: r.opts.waitTime}).WithContext(ctx)

	entries, meta, err := r.client.Health().Service(r.service, "", true, q)
	if err != nil {
		return nil, nil, fmt.Errorf("query consul health of service %q at index %d: %w",
			r.service, index, err)
	}

	return entries, meta, nil
}

// onQueryError logs an outage once, at its first failed query, and tells
// gRPC about errors as long as there has never been an answer to fall back
// on.
func (r *consulResolver) onQueryError(err error, failures int, synced bool) {
	if failures == 1 {
		r.logger.Warn("consul query failed; keeping last known instances, retrying",
			zap.Bool("had_answer", synced), zap.Error(err))
	} else {
		r.logger.Debug("consul query failed again",
			zap.Int("failed_queries", failures), zap.Error(err))
	}

	if !synced {
		r.cc.ReportError(err)
	}
}

// push hands set to gRPC.
func (r *consulResolver) push(set []instance) {
	addrs := make([]resolver.Address, len(set))
	endpoints := make([]resolver.Endpoint, len(set))
	ids := make([]string, len(set))

	for i, in := range set {
		attrs := attributes.New(instanceIDKey{}, in.id)
		addrs[i] = resolver.Address{Addr: in.addr, Attributes: attrs}
		endpoints[i] = resolver.Endpoint{
			Addresses:  []resolver.Address{addrs[i]},
			Attributes: attrs,
		}
		ids[i] = in.id
	}

	r.logger.Info("passing instances changed",
		zap.Int("count", len(set)), zap.Strings("instance_ids", ids))

	err := r.cc.UpdateState(resolver.State{Addresses: addrs, Endpoints: endpoints})
	if err != nil {
		// The balancer rejects an empty list (that is the fail-fast policy at
		// work); any later change of the set is pushed again regardless.
		r.logger.Debug("grpc rejected resolver state", zap.Int("count", len(set)), zap.Error(err))
	}
}

// backoff returns the delay before retry number failures (1-based):
// exponential from the base, capped at the maximum, with the upper half
// jittered so that many clients do not retry in lockstep.
func (r *consulResolver) backoff(failures int) time.Duration {
	d := r.opts.backoffMax

	if shift := failures - 1; shift < 32 {
		if exp := r.opts.backoffBase << shift; exp > 0 && exp < d {
			d = exp
		}
	}

	half := d / 2

	return half + rand.N(half+1)
}

// nextIndex returns the wait index for the next blocking query. An index
// that went backwards (e.g. Consul lost its state) starts over with a
// non-blocking query, and 0 is never used after an answer since it would not
// block at all.
func nextIndex(prev, got uint64) uint64 {
	switch {
	case got < prev:
		return 0
	case got == 0:
		return 1
	default:
		return got
	}
}

// passingInstances turns health entries into a sorted, de-duplicated list.
// Entries without a service address fall back to the node address, as
// Consul's own DNS interface does.
func passingInstances(entries []*api.ServiceEntry) []instance {
	set := make([]instance, 0, len(entries))

	for _, e := range entries {
		if e == nil || e.Service == nil {
			continue
		}

		host := e.Service.Address
		if host == "" && e.Node != nil {
			host = e.Node.Address
		}

		if host == "" || e.Service.Port <= 0 {
			continue
		}

		set = append(set, instance{
			id:   e.Service.ID,
			addr: net.JoinHostPort(host, strconv.Itoa(e.Service.Port)),
		})
	}

	slices.SortFunc(set, func(a, b instance) int {
		return cmp.Or(cmp.Compare(a.addr, b.addr), cmp.Compare(a.id, b.id))
	})

	// Two registrations of one address (e.g. a restarted instance with a new
	// id whose old registration has not expired) need only one connection.
	return slices.CompactFunc(set, func(a, b instance) bool { return a.addr == b.addr })
}

// sleepCtx waits for d or until ctx is done; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()

	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
