package main

import (
	"flag"
	"time"

	"github.com/gatehouse-dev/gatehouse/gateway"
	"go.uber.org/zap"
)

// serverFlags are the command-line limits of the HTTP server. The
// per-route limits (body size, deadlines) keep the gateway's defaults.
type serverFlags struct {
	readHeaderTimeout time.Duration
	readTimeout       time.Duration
	writeTimeout      time.Duration
	idleTimeout       time.Duration
	maxHeaderBytes    int
}

func (f *serverFlags) register(fs *flag.FlagSet) {
	fs.DurationVar(&f.readHeaderTimeout, "http-read-header-timeout", 5*time.Second,
		"longest wait for a request's line and headers (slow clients are cut off)")
	fs.DurationVar(&f.readTimeout, "http-read-timeout", 15*time.Second,
		"longest wait for a whole request, body included (408 past it)")
	fs.DurationVar(&f.writeTimeout, "http-write-timeout", 15*time.Second,
		"longest write of an answer not under a route deadline")
	fs.DurationVar(&f.idleTimeout, "http-idle-timeout", 60*time.Second,
		"longest wait for the next request on a kept-alive connection")
	fs.IntVar(&f.maxHeaderBytes, "http-max-header-bytes", 64<<10,
		"hard cap on request line and headers (the JSON 431 starts at 16 KiB)")
}

func (f *serverFlags) config(logger *zap.Logger) gateway.ServerConfig {
	return gateway.ServerConfig{
		ReadHeaderTimeout: f.readHeaderTimeout,
		ReadTimeout:       f.readTimeout,
		WriteTimeout:      f.writeTimeout,
		IdleTimeout:       f.idleTimeout,
		MaxHeaderBytes:    f.maxHeaderBytes,
		Logger:            logger,
	}
}
