// Package logconfig builds the zap logger of a Gatehouse binary from its
// flags and environment. Only binaries (cmd/) call it; libraries take the
// resulting *zap.Logger as a parameter.
package logconfig

import (
	"flag"
	"fmt"
	"os"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Flags are the logging settings of a binary.
type Flags struct {
	// Level is debug, info, warn or error.
	Level string
	// Format is json (production) or console (human-readable).
	Format string
}

// Register adds -log-level and -log-format to fs. Defaults come from
// GATEHOUSE_LOG_LEVEL and GATEHOUSE_LOG_FORMAT, then info and json.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.Level, "log-level", envOr("GATEHOUSE_LOG_LEVEL", "info"),
		"log level: debug, info, warn, error (env GATEHOUSE_LOG_LEVEL)")
	fs.StringVar(&f.Format, "log-format", envOr("GATEHOUSE_LOG_FORMAT", "json"),
		"log format: json or console (env GATEHOUSE_LOG_FORMAT)")
}

// Build returns a logger for the settings, named after the binary.
func (f *Flags) Build(name string) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(f.Level)
	if err != nil {
		return nil, fmt.Errorf("log level %q: %w", f.Level, err)
	}

	var cfg zap.Config
	switch f.Format {
	case "json":
		cfg = zap.NewProductionConfig()
		cfg.EncoderConfig.TimeKey = "ts"
		cfg.EncoderConfig.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	case "console":
		cfg = zap.NewDevelopmentConfig()
		cfg.DisableStacktrace = true
	default:
		return nil, fmt.Errorf("log format %q: want json or console", f.Format)
	}
	cfg.Level = zap.NewAtomicLevelAt(level)
	cfg.Sampling = nil

	logger, err := cfg.Build()
	if err != nil {
		return nil, fmt.Errorf("build logger: %w", err)
	}

	return logger.Named(name), nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}

	return def
}
