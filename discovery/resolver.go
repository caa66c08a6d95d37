package discovery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
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

// minHoldWait is the shortest blocking time of a query while an empty
// answer is held, so that a hold about to end does not spin.
const minHoldWait = 100 * time.Millisecond

// ErrStale is reported to gRPC, wrapped, for each failed Consul query once a
// resolver's last known instances have gone unconfirmed for longer than the
// maximum staleness (WithMaxStaleness).
var ErrStale = errors.New("consul has not confirmed the instances for too long")

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
//
// When Consul fails, each resolver keeps its last known instances, retries
// with jittered exponential backoff (WithBackoff), logs the outage once and
// resumes with a fresh, non-blocking query when Consul answers again. Once
// the instances have gone unconfirmed for the maximum staleness
// (WithMaxStaleness), every further failure is reported to gRPC as an
// ErrStale. gRPC's balancers keep using connections that work after such a
// report; calls that find no ready connection fail with it, so the error
// says that discovery, not the instance, is the problem.
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

// watchState is what the watch loop carries from one query to the next.
type watchState struct {
	index  uint64
	last   []instance // the set gRPC has
	synced bool       // whether any set has been pushed yet

	failures    int       // consecutive failed queries
	outageStart time.Time // first failed query of the current outage

	// resync is set by a failed query or an index that went backwards, and
	// cleared by the first answer that is believed: Consul may have lost
	// its state, and a restarted agent lists no instance until the
	// instances register again.
	resync bool
	// staleSince is when the last pushed set stopped being confirmed by
	// Consul; zero while it is current.
	staleSince time.Time
	// holding is whether an empty answer during a resync is being ignored.
	holding bool
	// reported is whether staleness was reported to gRPC since staleSince.
	reported bool
}

// watch runs blocking queries until ctx is cancelled and pushes every change
// of the passing set to gRPC.
//
// Policy for an empty passing set: normally it is pushed as an empty
// address list, like any other answer. gRPC then fails RPCs fast with
// Unavailable (unless they are wait-for-ready) instead of sending them to
// instances Consul knows to be unhealthy, and recovers as soon as an
// instance passes again. The exception is an empty answer right after
// Consul failed or its index went backwards: that is what a restarted
// agent, which forgot every registration, says until the instances have
// registered again, so the last known set is kept until Consul lists a
// passing instance or the maximum staleness has passed.
//
// Errors talking to Consul say nothing about the instances, so the last
// known set is kept; once it is older than the maximum staleness, each
// failure is also reported to gRPC, wrapped in ErrStale.
//
// Limitation: instances that went away while Consul was down, or that
// never register again after it came back empty, stay in the set for up to
// the maximum staleness. Calls picked for them fail fast with Unavailable
// (their connections are gone), and retrying calls move on, but a service
// whose every instance went away answers those errors instead of failing
// fast with "no instances".
func (r *consulResolver) watch(ctx context.Context) {
	defer close(r.done)

	var st watchState

	for {
		entries, meta, err := r.query(ctx, st.index, r.waitTime(&st))
		if ctx.Err() != nil {
			return
		}

		if err != nil {
			if !sleepCtx(ctx, r.onFailure(&st, err)) {
				return
			}

			continue
		}

		r.onAnswer(&st, entries, meta)
	}
}

// waitTime is the blocking time of the next query: the configured one,
// shortened while an empty answer is held so that the hold ends on time.
func (r *consulResolver) waitTime(st *watchState) time.Duration {
	if !st.holding {
		return r.opts.waitTime
	}

	left := r.opts.maxStaleness - time.Since(st.staleSince)

	return max(min(left, r.opts.waitTime), minHoldWait)
}

// onFailure records a failed query, logs an outage once, tells gRPC what it
// must know, and returns the delay before the next query.
func (r *consulResolver) onFailure(st *watchState, err error) time.Duration {
	now := time.Now()

	st.failures++
	if st.failures == 1 {
		st.outageStart = now
		r.logger.Warn("consul query failed; keeping last known instances, retrying",
			zap.Bool("had_answer", st.synced), zap.Error(err))
	} else {
		r.logger.Debug("consul query failed again",
			zap.Int("failed_queries", st.failures), zap.Error(err))
	}

	// Consul may come back with fresh state and a lower index (a restarted
	// dev agent, a new leader of a rebuilt cluster); a non-blocking first
	// query after the outage finds out at once instead of blocking on an
	// index that may never be reached.
	st.index = 0
	st.resync = true

	if st.staleSince.IsZero() {
		st.staleSince = now
	}

	switch {
	case !st.synced:
		// Nothing to fall back on: gRPC fails calls with this error.
		r.cc.ReportError(err)
	case now.Sub(st.staleSince) >= r.opts.maxStaleness:
		r.reportStale(st, now, err)
	}

	return r.backoff(st.failures)
}

