package gateway

import (
	"errors"
	"net/http"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// ServerConfig holds the limits of the HTTP server in front of the
// gateway. They bound what a client can hold before a route is known;
// once the gateway has read a request, its route's deadline takes over.
// Zero fields take the defaults named on each.
type ServerConfig struct {
	// ReadHeaderTimeout bounds reading the request line and headers; a
	// client that sends them slowly is disconnected. Default 5s.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading the whole request, body included; a body
	// that arrives too slowly gets 408. Default 15s.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing answers that are not under a route's
	// deadline: operational endpoints and early refusals. API routes set
	// their own. Default 15s.
	WriteTimeout time.Duration
	// IdleTimeout bounds how long a kept-alive connection may wait for its
	// next request. Default 60s.
	IdleTimeout time.Duration
	// MaxHeaderBytes is the server's hard cap on request line and headers;
	// past it (plus net/http's 4 KiB of slack) net/http itself answers 431
	// in plain text and closes. Keep it above Config.MaxHeaderBytes, whose
	// 431 is JSON. Default 64 KiB.
	MaxHeaderBytes int
	// Logger receives net/http's own error messages at warn level; nil
	// means no logging.
	Logger *zap.Logger
}

// Validate reports the first problem with c.
func (c *ServerConfig) Validate() error {
	switch {
	case c.ReadHeaderTimeout < 0, c.ReadTimeout < 0, c.WriteTimeout < 0, c.IdleTimeout < 0:
		return errors.New("gateway: negative server timeout")
	case c.MaxHeaderBytes < 0:
		return errors.New("gateway: negative server header limit")
	case c.ReadTimeout > 0 && c.ReadHeaderTimeout > c.ReadTimeout:
		return errors.New("gateway: read header timeout exceeds the read timeout")
	}

	return nil
}

// NewHTTPServer returns an http.Server serving h (normally a *Gateway)
// with the limits in cfg. The caller runs it (Serve on a listener) and
// shuts it down.
//
// The server speaks HTTP/1.1 only. It leaves "OPTIONS *" to h, so that
// answer has the same JSON shape as every other.
//
// Limitation: requests net/http cannot parse never reach h, so their
// answers are net/http's own plain text: 400 for a malformed request line
// or header, 431 past MaxHeaderBytes, 501 for an unknown Transfer-Encoding.
func NewHTTPServer(h http.Handler, cfg ServerConfig) (*http.Server, error) {
	if h == nil {
		return nil, errors.New("gateway: nil handler")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}

	setDefault(&cfg.ReadHeaderTimeout, 5*time.Second)
	setDefault(&cfg.ReadTimeout, 15*time.Second)
	setDefault(&cfg.WriteTimeout, 15*time.Second)
	setDefault(&cfg.IdleTimeout, 60*time.Second)
	setDefault(&cfg.MaxHeaderBytes, 64<<10)
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}

	errorLog, err := zap.NewStdLogAt(cfg.Logger.Named("http"), zapcore.WarnLevel)
	if err != nil {
		return nil, err
	}

	return &http.Server{
		Handler:                      h,
		ReadHeaderTimeout:            cfg.ReadHeaderTimeout,
		ReadTimeout:                  cfg.ReadTimeout,
		WriteTimeout:                 cfg.WriteTimeout,
		IdleTimeout:                  cfg.IdleTimeout,
		MaxHeaderBytes:               cfg.MaxHeaderBytes,
		DisableGeneralOptionsHandler: true,
		ErrorLog:                     errorLog,
	}, nil
}
