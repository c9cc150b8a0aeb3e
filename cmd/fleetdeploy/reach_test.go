package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleetdeploy/internal/sshtest"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// aliasInventory writes an inventory naming hosts by ssh_config alias only
// (web1, web2, ...), with what to reach them in the ssh_config file sshConfig.
func aliasInventory(t *testing.T, f *sshtest.Fleet, sshConfig, extra string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "app: testapp\nsource: %s\nroot: /nonexistent\nshared: [.env]\nssh:\n  config: %s\n%senvironments:\n  test:\n    hosts:\n",
		writeApp(t, "v1"), sshConfig, extra)
	for i, h := range f.Hosts {
		fmt.Fprintf(&b, "      - {address: web%d, root: %s}\n", i+1, h.Root)
		h.Exec(t, `mkdir -p "$ROOT/shared" && echo X=1 > "$ROOT/shared/.env"`)
	}
	p := filepath.Join(t.TempDir(), "hosts.yml")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Hosts named in the inventory by their ssh_config alias alone, reachable
// only through a chain of two real OpenSSH bastions (ProxyJump), are
// deployed to, their status read and rolled back; each bastion carries one
// connection for the whole fleet.
func TestDeployThroughBastionsBySSHConfigAlias(t *testing.T) {
	f := sshtest.StartWith(t, 2, sshtest.Options{Bastions: 2})
	addr := func(h *sshtest.Host) string { return strings.TrimSuffix(h.Name, ":22") }
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "Host b1\n    HostName %s\nHost b2\n    HostName %s\n    ProxyJump b1\n", addr(f.Bastions[0]), addr(f.Bastions[1]))
	for i, h := range f.Hosts {
		fmt.Fprintf(&cfg, "Host web%d\n    HostName %s\n", i+1, addr(h))
	}
	fmt.Fprintf(&cfg, "Host web*\n    ProxyJump b2\nHost *\n    User %s\n    IdentityFile %s\n    UserKnownHostsFile %s\n    IdentitiesOnly yes\n",
		f.User, f.Identity, f.KnownHosts)
	sshConfig := filepath.Join(t.TempDir(), "ssh_config")
	if err := os.WriteFile(sshConfig, []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	// The hook holds every host in the prepare phase until the test has
	// counted the bastions' connections.
	inv := aliasInventory(t, f, sshConfig, "hooks:\n  before_cutover:\n    - 'touch \"$FLEETDEPLOY_ROOT/shared/started\"; while [ -e \"$FLEETDEPLOY_ROOT/shared/hold\" ]; do sleep 0.05; done'\n")
	for _, h := range f.Hosts {
		h.Exec(t, `touch "$ROOT/shared/hold"`)
	}
	done := make(chan result, 1)
	go func() { done <- fd(t, t.Context(), "up", "test", "-i", inv) }()
	for _, h := range f.Hosts {
		waitUntil(t, h.Name+" in its hook", 30*time.Second, func() bool {
			return strings.Contains(h.Exec(t, `ls "$ROOT/shared"`), "started")
		})
	}
	for i, b := range f.Bastions {
		if n := b.Connections(); n != 1 {
			t.Errorf("bastion %d: %d connections while the fleet deploys, want 1", i+1, n)
		}
	}
	for _, h := range f.Hosts {
		h.Exec(t, `rm "$ROOT/shared/hold"`)
	}
	if r := <-done; r.code != 0 {
		t.Fatalf("up: %s", r)
	}
	for i, h := range f.Hosts {
		if got := strings.TrimSpace(h.Exec(t, `readlink "$ROOT/latest"`)); !strings.HasPrefix(got, "builds/") {
			t.Errorf("web%d: latest -> %q", i+1, got)
		}
	}
	for i, b := range f.Bastions {
		waitUntil(t, fmt.Sprintf("bastion %d closed", i+1), 5*time.Second, func() bool { return b.Connections() == 0 })
	}
	st := mustCLI(t, "status", "test", "-i", inv)
	if !strings.Contains(st.stdout, "web1") || !strings.Contains(st.stdout, "web2") {
		t.Errorf("status: %s", st)
	}
	// Without the ssh_config, web1 is a name that resolves nowhere, and the
	// error says so.
	r := fd(t, t.Context(), "status", "test", "-i", inv, "-F", "none")
	if r.code == 0 || !strings.Contains(r.stdout+r.stderr, "web1") || !strings.Contains(r.stdout+r.stderr, "neither resolvable") {
		t.Errorf("status with -F none: %s", r)
	}
}

