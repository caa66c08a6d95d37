package main

import (
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/gatehouse-dev/gatehouse/identity"
	"github.com/gatehouse-dev/gatehouse/pki"
)

func runCerts(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		certsUsage(stderr)
		return errUsage
	}

	switch args[0] {
	case "init":
		return certsInit(args[1:], stdout, stderr)
	case "issue":
		return certsIssue(args[1:], stdout, stderr)
	default:
		_, _ = fmt.Fprintf(stderr, "gatehouse certs: unknown subcommand %q\n\n", args[0])
		certsUsage(stderr)

		return errUsage
	}
}

func certsUsage(w io.Writer) {
	_, _ = fmt.Fprintf(w, `usage:
  gatehouse certs init  [flags]             create the CA (ca.pem, ca-key.pem)
  gatehouse certs issue [flags] <service>.. issue <service>.pem and <service>-key.pem

Leaves carry spiffe://<trust-domain>/svc/<service> and <service>.svc.<trust-domain>
and serve both TLS ends. Keys are written with mode 0600. Run a subcommand with
-h for its flags.
`)
}

// certsFlags are the flags both subcommands share.
type certsFlags struct {
	dir         string
	trustDomain string
	ttl         time.Duration
}

func newCertsFlagSet(
	name string,
	stderr io.Writer,
	f *certsFlags,
	ttl time.Duration,
) *flag.FlagSet {
	fs := flag.NewFlagSet("gatehouse certs "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.dir, "dir", pki.DefaultDir, "folder of the development PKI")
	fs.StringVar(&f.trustDomain, "trust-domain", identity.DefaultTrustDomain, "trust domain")
	fs.DurationVar(&f.ttl, "ttl", ttl, "lifetime of the certificate")

	return fs
}

// parse parses flags that may come before or after the positional
// arguments, and returns the positional ones.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string

	for {
		if err := fs.Parse(args); err != nil {
			return nil, errUsage
		}

		if fs.NArg() == 0 {
			return positional, nil
		}

		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func certsInit(args []string, stdout, stderr io.Writer) error {
	var f certsFlags

	fs := newCertsFlagSet("init", stderr, &f, pki.DefaultCATTL)
	force := fs.Bool("force", false,
		"replace an existing CA (every certificate it issued stops being trusted)")

	rest, err := parse(fs, args)
	if err != nil {
		return err
	}

	if len(rest) > 0 {
		_, _ = fmt.Fprintf(stderr, "gatehouse certs init: unexpected arguments %q\n", rest)
		return errUsage
	}

	dir := pki.Dir(f.dir)

	ca, err := dir.Init(f.trustDomain, *force, pki.WithTTL(f.ttl))
	if err != nil {
		return err
	}

	_, _ = fmt.Fprintf(stdout,
		"created CA for trust domain %s, valid until %s\n  %s\n  %s (mode 0600)\n",
		f.trustDomain, ca.Cert.NotAfter.Format(time.RFC3339), dir.CACert(), dir.CAKey())

	return nil
}

func certsIssue(args []string, stdout, stderr io.Writer) error {
	var f certsFlags

	fs := newCertsFlagSet("issue", stderr, &f, pki.DefaultLeafTTL)

	services, err := parse(fs, args)
	if err != nil {
		return err
	}

	if len(services) == 0 {
		_, _ = fmt.Fprintln(stderr, "gatehouse certs issue: name at least one service")
		return errUsage
	}

	dir := pki.Dir(f.dir)

	for _, svc := range services {
		leaf, err := dir.Issue(f.trustDomain, svc, pki.WithTTL(f.ttl))
		if err != nil {
			return err
		}

		_, _ = fmt.Fprintf(stdout, "issued %s, valid until %s\n  %s\n  %s (mode 0600)\n",
			leaf.ID, leaf.Cert.NotAfter.Format(time.RFC3339), dir.Cert(svc), dir.Key(svc))
	}

	return nil
}
