// Command gatehouse is the operator's tool for a Gatehouse platform. Each
// area of work is a subcommand with its own subcommands:
//
//	gatehouse certs init  [-dir D] [-trust-domain T] [-ttl 2160h] [-force]
//	gatehouse certs issue [-dir D] [-trust-domain T] [-ttl 24h] <service>...
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// errUsage marks a command line that could not be understood; the usage
// has been printed already.
var errUsage = errors.New("usage error")

// command is one subcommand: it gets the arguments after its name.
type command struct {
	summary string
	run     func(args []string, stdout, stderr io.Writer) error
}

// commands are the top-level subcommands. Add new areas here.
var commands = map[string]command{
	"certs": {summary: "create a development CA and issue workload certificates", run: runCerts},
}

func main() {
	err := run(os.Args[1:], os.Stdout, os.Stderr)

	switch {
	case errors.Is(err, errUsage):
		os.Exit(2)
	case err != nil:
		_, _ = fmt.Fprintln(os.Stderr, "gatehouse:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "help" {
		usage(stderr)
		return errUsage
	}

	cmd, ok := commands[args[0]]
	if !ok {
		_, _ = fmt.Fprintf(stderr, "gatehouse: unknown command %q\n\n", args[0])
		usage(stderr)

		return errUsage
	}

	return cmd.run(args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	_, _ = fmt.Fprintln(w, "usage: gatehouse <command> [arguments]")
	_, _ = fmt.Fprintln(w, "\ncommands:")

	for _, name := range []string{"certs"} {
		_, _ = fmt.Fprintf(w, "  %-8s %s\n", name, commands[name].summary)
	}
}
