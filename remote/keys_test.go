package remote_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetdeploy/fleetdeploy/internal/sshtest"
	"github.com/fleetdeploy/fleetdeploy/remote"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// keyFile writes a new ed25519 key (passphrase-protected when passphrase is
// not "") and returns its path, private key and public key.
func keyFile(t *testing.T, dir, passphrase string) (string, ed25519.PrivateKey, ssh.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var block *pem.Block
	if passphrase != "" {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "test key", []byte(passphrase))
	} else {
		block, err = ssh.MarshalPrivateKey(priv, "test key")
	}
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(dir, "id_*")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(pem.EncodeToMemory(block)); err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return f.Name(), priv, sshPub
}

// startAgent serves an in-memory ssh-agent holding keys, in their order, on
// a unix socket (x/crypto's keyring speaks the agent protocol as ssh-agent).
func startAgent(t *testing.T, keys ...agent.AddedKey) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "agent") // a socket path must be short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	keyring := agent.NewKeyring()
	for _, k := range keys {
		if err := keyring.Add(k); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				agent.ServeAgent(keyring, c)
			})
		}
	})
	return sock
}

// A passphrase-protected key is asked for once for the whole run, however
// many hosts use it at once; a wrong answer is asked again; the time spent
// answering does not count against the connect timeout.
func TestPassphraseAskedOncePerKey(t *testing.T) {
	t.Parallel()
	f := sshtest.Start(t, 3)
	file, _, pub := keyFile(t, t.TempDir(), "s3cret")
	f.Authorize(t, pub)
	for _, tc := range []struct {
		name    string
		answers []string
		typing  time.Duration
		want    int
	}{
		{"right first", []string{"s3cret"}, 0, 1},
		{"wrong then right", []string{"wrong", "s3cret"}, 0, 2},
		{"slower than the connect timeout", []string{"s3cret"}, 1500 * time.Millisecond, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var asked atomic.Int32
			prompt := func(ctx context.Context, p string) ([]byte, error) {
				n := asked.Add(1)
				if !strings.Contains(p, file) {
					return nil, fmt.Errorf("prompt %q does not name the key", p)
				}
				if tc.typing > 0 {
					select { // a person typing
					case <-time.After(tc.typing):
					case <-ctx.Done():
						return nil, ctx.Err()
					}
				}
				return []byte(tc.answers[min(int(n), len(tc.answers))-1]), nil
			}
			d := newDialer(t, remote.DialerOptions{Prompt: prompt})
			errs := make([]error, len(f.Hosts))
			var wg sync.WaitGroup
			for i, h := range f.Hosts {
				cfg := remote.Config{Name: h.Name, Addr: h.Name, User: f.User, Identity: file, KnownHosts: f.KnownHosts, ConnectTimeout: time.Second}
				wg.Go(func() {
					c, err := d.Dial(t.Context(), cfg)
					if errs[i] = err; err == nil {
						if !strings.Contains(c.Info().Auth, file) {
							errs[i] = fmt.Errorf("auth %q does not name %s", c.Info().Auth, file)
						}
						c.Close()
					}
				})
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
			if n := asked.Load(); int(n) != tc.want {
				t.Errorf("asked %d times for %d hosts, want %d", n, len(f.Hosts), tc.want)
			}
		})
	}
	t.Run("no terminal", func(t *testing.T) {
		noTTY := func(context.Context, string) ([]byte, error) { return nil, remote.ErrNoTerminal }
		h := f.Hosts[0]
		_, err := newDialer(t, remote.DialerOptions{Prompt: noTTY}).Dial(t.Context(),
			remote.Config{Name: h.Name, Addr: h.Name, User: f.User, Identity: file, KnownHosts: f.KnownHosts})
		if err == nil || !strings.Contains(err.Error(), "ssh-agent") || !strings.Contains(err.Error(), "ssh-add "+file) {
			t.Errorf("got %v, want advice to load %s into ssh-agent", err, file)
		}
	})
}

