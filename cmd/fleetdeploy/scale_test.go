package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// At fleet scale (200 in-process hosts, handshakes and uploads bounded), a few
// failing hosts abort the deploy everywhere: no crash, no hang, the failures
// reported with their hosts, no host switched, every host left clean.
func TestFewFailingHostsAmongTwoHundred(t *testing.T) {
	if testing.Short() {
		t.Skip("200 hosts")
	}
	const n = 200
	f := startSandbox(t, n)
	f.provision(t)
	src := writeApp(t, "v1")
	inv := f.writeInventory(t, inventoryOpts{source: src,
		before: []string{`'if [ -e "$FLEETDEPLOY_ROOT/shared/fail" ]; then echo "migration broke" >&2; exit 7; fi'`}})
	mustCLI(t, "--max-connects", "10", "--parallel", "16", "up", "test", "-i", inv)
	old := f.live(t, 0)

	failing := []int{3, 100, 199}
	for _, i := range failing {
		if err := os.WriteFile(filepath.Join(f.roots[i], "shared", "fail"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(src, "VERSION"), []byte("v2"), 0o644)
	r := fd(t, t.Context(), "--max-connects", "10", "--parallel", "16", "up", "test", "-i", inv)
	if r.code != 1 {
		t.Fatalf("want exit 1: %s", r)
	}
	if strings.Contains(r.stderr, "panic") || strings.Contains(r.stderr, "goroutine ") {
		t.Fatalf("crashed: %s", r.stderr)
	}
	// The first failure stops the other hosts (fail-fast): the failing hosts
	// that had not reached their hook never fail. Every error reported is a
	// failing host's own, and at least one is.
	reported := 0
	for _, line := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		if !strings.Contains(line, "migration broke") {
			continue
		}
		reported++
		ok := false
		for _, i := range failing {
			ok = ok || strings.Contains(line, f.names[i]+": running before_cutover hook")
		}
		if !ok {
			t.Errorf("an error not from a failing host: %s", line)
		}
	}
	if reported == 0 {
		t.Errorf("no failing host's error reported: %s", r.stderr)
	}
	for i, name := range f.names {
		if got := f.live(t, i); got != old {
			t.Errorf("%s switched to %s after failed hooks elsewhere", name, got)
		}
	}
	f.assertClean(t)
}
