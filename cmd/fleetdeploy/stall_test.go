package main

import (
	"bytes"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// A laptop whose lid closes mid-deploy, or a machine starved for seconds,
// stops fleetdeploy itself: running again, it finds its keepalives
// unanswered only because it sent none meanwhile. The deploy goes on. (A
// host that is really silent is still dropped: the e2e proof's frozen host.)
// Seen in CI: a machine that stood still for some 10 s, and every host of a
// run dropped as "silent for 10.3s" the moment it ran again.
func TestStalledClientKeepsItsHosts(t *testing.T) {
	f := startOpenSSH(t, 2)
	f.provision(t)
	inv := f.writeInventory(t, inventoryOpts{source: writeApp(t, "v1"), before: []string{`'touch "$FLEETDEPLOY_ROOT/shared/running"; sleep 2; touch "$FLEETDEPLOY_ROOT/shared/slept"; sleep 1'`}})
	cmd := fdCommand(t, "--keepalive", "200ms", "--keepalive-count", "3", "--cache-dir", t.TempDir(), "up", "test", "-i", inv)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	waitFile(t, filepath.Join(f.roots[0], "shared", "running"), 30*time.Second)
	cmd.Process.Signal(syscall.SIGSTOP)
	// Stopped until the hook has slept 2 s: over three times the keepalives' 0.6 s.
	waitFile(t, filepath.Join(f.roots[0], "shared", "slept"), 30*time.Second)
	cmd.Process.Signal(syscall.SIGCONT)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("stopped for 2 s mid-deploy: %v\n%s", err, out.String())
	}
	for i := range f.roots {
		if f.live(t, i) == "" {
			t.Errorf("%s: nothing live", f.names[i])
		}
	}
}
