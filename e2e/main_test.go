package e2e

import (
	"fmt"
	"os"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/testsupport"
)

// stackBinaries are the commands a stack runs.
var stackBinaries = []string{"catalog", "orders", "gateway", "devissuer"}

// binDir holds stackBinaries, built once by TestMain for every test: each
// build links four binaries, which takes seconds on a busy machine.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "gatehouse-e2e-bin-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: temporary directory for the binaries:", err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()

	if err := testsupport.BuildBinariesInto(dir, stackBinaries...); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build the binaries under test:", err)
		return 1
	}

	binDir = dir

	return m.Run()
}
