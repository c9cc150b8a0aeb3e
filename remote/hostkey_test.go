package remote_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/fleetdeploy/fleetdeploy/internal/sshtest"
	"github.com/fleetdeploy/fleetdeploy/remote"
	"golang.org/x/crypto/ssh"
)

// hostConfig is how to reach h with the fleet's key and the given
// known_hosts file, and no global known_hosts.
func hostConfig(f *sshtest.Fleet, h *sshtest.Host, knownHosts string) remote.Config {
	return remote.Config{Name: "web1", Addr: h.Name, User: f.User, Identity: f.Identity, KnownHosts: knownHosts, GlobalKnownHostsFiles: []string{}}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func readLines(t *testing.T, p string) []string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func randomKey(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func knownLine(pattern string, k ssh.PublicKey) string {
	return pattern + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// A missing known_hosts file counts as empty: the host is unknown, and the
// error names it, its key's fingerprint and the fixes, not a stat failure.
func TestUnknownHostWithoutKnownHostsFile(t *testing.T) {
	t.Parallel()
	f := sshtest.Start(t, 1)
	h := f.Hosts[0]
	missing := filepath.Join(t.TempDir(), "no", "known_hosts")
	_, err := remote.Dial(t.Context(), hostConfig(f, h, missing))
	var hk *remote.HostKeyError
	if !errors.As(err, &hk) || hk.Changed {
		t.Fatalf("got %v, want an unknown host key", err)
	}
	msg := err.Error()
	for _, want := range []string{"web1", h.Name, ssh.FingerprintSHA256(h.HostKey), missing + " (absent)", "--accept-new-host-keys", "ssh -p "} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "stat") {
		t.Errorf("message %q speaks of stat", msg)
	}
}

// accept-new records a new host's key once, hashed when asked, even when
// many connections to it (through one Dialer or two) race; then the key
// is known to a strict dial.
func TestAcceptNewRecordsOnce(t *testing.T) {
	t.Parallel()
	f := sshtest.Start(t, 1)
	h := f.Hosts[0]
	kh := filepath.Join(t.TempDir(), ".ssh", "known_hosts") // its folder is created too
	cfg := hostConfig(f, h, kh)
	cfg.HostKeys, cfg.HashKnownHosts = remote.AcceptNewHostKeys, true
	var mu sync.Mutex
	var notes []string
	notify := func(msg string) { mu.Lock(); notes = append(notes, msg); mu.Unlock() }
	dialers := []*remote.Dialer{newDialer(t, remote.DialerOptions{Notify: notify}), newDialer(t, remote.DialerOptions{Notify: notify})}
	const n = 8
	errs := make([]error, n)
	recorded := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c, err := dialers[i%2].Dial(t.Context(), cfg)
			if errs[i] = err; err == nil {
				recorded[i] = c.Info().HostKeyRecorded
				c.Close()
			}
		})
	}
	wg.Wait()
	wrote := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("dial %d: %v", i, errs[i])
		}
		if recorded[i] != "" {
			wrote++
			if recorded[i] != kh {
				t.Errorf("recorded in %s, want %s", recorded[i], kh)
			}
		}
	}
	lines := readLines(t, kh)
	if len(lines) != 1 || wrote != 1 || len(notes) != 1 {
		t.Fatalf("%d dials recorded the key, %d notices, known_hosts:\n%s\nwant one line, written once", wrote, len(notes), strings.Join(lines, "\n"))
	}
	if !strings.HasPrefix(lines[0], "|1|") || strings.Contains(lines[0], "127.0.0.1") {
		t.Errorf("line %q is not hashed", lines[0])
	}
	if !strings.HasSuffix(lines[0], strings.TrimSpace(string(ssh.MarshalAuthorizedKey(h.HostKey)))) {
		t.Errorf("line %q does not hold the host's key", lines[0])
	}
	if !strings.Contains(notes[0], ssh.FingerprintSHA256(h.HostKey)) || !strings.Contains(notes[0], kh) {
		t.Errorf("notice %q names neither the fingerprint nor the file", notes[0])
	}
	cfg.HostKeys = remote.StrictHostKeys
	c, err := remote.Dial(t.Context(), cfg)
	if err != nil {
		t.Fatalf("strict dial after the key was recorded: %v", err)
	}
	c.Close()

	// Appending to a file without a final newline starts a new line.
	kh2 := writeFile(t, "# no newline at the end")
	cfg.KnownHosts, cfg.HostKeys, cfg.HashKnownHosts = kh2, remote.AcceptNewHostKeys, false
	c, err = remote.Dial(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if lines := readLines(t, kh2); len(lines) != 2 || lines[1] != knownLine(fmt.Sprintf("[127.0.0.1]:%d", h.Port), h.HostKey) {
		t.Errorf("known_hosts %q", lines)
	}
}

