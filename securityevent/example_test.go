package securityevent_test

import (
	"context"
	"fmt"
	"time"

	"github.com/gatehouse-dev/gatehouse/securityevent"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// ExampleAbuseGuard shows the calls an authentication middleware makes: it
// refuses blocked clients first and reports each failure.
func ExampleAbuseGuard() {
	events, err := securityevent.New(zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		panic(err)
	}
	guard, err := securityevent.NewAbuseGuard(securityevent.GuardConfig{
		MaxFailures: 2, Window: time.Minute, Cooldown: time.Minute, MaxTracked: 1000,
	}, events)
	if err != nil {
		panic(err)
	}

	const ip = "192.0.2.1"
	for attempt := 1; attempt <= 4; attempt++ {
		if guard.Blocked(ip) {
			fmt.Println(attempt, "refused")
			continue
		}

		// The credentials were bad:
		events.AuthFailure(context.Background(), securityevent.AuthFailure{
			Reason: securityevent.ReasonBadSignature, ClientIP: ip,
		})
		fmt.Println(attempt, "failed, blocked now:", guard.RecordFailure(ip))
	}
	// Output:
	// 1 failed, blocked now: false
	// 2 failed, blocked now: false
	// 3 failed, blocked now: true
	// 4 refused
}
