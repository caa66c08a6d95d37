package testsupport

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
)

// BuildBinaries builds the named commands of cmd/ into a temporary folder
// and returns it, so process-level tests run the code under test rather than
// whatever happens to be in bin/.
func BuildBinaries(t testing.TB, names ...string) string {
	t.Helper()

	dir := t.TempDir()
	if err := BuildBinariesInto(dir, names...); err != nil {
		t.Fatal(err)
	}

	return dir
}

// BuildBinariesInto builds the named commands of cmd/ into dir. It is for a
// TestMain that builds once for every test of a package; tests use
// BuildBinaries.
func BuildBinariesInto(dir string, names ...string) error {
	root, err := RepoRoot()
	if err != nil {
		return fmt.Errorf("find repository root: %w", err)
	}

	args := []string{"build", "-o", dir + string(filepath.Separator)}
	for _, n := range names {
		args = append(args, "./cmd/"+n)
	}

	cmd := exec.Command("go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %v: %w\n%s", args, err, out)
	}

	return nil
}