// A key that differs from the recorded one is refused, accept-new or not,
// and the error shows both fingerprints; a revoked key is refused too.
func TestChangedAndRevokedHostKeys(t *testing.T) {
	t.Parallel()
	f := sshtest.Start(t, 1)
	h := f.Hosts[0]
	pattern := fmt.Sprintf("[127.0.0.1]:%d", h.Port)
	old := randomKey(t).PublicKey()
	for _, tc := range []struct {
		name, knownHosts string
		want             []string
		check            func(*remote.HostKeyError) bool
	}{
		{"changed", knownLine(pattern, old) + "\n", []string{ssh.FingerprintSHA256(h.HostKey), ssh.FingerprintSHA256(old), ":1)", "ssh-keygen -R '" + pattern + "'"},
			func(e *remote.HostKeyError) bool { return e.Changed && len(e.Recorded) == 1 }},
		{"revoked", knownLine(pattern, h.HostKey) + "\n@revoked * " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(h.HostKey))) + "\n", []string{"@revoked", ":2"},
			func(e *remote.HostKeyError) bool { return e.Revoked != nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kh := writeFile(t, tc.knownHosts)
			for _, policy := range []remote.HostKeyPolicy{remote.StrictHostKeys, remote.AcceptNewHostKeys} {
				cfg := hostConfig(f, h, kh)
				cfg.HostKeys = policy
				_, err := remote.Dial(t.Context(), cfg)
				var hk *remote.HostKeyError
				if !errors.As(err, &hk) || !tc.check(hk) {
					t.Fatalf("policy %v: got %v", policy, err)
				}
				for _, w := range tc.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("message %q lacks %q", err, w)
					}
				}
			}
			if lines := readLines(t, kh); len(lines) != strings.Count(tc.knownHosts, "\n") {
				t.Errorf("known_hosts was changed: %q", lines)
			}
		})
	}
}

// @cert-authority lines are honoured with a real host certificate (sshd's
// HostCertificate), and @revoked lines against it.
func TestHostCertificates(t *testing.T) {
	t.Parallel()
	f := sshtest.StartWith(t, 1, sshtest.Options{HostCertificates: true})
	h := f.Hosts[0]
	pattern := fmt.Sprintf("[127.0.0.1]:%d", h.Port)
	ca := "@cert-authority " + knownLine(pattern, f.HostCA)
	otherCA := "@cert-authority " + knownLine(pattern, randomKey(t).PublicKey())
	revokeHost := "@revoked * " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(h.HostKey)))
	revokeCA := "@revoked * " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(f.HostCA)))
	for _, tc := range []struct {
		name, knownHosts string
		wantErr          string
	}{
		{"trusted CA", ca, ""},
		{"trusted CA, host key revoked", ca + "\n" + revokeHost, "@revoked"},
		{"trusted CA revoked", ca + "\n" + revokeCA, "does not verify"},
		{"another CA", otherCA, "does not verify"},
		{"another CA, plain key recorded", otherCA + "\n" + knownLine(pattern, h.HostKey), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := hostConfig(f, h, writeFile(t, tc.knownHosts+"\n"))
			cfg.HostKeys = remote.AcceptNewHostKeys // never for a certificate that fails
			c, err := remote.Dial(t.Context(), cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			info := c.Info()
			if info.HostKeyFingerprint != ssh.FingerprintSHA256(h.HostKey) {
				t.Errorf("host key %s, want %s", info.HostKeyFingerprint, ssh.FingerprintSHA256(h.HostKey))
			}
			if strings.HasPrefix(tc.knownHosts, ca) && (info.HostKeyType != ssh.CertAlgoED25519v01 || info.HostKeyCA != ssh.FingerprintSHA256(f.HostCA)) {
				t.Errorf("host key type %s signed by %q, want a certificate signed by %s", info.HostKeyType, info.HostKeyCA, ssh.FingerprintSHA256(f.HostCA))
			}
		})
	}
}