// reportStale tells gRPC that the set it has is older than the maximum
// staleness, logging it once per episode.
func (r *consulResolver) reportStale(st *watchState, now time.Time, cause error) {
	age := now.Sub(st.staleSince)

	if !st.reported {
		st.reported = true
		r.logger.Error("last known instances older than max staleness; reporting to grpc",
			zap.Duration("age", age), zap.Duration("max_staleness", r.opts.maxStaleness),
			zap.Error(cause))
	}

	r.cc.ReportError(fmt.Errorf("%w: service %q not confirmed by consul for %v: %w",
		ErrStale, r.service, age.Round(time.Millisecond), cause))
}

// onAnswer handles a successful query: it follows the index, and pushes the
// passing set to gRPC when it changed and is believed.
func (r *consulResolver) onAnswer(
	st *watchState, entries []*api.ServiceEntry, meta *api.QueryMeta,
) {
	now := time.Now()

	if st.failures > 0 {
		r.logger.Info("consul answering again",
			zap.Int("failed_queries", st.failures),
			zap.Duration("outage", now.Sub(st.outageStart)))

		st.failures = 0
	}

	if meta.LastIndex < st.index {
		r.logger.Info("consul index went backwards; starting over",
			zap.Uint64("index", meta.LastIndex), zap.Uint64("previous", st.index))

		st.resync = true
		if st.staleSince.IsZero() {
			st.staleSince = now
		}
	}

	st.index = nextIndex(st.index, meta.LastIndex)

	set := passingInstances(entries)
	if r.holdEmpty(st, set, now) {
		return
	}

	st.resync, st.holding, st.reported = false, false, false
	st.staleSince = time.Time{}

	if st.synced && slices.Equal(set, st.last) {
		return
	}

	r.push(set)
	st.last, st.synced = set, true
}

// holdEmpty reports whether set is an empty answer of a Consul that is
// resyncing, to be ignored in favour of the last known set; see watch.
func (r *consulResolver) holdEmpty(st *watchState, set []instance, now time.Time) bool {
	if !st.resync || len(set) > 0 || len(st.last) == 0 {
		return false
	}

	if age := now.Sub(st.staleSince); age >= r.opts.maxStaleness {
		r.logger.Warn("consul still lists no passing instance after max staleness; "+
			"dropping the last known instances",
			zap.Duration("age", age), zap.Int("dropped", len(st.last)))

		return false
	}

	if !st.holding {
		st.holding = true
		r.logger.Info("consul came back listing no passing instance; keeping the last "+
			"known until instances register again or max staleness passes",
			zap.Int("kept", len(st.last)), zap.Duration("max_staleness", r.opts.maxStaleness))
	}

	return true
}

// query runs one blocking health query for the passing instances.
func (r *consulResolver) query(
	ctx context.Context, index uint64, wait time.Duration,
) ([]*api.ServiceEntry, *api.QueryMeta, error) {
	timeout := wait + wait/8 + querySlack

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	q := (&api.QueryOptions{WaitIndex: index, WaitTime: wait}).WithContext(ctx)

	entries, meta, err := r.client.Health().Service(r.service, "", true, q)
	if err != nil {
		return nil, nil, fmt.Errorf("query consul health of service %q at index %d: %w",
			r.service, index, err)
	}

	return entries, meta, nil
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

	if r.opts.onChange != nil {
		r.opts.onChange(r.service, ids)
	}

	err := r.cc.UpdateState(resolver.State{Addresses: addrs, Endpoints: endpoints})
	if err != nil {
		// The balancer rejects an empty list (that is the fail-fast policy at
		// work); any later change of the set is pushed again regardless.
		r.logger.Debug("grpc rejected resolver state", zap.Int("count", len(set)), zap.Error(err))
	}
}

// backoff returns the delay before the query after failures failed ones.
func (r *consulResolver) backoff(failures int) time.Duration {
	return backoffDelay(r.opts.backoffBase, r.opts.backoffMax, failures)
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
