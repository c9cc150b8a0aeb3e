package sandbox

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStartFleetLayout(t *testing.T) {
	f := startFleet(t, 3)
	if len(f.Hosts) != 3 || len(f.Roots) != 3 {
		t.Fatalf("got %d hosts and %d roots, want 3", len(f.Hosts), len(f.Roots))
	}
	for i, root := range f.Roots {
		want := filepath.Join(f.Dir, fmt.Sprintf("host%d", i+1), "www")
		if root != want || !filepath.IsAbs(root) {
			t.Errorf("root %d = %q, want %q", i, root, want)
		}
		if _, err := os.Stat(root); !os.IsNotExist(err) {
			t.Errorf("root %s exists before any deploy: %v", root, err)
		}
	}
	for path, mode := range map[string]os.FileMode{f.Identity: 0o600, f.Identity + ".pub": 0o644, f.KnownHosts: 0o644} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), mode)
		}
	}
	pemBytes, err := os.ReadFile(f.Identity)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(pemBytes, []byte("-----BEGIN OPENSSH PRIVATE KEY-----")) {
		t.Errorf("identity is not in OpenSSH format: %.40q", pemBytes)
	}
	known, err := os.ReadFile(f.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(known)), "\n")
	for i, h := range f.Hosts {
		want := fmt.Sprintf("[127.0.0.1]:%d ssh-ed25519 ", h.Addr().Port)
		if i >= len(lines) || !strings.HasPrefix(lines[i], want) {
			t.Errorf("known_hosts line %d = %q, want prefix %q", i, lines, want)
		}
	}
	for i := range f.Hosts {
		if out, _, err := run(t, dial(t, f, i), "echo $HOME", nil); err != nil || out != filepath.Dir(f.Roots[i])+"\n" {
			t.Errorf("host%d: got %q, %v", i+1, out, err)
		}
	}
}

// Restarting a fleet in the same directory keeps its keys, so a client key
// already handed out still works; only the ports (and known_hosts) change.
func TestStartFleetReusesKeys(t *testing.T) {
	dir := t.TempDir()
	first, err := StartFleet(dir, 2)
	if err != nil {
		t.Fatal(err)
	}
	identity, err := os.ReadFile(first.Identity)
	if err != nil {
		t.Fatal(err)
	}
	hostKey, err := os.ReadFile(filepath.Join(dir, "host2", "ssh_host_ed25519_key"))
	if err != nil {
		t.Fatal(err)
	}
	oldKnown, err := os.ReadFile(first.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	second, err := StartFleet(dir, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = second.Close() })
	if again, _ := os.ReadFile(second.Identity); !bytes.Equal(again, identity) {
		t.Error("client key regenerated")
	}
	if again, _ := os.ReadFile(filepath.Join(dir, "host2", "ssh_host_ed25519_key")); !bytes.Equal(again, hostKey) {
		t.Error("host key regenerated")
	}
	newKnown, err := os.ReadFile(second.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	if keys(oldKnown) != keys(newKnown) {
		t.Errorf("host keys in known_hosts changed:\n%s\n%s", oldKnown, newKnown)
	}
	if _, _, err := run(t, dial(t, second, 1), "true", nil); err != nil {
		t.Fatal(err)
	}
}

// keys drops the host:port field of known_hosts lines.
func keys(knownHosts []byte) string {
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(knownHosts)), "\n") {
		_, rest, _ := strings.Cut(line, " ")
		out = append(out, rest)
	}
	return strings.Join(out, "\n")
}

func TestStartFleetRejectsNoHosts(t *testing.T) {
	if _, err := StartFleet(t.TempDir(), 0); err == nil {
		t.Fatal("started a fleet of 0 hosts")
	}
}
