package testsupport

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// BuildBinaries builds the named commands of cmd/ into a temporary folder
// and returns it, so process-level tests run the code under test rather than
// whatever happens to be in bin/.
func BuildBinaries(t testing.TB, names ...string) string {
	t.Helper()

	root, err := RepoRoot()
	if err != nil {
		t.Fatalf("find repository root: %v", err)
	}

	dir := t.TempDir()
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	for _, n := range names {
		args = append(args, "./cmd/"+n)
	}

	cmd := exec.Command("go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %v: %v\n%s", args, err, out)
	}

	return dir
}
