package metrics_test

import (
	"context"
	"time"

	"github.com/gatehouse-dev/gatehouse/metrics"
)

// ExampleNewAdmin builds a binary's registry and serves it on the admin
// listener until the context ends.
func ExampleNewAdmin() {
	reg, err := metrics.NewRegistry()
	if err != nil {
		panic(err)
	}
	endpoints, err := metrics.NewEndpoints(reg)
	if err != nil {
		panic(err)
	}
	endpoints.SetHealthy("catalog", 2)

	admin, err := metrics.NewAdmin("127.0.0.1:0", reg)
	if err != nil {
		panic(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := admin.Run(ctx); err != nil {
		panic(err)
	}
	// Output:
}
