package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// check on healthy hosts says so and exits 0; on broken ones it exits 4,
// naming each host's problem and its fix, and changes nothing; a frozen
// host fails within the connect timeout.
func TestCheck(t *testing.T) {
	f := startOpenSSH(t, 3)
	f.provision(t)
	src := writeApp(t, "v1")
	inv := f.writeInventory(t, inventoryOpts{source: src})
	r := mustCLI(t, "check", "test", "-i", inv)
	for _, want := range []string{"every host is ready", "tools     all ", " b2sum ", "writable", " free", "clock", ".env ok", "host key  ssh-ed25519 SHA256:"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("check output lacks %q:\n%s", want, r.stdout)
		}
	}

	// Host 1: its root's parent is not writable and the shared file is
	// missing (a new host); host 2: a lock that is not fleetdeploy's.
	parent := filepath.Dir(f.roots[1])
	f.exec(t, 1, `rm -rf "$ROOT"`)
	f.exec(t, 2, `mkdir -p "$ROOT/.fleetdeploy" && echo x > "$ROOT/.fleetdeploy/lock"`)
	chmod(t, parent, 0o555)
	defer chmod(t, parent, 0o755)
	before := []string{tree(t, f.roots[0]), tree(t, f.roots[2])}
	r = fd(t, t.Context(), "check", "test", "-i", inv)
	if r.code != exitDrift {
		t.Errorf("broken hosts: want exit %d: %s", exitDrift, r)
	}
	for _, want := range []string{
		f.names[1] + ": " + parent + " is not writable",
		f.names[1] + ": shared file .env is missing: create " + filepath.Join(f.roots[1], "shared", ".env"),
		f.names[2] + ": the lock is a regular file",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("check lacks %q:\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stderr, f.names[0]+":") {
		t.Errorf("a healthy host reported: %s", r.stderr)
	}
	if got := []string{tree(t, f.roots[0]), tree(t, f.roots[2])}; got[0] != before[0] || got[1] != before[1] {
		t.Errorf("check changed a host")
	}

	f.freeze(0)
	defer f.thaw(0)
	start := time.Now()
	r = fd(t, t.Context(), "--connect-timeout", "2s", "check", "test", "-i", inv)
	if took := time.Since(start); took > 8*time.Second || r.code != exitDrift || !strings.Contains(r.stdout, f.names[0]+"  UNREACHABLE") {
		t.Errorf("frozen host, after %s: %s", took.Round(time.Millisecond), r)
	}
}

func chmod(t *testing.T, p string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// plan fails where up would, before anything is uploaded, naming every host:
// a missing shared file on a first deploy (the root does not exist yet), a
// root that cannot be written; and a missing source on this machine.
func TestPlanFailsWhereUpWould(t *testing.T) {
	f := startOpenSSH(t, 3)
	f.provision(t)
	src := writeApp(t, "v1")
	inv := f.writeInventory(t, inventoryOpts{source: src})
	f.exec(t, 0, `rm -rf "$ROOT"`) // a new host, nothing provisioned
	chmod(t, f.roots[1], 0o555)
	defer chmod(t, f.roots[1], 0o755)
	for _, cmd := range []string{"plan", "up"} {
		r := fd(t, t.Context(), cmd, "test", "-i", inv)
		if r.code != exitFailed {
			t.Errorf("%s: want exit 1: %s", cmd, r)
		}
		// up says it in its error; plan in its view of every host.
		for _, want := range [][2]string{
			{f.names[0], "shared file .env is missing"},
			{f.names[1], f.roots[1] + " is not writable"},
		} {
			if !regexp.MustCompile(regexp.QuoteMeta(want[0]) + `(:|\n(  .*\n)*)[^\n]*` + regexp.QuoteMeta(want[1])).MatchString(r.stdout + r.stderr) {
				t.Errorf("%s does not say %s: %s:\n%s%s", cmd, want[0], want[1], r.stdout, r.stderr)
			}
		}
		if strings.Contains(r.stderr, f.names[2]+":") || strings.Contains(r.stdout, "sending") {
			t.Errorf("%s: %s", cmd, r)
		}
	}
	if _, err := os.Stat(f.roots[0]); err == nil {
		t.Error("the new host's root was made")
	}
	os.RemoveAll(src)
	for _, cmd := range []string{"plan", "up"} {
		if r := fd(t, t.Context(), cmd, "test", "-i", inv); r.code != exitFailed || !strings.Contains(r.stderr, "source "+src) {
			t.Errorf("%s with no source: %s", cmd, r)
		}
	}
}
