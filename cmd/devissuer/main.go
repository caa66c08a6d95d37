// Command devissuer is the development OAuth 2.0 / OIDC issuer.
//
//	devissuer serve  runs the token, JWKS and discovery endpoints on loopback
//	devissuer mint   prints a token with chosen claims
//
// Both use the same key file (default .run/certs/devissuer-keys.json, the one
// make run uses; mode 0600),
// created on first use, so minted tokens verify against the served JWKS.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/gatehouse-dev/gatehouse/devissuer"
)

// defaultKeyFile is shared by serve and mint.
const defaultKeyFile = ".run/certs/devissuer-keys.json"

// errUsage marks a command line that could not be used; what was wrong
// has been said on stderr already.
var errUsage = errors.New("bad usage")

func main() {
	os.Exit(exitCode(run(os.Args[1:])))
}

// exitCode is the status for run's error, as the other binaries' flags
// have it: 0 for success and -h, 2 for a bad command line, 1 otherwise.
func exitCode(err error) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}

	fmt.Fprintln(os.Stderr, "devissuer:", err)

	return 1
}

// parseFlags parses args into fs, which has printed what was wrong.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %w", errUsage, err)
	}

	return nil
}

func run(args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, usage)
		return errUsage
	}

	switch args[0] {
	case "serve":
		return serve(args[1:])
	case "mint":
		return mint(args[1:])
	case "-h", "-help", "--help", "help":
		fmt.Println(usage)
		return nil
	}

	fmt.Fprintf(os.Stderr, "devissuer: unknown command %q\n%s\n", args[0], usage)

	return errUsage
}

const usage = `usage:
  devissuer serve [-listen 127.0.0.1:8081] [-issuer URL] [-keys FILE]
                  (-client ID:SECRET[:SCOPES[:ROLES]] ... | -clients FILE.json)
                  [-audience gatehouse] [-ttl 15m] [-rotate-every 0] [-grace 1h]
  devissuer mint  [-keys FILE] [-iss URL] [-sub S] [-client-id ID] [-scope "a b"]
                  [-roles r1,r2] [-aud A] [-ttl 15m] [-alg ES256|RS256] [-claim k=v ...]
run "devissuer serve -h" or "devissuer mint -h" for details`

// listFlag collects a repeated string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ", ") }

func (l *listFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// parseClient reads ID:SECRET[:SCOPES[:ROLES]], scopes and roles
// comma-separated.
func parseClient(spec string) (devissuer.Client, error) {
	parts := strings.Split(spec, ":")
	if len(parts) < 2 || len(parts) > 4 {
		return devissuer.Client{}, fmt.Errorf("client %q: want ID:SECRET[:SCOPES[:ROLES]]",
			strings.SplitN(spec, ":", 2)[0])
	}

	c := devissuer.Client{ID: parts[0], Secret: parts[1]}
	if len(parts) > 2 {
		c.Scopes = splitList(parts[2])
	}
	if len(parts) > 3 {
		c.Roles = splitList(parts[3])
	}

	return c, nil
}

func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}

	return out
}

// loadClients reads a JSON array of clients:
// [{"id":"web","secret":"…","scopes":["orders.read"],"roles":["admin"],
// "claims":{"tenant":"acme"},"alg":"ES256"}].
func loadClients(path string) ([]devissuer.Client, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read clients: %w", err)
	}

	var clients []devissuer.Client
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&clients); err != nil {
		return nil, fmt.Errorf("decode clients file %q: %w", path, err)
	}

	return clients, nil
}

// checkLoopback refuses listen addresses off 127.0.0.1/::1/localhost: the
// dev issuer hands out tokens to anyone knowing a plain-text secret.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", addr, err)
	}

	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}

	return fmt.Errorf("listen address %q: the dev issuer listens on loopback only", addr)
}