// A host not in known_hosts (or no known_hosts at all) is refused with its
// fingerprint and the fix; --accept-new-host-keys records the keys once; a
// changed key is refused even then, showing both fingerprints.
func TestHostKeysFirstUseAndChanged(t *testing.T) {
	f := sshtest.Start(t, 2)
	kh := filepath.Join(t.TempDir(), "known_hosts") // does not exist yet
	var cfg strings.Builder
	for i, h := range f.Hosts {
		host, port, _ := strings.Cut(h.Name, ":")
		fmt.Fprintf(&cfg, "Host web%d\n    HostName %s\n    Port %s\n", i+1, host, port)
	}
	fmt.Fprintf(&cfg, "Host *\n    User %s\n    IdentityFile %s\n    UserKnownHostsFile %s\n", f.User, f.Identity, kh)
	sshConfig := filepath.Join(t.TempDir(), "ssh_config")
	os.WriteFile(sshConfig, []byte(cfg.String()), 0o644)
	inv := aliasInventory(t, f, sshConfig, "")

	r := fd(t, t.Context(), "up", "test", "-i", inv)
	fp := ssh.FingerprintSHA256(f.Hosts[0].HostKey)
	if r.code != 1 || !strings.Contains(r.stderr, fp) || !strings.Contains(r.stderr, "--accept-new-host-keys") || strings.Contains(r.stderr, "stat ") {
		t.Fatalf("unknown hosts, no known_hosts: want exit 1 with the fingerprint and the fix: %s", r)
	}
	mustCLI(t, "--accept-new-host-keys", "up", "test", "-i", inv)
	mustCLI(t, "--accept-new-host-keys", "up", "test", "-i", inv) // nothing new to record
	b, _ := os.ReadFile(kh)
	if n := strings.Count(strings.TrimSpace(string(b)), "\n") + 1; n != 2 {
		t.Errorf("known_hosts holds %d lines after two runs, want 2:\n%s", n, b)
	}
	mustCLI(t, "status", "test", "-i", inv)

	// web1's recorded key is replaced by another: the host's key "changed".
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	other, _ := ssh.NewPublicKey(pub)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	host, port, _ := strings.Cut(f.Hosts[0].Name, ":")
	var kept []string
	for _, l := range lines {
		if !strings.HasPrefix(l, knownhosts.Normalize(host+":"+port)+" ") {
			kept = append(kept, l)
		}
	}
	kept = append(kept, knownhosts.Line([]string{knownhosts.Normalize(host + ":" + port)}, other))
	os.WriteFile(kh, []byte(strings.Join(kept, "\n")+"\n"), 0o600)
	r = fd(t, t.Context(), "--accept-new-host-keys", "up", "test", "-i", inv)
	if r.code != 1 || !strings.Contains(r.stderr, fp) || !strings.Contains(r.stderr, ssh.FingerprintSHA256(other)) || !strings.Contains(r.stderr, "web1") {
		t.Errorf("changed key: want exit 1 naming web1 with both fingerprints: %s", r)
	}
}

// Text from a host (a lock's holder, a history line, a command's error)
// reaches the terminal with its control characters escaped.
func TestHostTextEscaped(t *testing.T) {
	forEachBackend(t, 1, func(t *testing.T, f *testFleet) {
		f.provision(t)
		inv := f.writeInventory(t, inventoryOpts{source: writeApp(t, "v1")})
		mustCLI(t, "up", "test", "-i", inv)
		f.exec(t, 0, `ln -s "$(printf 'evil\033[2J\033]0;pwned\007 holder')" "$ROOT/.fleetdeploy/lock"; printf '2026-11-25T10:15:00Z\tdeploy\t20261125-101500\tx\033[31my\n' >> "$ROOT/.fleetdeploy/history"`)
		for _, args := range [][]string{{"up", "test"}, {"-v", "status", "test"}, {"unlock", "test"}} {
			r := fd(t, t.Context(), append(args, "-i", inv)...)
			if strings.ContainsAny(r.stdout+r.stderr, "\x1b\x07") {
				t.Errorf("%v: a control character reached the terminal:\n%q", args, r.stdout+r.stderr)
			}
			if !strings.Contains(r.stdout+r.stderr, `\x1b[2J`) {
				t.Errorf("%v: the holder is not shown (escaped): %s", args, r)
			}
		}
	})
}
