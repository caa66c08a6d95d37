package discovery

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/hashicorp/consul/api"
	"go.uber.org/zap"
)

// Maintain registers the instance and keeps it registered until ctx ends.
//
// A failed registration is retried with jittered exponential backoff
// (WithBackoff), so an instance started before its agent registers as soon
// as the agent answers. Once registered, Maintain follows the registration
// on the agent with blocking queries (WithWaitTime) and registers again
// when the agent no longer has it: an agent restarted without its data
// directory (any -dev agent) has forgotten every registration, and Consul
// removes an instance whose check stayed critical for
// DeregisterCriticalAfter. An outage of the agent is logged once, when it
// starts, and once more when the agent answers again.
//
// Stop Maintain (end ctx and wait for it to return) before Deregister, or
// it registers the instance again.
//
// Limitation: an instance removed on purpose through Consul's API while
// Maintain runs comes back; removing an instance is its owner's job.
func (r *Registrar) Maintain(ctx context.Context) {
	var (
		registered bool   // whether the agent had the registration at the last look
		hash       string // the registration's content hash at the last look
		failures   int    // consecutive failed requests
	)

	for {
		var err error

		if registered {
			registered, hash, err = r.lookup(ctx, hash)
		} else {
			err = r.Register(ctx)
			registered, hash = err == nil, ""
		}

		if ctx.Err() != nil {
			return
		}

		if err != nil {
			failures++
			r.logFailure(failures, err)

			if !sleepCtx(ctx, backoffDelay(r.opts.backoffBase, r.opts.backoffMax, failures)) {
				return
			}

			continue
		}

		if failures > 0 {
			r.logger.Info("consul agent answering again", zap.Int("failed_requests", failures))
			failures = 0
		}

		if !registered {
			r.logger.Warn("consul agent lost the registration; registering again")
		}
	}
}

// logFailure logs the first failure of an outage as a warning and the rest
// at debug level.
func (r *Registrar) logFailure(failures int, err error) {
	if failures == 1 {
		r.logger.Warn("consul agent request failed; retrying until it answers", zap.Error(err))
		return
	}

	r.logger.Debug("consul agent request failed again",
		zap.Int("failed_requests", failures), zap.Error(err))
}

// lookup asks the agent for the registration, blocking while its content
// hash is still hash (an empty hash does not block). It reports whether the
// agent has the registration, and the hash to block on next. A failed
// request keeps registered true, so the next attempt looks again.
func (r *Registrar) lookup(ctx context.Context, hash string) (bool, string, error) {
	wait := r.opts.waitTime

	ctx, cancel := context.WithTimeout(ctx, wait+wait/8+querySlack)
	defer cancel()

	q := (&api.QueryOptions{WaitHash: hash, WaitTime: wait}).WithContext(ctx)

	_, meta, err := r.client.Agent().Service(r.reg.ID, q)

	var status api.StatusError
	if errors.As(err, &status) && status.Code == http.StatusNotFound {
		return false, "", nil
	}

	if err != nil {
		return true, "", fmt.Errorf("look up service %q instance %q on the consul agent: %w",
			r.reg.Service, r.reg.ID, err)
	}

	return true, meta.LastContentHash, nil
}

// WaitNotPassing blocks until Consul no longer lists the instance among the
// passing instances of its service, that is until every resolver following
// Consul (NewResolverBuilder) has been told to drop it. Call it after the
// instance started failing its check (reported NOT_SERVING), with a
// deadline: failed queries are retried until ctx ends, and then it returns
// an error wrapping ctx's.
func (r *Registrar) WaitNotPassing(ctx context.Context) error {
	var (
		index    uint64
		failures int
	)

	for {
		passing, next, err := r.passing(ctx, index)
		if ctx.Err() != nil {
			return fmt.Errorf("wait for instance %q to leave the passing set: %w",
				r.reg.ID, ctx.Err())
		}

		if err == nil && !passing {
			return nil
		}

		if err == nil {
			index = next
			continue
		}

		failures++
		index = 0
		r.logger.Debug("consul query failed while waiting to leave the passing set",
			zap.Int("failed_queries", failures), zap.Error(err))

		if !sleepCtx(ctx, backoffDelay(r.opts.backoffBase, r.opts.backoffMax, failures)) {
			return fmt.Errorf("wait for instance %q to leave the passing set: %w: %w",
				r.reg.ID, ctx.Err(), err)
		}
	}
}

// passing runs one blocking health query and reports whether the instance
// is among the passing ones, and the index to block on next.
func (r *Registrar) passing(ctx context.Context, index uint64) (bool, uint64, error) {
	wait := r.opts.waitTime

	ctx, cancel := context.WithTimeout(ctx, wait+wait/8+querySlack)
	defer cancel()

	q := (&api.QueryOptions{WaitIndex: index, WaitTime: wait}).WithContext(ctx)

	entries, meta, err := r.client.Health().Service(r.reg.Service, "", true, q)
	if err != nil {
		return false, 0, fmt.Errorf("query consul health of service %q at index %d: %w",
			r.reg.Service, index, err)
	}

	listed := slices.ContainsFunc(entries, func(e *api.ServiceEntry) bool {
		return e != nil && e.Service != nil && e.Service.ID == r.reg.ID
	})

	return listed, nextIndex(index, meta.LastIndex), nil
}