// With MaxAuthTries 3 and an agent holding six keys, the right one last,
// the configured identity (here only its .pub: the agent has the key) is
// offered first and gets in; offered in the agent's order, the keys run
// out of tries, as with ssh(1).
func TestConfiguredIdentityBeforeAgentKeys(t *testing.T) {
	t.Parallel()
	f := sshtest.StartWith(t, 1, sshtest.Options{SSHDConfig: []string{"MaxAuthTries 3"}})
	h := f.Hosts[0]
	pemBytes, err := os.ReadFile(f.Identity)
	if err != nil {
		t.Fatal(err)
	}
	fleetKey, err := ssh.ParseRawPrivateKey(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var keys []agent.AddedKey
	for i := range 5 {
		_, priv, _ := keyFile(t, dir, "")
		keys = append(keys, agent.AddedKey{PrivateKey: priv, Comment: fmt.Sprintf("unrelated %d", i)})
	}
	sock := startAgent(t, append(keys, agent.AddedKey{PrivateKey: fleetKey, Comment: "the fleet's"})...)
	signer, err := ssh.NewSignerFromKey(fleetKey)
	if err != nil {
		t.Fatal(err)
	}
	pubOnly := filepath.Join(dir, "fleet_key")
	if err := os.WriteFile(pubOnly+".pub", ssh.MarshalAuthorizedKey(signer.PublicKey()), 0o644); err != nil {
		t.Fatal(err)
	}
	wrongFile, _, _ := keyFile(t, dir, "")
	base := remote.Config{Name: "web1", Addr: h.Name, User: f.User, KnownHosts: f.KnownHosts, Agent: sock}

	cfg := base
	cfg.IdentityFiles = []string{pubOnly}
	c := dial(t, newDialer(t, remote.DialerOptions{}), cfg)
	if auth := c.Info().Auth; !strings.Contains(auth, pubOnly+", via ssh-agent") {
		t.Errorf("auth %q: want the configured identity, from the agent", auth)
	}

	cfg = base
	cfg.IdentityFiles = []string{filepath.Join(dir, "absent")}
	if _, err := newDialer(t, remote.DialerOptions{}).Dial(t.Context(), cfg); err == nil {
		t.Error("the agent's keys in its own order got in: MaxAuthTries 3 does not bite, so this test proves nothing")
	}

	cfg = base
	cfg.IdentityFiles, cfg.IdentitiesOnly = []string{wrongFile}, true
	_, err = newDialer(t, remote.DialerOptions{}).Dial(t.Context(), cfg)
	if err == nil || strings.Count(err.Error(), "publickey ") != 1 || strings.Contains(err.Error(), "ssh-agent") {
		t.Errorf("IdentitiesOnly: got %v, want one key offered, none from the agent", err)
	}
}

// User certificates work from a file beside the key, from CertificateFile,
// and from the agent.
func TestUserCertificates(t *testing.T) {
	t.Parallel()
	f := sshtest.StartWith(t, 1, sshtest.Options{UserCA: true})
	h := f.Hosts[0]
	dir := t.TempDir()
	file, priv, pub := keyFile(t, dir, "") // not in authorized_keys
	cert := &ssh.Certificate{Key: pub, Serial: 7, CertType: ssh.UserCert, KeyId: "tester", ValidPrincipals: []string{f.User}, ValidBefore: ssh.CertTimeInfinity}
	if err := cert.SignCert(rand.Reader, f.UserCA); err != nil {
		t.Fatal(err)
	}
	elsewhere := filepath.Join(dir, "cert.pub")
	if err := os.WriteFile(elsewhere, ssh.MarshalAuthorizedKey(cert), 0o644); err != nil {
		t.Fatal(err)
	}
	base := remote.Config{Name: "web1", Addr: h.Name, User: f.User, KnownHosts: f.KnownHosts}

	t.Run("without the certificate", func(t *testing.T) {
		cfg := base
		cfg.Identity = file
		if _, err := remote.Dial(t.Context(), cfg); err == nil {
			t.Fatal("the key alone got in: the certificate is not what is tested")
		}
	})
	t.Run("CertificateFile", func(t *testing.T) {
		cfg := base
		cfg.Identity, cfg.CertificateFiles = file, []string{elsewhere}
		c := dial(t, newDialer(t, remote.DialerOptions{}), cfg)
		if auth := c.Info().Auth; !strings.HasPrefix(auth, "certificate ") || !strings.Contains(auth, `id "tester"`) {
			t.Errorf("auth %q, want the certificate", auth)
		}
	})
	t.Run("beside the key", func(t *testing.T) {
		if err := os.WriteFile(file+"-cert.pub", ssh.MarshalAuthorizedKey(cert), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := base
		cfg.Identity = file
		c := dial(t, newDialer(t, remote.DialerOptions{}), cfg)
		if auth := c.Info().Auth; !strings.HasPrefix(auth, "certificate ") {
			t.Errorf("auth %q, want the certificate", auth)
		}
	})
	t.Run("in the agent", func(t *testing.T) {
		cfg := base
		cfg.Agent = startAgent(t, agent.AddedKey{PrivateKey: priv, Certificate: cert})
		cfg.IdentityFiles = []string{filepath.Join(dir, "absent")}
		c := dial(t, newDialer(t, remote.DialerOptions{}), cfg)
		if auth := c.Info().Auth; !strings.HasPrefix(auth, "certificate ") || !strings.Contains(auth, "ssh-agent") {
			t.Errorf("auth %q, want the agent's certificate", auth)
		}
	})
}
