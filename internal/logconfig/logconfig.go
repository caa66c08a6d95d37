// Package logconfig builds the zap logger of a Gatehouse binary from its
// flags and environment. Only binaries (cmd/) call it; libraries take the
// resulting *zap.Logger as a parameter.
//
// Lines are kept in memory and written in batches, so a busy process pays
// one write(2) per batch rather than one per line. Limitation: a process
// that dies without running its deferred calls (SIGKILL, an unrecovered
// panic in a goroutine, a runtime fatal error) loses the lines of the last
// flush interval at most. Entries at error level and above are written at
// once, with every line before them, so the panics the gateway and the
// services recover, logged at error level, are never among the lost lines.
package logconfig

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

const (
	// DefaultFlushInterval is how long a line may wait in memory by default:
	// short enough that someone tailing the logs does not notice and that a
	// hard crash loses little, long enough that a busy gateway writes a few
	// hundred lines per write(2).
	DefaultFlushInterval = 100 * time.Millisecond

	// bufferSize is the most kept in memory; a line that would not fit
	// writes the batch at once, whatever the interval.
	bufferSize = 256 << 10

	envFlushInterval = "GATEHOUSE_LOG_FLUSH_INTERVAL"
)

// Flags are the logging settings of a binary.
type Flags struct {
	// Level is debug, info, warn or error.
	Level string
	// Format is json (production) or console (human-readable).
	Format string
	// FlushInterval is the longest a line waits in memory before it is
	// written; 0 (the zero Flags, without Register) writes each line at once.
	FlushInterval time.Duration

	// envErr is a bad GATEHOUSE_LOG_FLUSH_INTERVAL, reported by Build unless
	// -log-flush-interval replaced it.
	envErr error
}

// Register adds -log-level, -log-format and -log-flush-interval to fs.
// Defaults come from GATEHOUSE_LOG_LEVEL, GATEHOUSE_LOG_FORMAT and
// GATEHOUSE_LOG_FLUSH_INTERVAL, then info, json and DefaultFlushInterval.
// fs keeps a pointer to f: do not copy f after Register.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.Level, "log-level", envOr("GATEHOUSE_LOG_LEVEL", "info"),
		"log level: debug, info, warn, error (env GATEHOUSE_LOG_LEVEL)")
	fs.StringVar(&f.Format, "log-format", envOr("GATEHOUSE_LOG_FORMAT", "json"),
		"log format: json or console (env GATEHOUSE_LOG_FORMAT)")

	f.FlushInterval = DefaultFlushInterval
	if v := os.Getenv(envFlushInterval); v != "" {
		d, err := parseInterval(v)
		if err != nil {
			f.envErr = fmt.Errorf("%s=%q: %w", envFlushInterval, v, err)
		} else {
			f.FlushInterval = d
		}
	}
	fs.Var(intervalValue{f: f}, "log-flush-interval",
		"longest a log line waits in memory before it is written; 0 writes each at once;"+
			" errors are always written at once (env "+envFlushInterval+")")
}

// Build returns a logger for the settings, named after the binary, and a
// function that writes the lines still in memory and stops the goroutine
// that flushes them. Call it once the logger is no longer needed, on every
// path out of the program (a deferred call in main's body); lines logged
// after it are written at once.
func (f *Flags) Build(name string) (*zap.Logger, func() error, error) {
	return f.build(name, os.Stderr, os.Stderr)
}

// build is Build writing lines to out and zap's own errors to errOut.
func (f *Flags) build(
	name string,
	out, errOut zapcore.WriteSyncer,
) (*zap.Logger, func() error, error) {
	level, err := zapcore.ParseLevel(f.Level)
	if err != nil {
		return nil, nil, fmt.Errorf("log level %q: %w", f.Level, err)
	}

	enc, opts, err := encoder(f.Format)
	if err != nil {
		return nil, nil, err
	}

	if f.envErr != nil {
		return nil, nil, fmt.Errorf("log flush interval: %w", f.envErr)
	}
	if f.FlushInterval < 0 {
		return nil, nil, fmt.Errorf("log flush interval %s: want 0 or more", f.FlushInterval)
	}

	w := newWriter(out, errOut, bufferSize, f.FlushInterval)
	core := zapcore.NewCore(enc, w, level)
	if f.FlushInterval > 0 {
		core = &flushCore{Core: core, w: w}
	}
	opts = append(opts, zap.ErrorOutput(zapcore.Lock(errOut)), zap.AddCaller())

	return zap.New(core, opts...).Named(name), w.Close, nil
}

// encoder returns the encoder and options of format, as zap's production
// (json) and development (console) configurations have them, without
// sampling and without stack traces in console output.
func encoder(format string) (zapcore.Encoder, []zap.Option, error) {
	switch format {
	case "json":
		cfg := zap.NewProductionEncoderConfig()
		cfg.TimeKey = "ts"
		cfg.EncodeTime = zapcore.RFC3339NanoTimeEncoder

		return zapcore.NewJSONEncoder(cfg), []zap.Option{zap.AddStacktrace(zap.ErrorLevel)}, nil
	case "console":
		cfg := zap.NewDevelopmentEncoderConfig()

		return zapcore.NewConsoleEncoder(cfg), []zap.Option{zap.Development()}, nil
	default:
		return nil, nil, fmt.Errorf("log format %q: want json or console", format)
	}
}

// intervalValue is the flag.Value of -log-flush-interval.
type intervalValue struct{ f *Flags }

// String returns the current interval.
func (v intervalValue) String() string {
	if v.f == nil {
		return ""
	}

	return v.f.FlushInterval.String()
}

// Set parses s as the interval; it replaces the environment's value.
func (v intervalValue) Set(s string) error {
	d, err := parseInterval(s)
	if err != nil {
		return err
	}

	v.f.FlushInterval = d
	v.f.envErr = nil

	return nil
}

func parseInterval(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("want a duration such as 100ms, or 0: %w", err)
	}
	if d < 0 {
		return 0, errors.New("want 0 (write each line at once) or more")
	}

	return d, nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}

	return def
}
