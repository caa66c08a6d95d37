package consulagent_test

import (
	"context"
	"os"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse-dev/gatehouse/internal/consulagent"
)

type tsWriter struct{ cancel context.CancelFunc; t0 time.Time }

func (c tsWriter) Write(p []byte) (int, error) {
	os.Stderr.WriteString(time.Since(c.t0).String() + " OUT " + string(p))
	c.cancel()
	return len(p), nil
}

func TestScratch(t *testing.T) {
	bin, _ := pidWrapper(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, _ := zap.NewDevelopment()
	t0 := time.Now()
	_, err := consulagent.Start(ctx, consulagent.Config{Bin: bin, Logger: l, LogOutput: tsWriter{cancel, t0}})
	t.Log(time.Since(t0), err)
}
