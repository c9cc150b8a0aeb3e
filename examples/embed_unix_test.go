//go:build unix

package examples

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Modes must not depend on the caller's umask: a build inherits them.
func TestWriteAppModesIgnoreUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "app")
	if err := WriteApp(dir, "v2"); err != nil {
		t.Fatal(err)
	}
	checkModes(t, dir)
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o755 {
		t.Errorf("created root: mode %v, want 0755", fi.Mode().Perm())
	}
}
