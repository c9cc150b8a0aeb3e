package remote_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fleetdeploy/fleetdeploy/internal/sshtest"
	"github.com/fleetdeploy/fleetdeploy/remote"
	"golang.org/x/crypto/ssh"
)

// writeSSHConfig writes an ssh_config for fleet f: every block in body, then
// a `Host *` block that logs in as the fleet's user with its key and
// known_hosts, and no agent (the test's environment must not matter).
func writeSSHConfig(t *testing.T, f *sshtest.Fleet, body string) *remote.SSHConfig {
	t.Helper()
	file := filepath.Join(t.TempDir(), "ssh_config")
	all := body + fmt.Sprintf("\nHost *\n    User %s\n    IdentityFile %s\n    UserKnownHostsFile %s\n    IdentityAgent none\n    GlobalKnownHostsFile none\n",
		f.User, f.Identity, f.KnownHosts)
	if err := os.WriteFile(file, []byte(all), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := remote.LoadSSHConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// resolve resolves alias through s, failing the test on error.
func resolve(t *testing.T, s *remote.SSHConfig, alias string, o remote.Overrides) remote.Config {
	t.Helper()
	c, err := s.Resolve(alias, o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// dial connects with d, closing the connection when the test ends.
func dial(t *testing.T, d *remote.Dialer, cfg remote.Config) *remote.Client {
	t.Helper()
	c, err := d.Dial(t.Context(), cfg)
	if err != nil {
		t.Fatalf("dialing %s: %v", cfg.Name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newDialer(t *testing.T, o remote.DialerOptions) *remote.Dialer {
	t.Helper()
	d := remote.NewDialer(o)
	t.Cleanup(func() { d.Close() })
	return d
}

func whoami(t *testing.T, c *remote.Client) string {
	t.Helper()
	out, err := c.Run(t.Context(), remote.Cmd{Args: []string{"id", "-un"}})
	if err != nil {
		t.Fatalf("%s: %v", c.Name(), err)
	}
	return strings.TrimSpace(string(out))
}

// waitFor polls cond until it holds, failing the test after limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not %s after %v", what, limit)
		}
		<-time.After(10 * time.Millisecond)
	}
}

// An inventory host may be a bare ssh_config alias: its HostName, Port,
// User, IdentityFile and UserKnownHostsFile come from there, and Info says
// what was used.
func TestDialSSHConfigAlias(t *testing.T) {
	t.Parallel()
	f := sshtest.Start(t, 1)
	h := f.Hosts[0]
	s := writeSSHConfig(t, f, fmt.Sprintf("Host web1\n    HostName 127.0.0.1\n    Port %d\n", h.Port))
	cfg := resolve(t, s, "web1", remote.Overrides{})
	c := dial(t, newDialer(t, remote.DialerOptions{}), cfg)
	if got := whoami(t, c); got != f.User {
		t.Errorf("logged in as %q, want %q", got, f.User)
	}
	info := c.Info()
	if info.User != f.User || info.Addr != h.Name || info.HostKeyFingerprint != ssh.FingerprintSHA256(h.HostKey) || info.HostKeyType != ssh.KeyAlgoED25519 {
		t.Errorf("info %+v: want user %s, addr %s, host key %s", info, f.User, h.Name, ssh.FingerprintSHA256(h.HostKey))
	}
	if !strings.Contains(info.Auth, f.Identity) || !strings.HasPrefix(info.Auth, "publickey ssh-ed25519 SHA256:") {
		t.Errorf("auth %q does not name the key file %s", info.Auth, f.Identity)
	}
	if info.ConnectTime <= 0 || info.HostKeyRecorded != "" || len(info.Via) != 0 {
		t.Errorf("info %+v", info)
	}
}

// bastionConfig is the ssh_config of a fleet behind two bastions: web1, web2,
// ... behind b2, b2 behind b1.
func bastionConfig(t *testing.T, f *sshtest.Fleet, extra string) *remote.SSHConfig {
	t.Helper()
	var b strings.Builder
	host := func(h *sshtest.Host) string { return strings.TrimSuffix(h.Name, ":22") }
	fmt.Fprintf(&b, "Host b1\n    HostName %s\n", host(f.Bastions[0]))
	fmt.Fprintf(&b, "Host b2\n    HostName %s\n    ProxyJump b1\n", host(f.Bastions[1]))
	for i, h := range f.Hosts {
		fmt.Fprintf(&b, "Host web%d\n    HostName %s\n", i+1, host(h))
	}
	b.WriteString("Host web*\n    ProxyJump b2\n")
	b.WriteString(extra)
	return writeSSHConfig(t, f, b.String())
}

// Hosts reachable only through a chain of two real OpenSSH bastions are
// reached through one connection per bastion, shared by all of them, with
// every hop's host key verified.
func TestDialThroughBastions(t *testing.T) {
	t.Parallel()
	f := sshtest.StartWith(t, 3, sshtest.Options{Bastions: 2})
	s := bastionConfig(t, f, "")
	d := newDialer(t, remote.DialerOptions{})
	clients := make([]*remote.Client, len(f.Hosts))
	var wg sync.WaitGroup
	errs := make([]error, len(f.Hosts))
	for i := range f.Hosts {
		cfg := resolve(t, s, fmt.Sprintf("web%d", i+1), remote.Overrides{})
		wg.Go(func() { clients[i], errs[i] = d.Dial(t.Context(), cfg) })
	}
	wg.Wait()
	for i, c := range clients {
		if errs[i] != nil {
			t.Fatalf("web%d: %v", i+1, errs[i])
		}
		t.Cleanup(func() { c.Close() })
		if got := whoami(t, c); got != f.User {
			t.Errorf("%s: logged in as %q", c.Name(), got)
		}
		if via := c.Info().Via; !slices.Equal(via, []string{"b1", "b2"}) {
			t.Errorf("%s: via %v, want [b1 b2]", c.Name(), via)
		}
		if c.ConnectRTT() <= 0 {
			t.Errorf("%s: no round trip measured", c.Name())
		}
	}
	for i, b := range f.Bastions {
		waitFor(t, 5*time.Second, fmt.Sprintf("one connection on bastion %d", i+1), func() bool { return b.Connections() == 1 })
	}

	t.Run("a bastion's host key is verified too", func(t *testing.T) {
		kh := filepath.Join(t.TempDir(), "known_hosts")
		lines, err := os.ReadFile(f.KnownHosts)
		if err != nil {
			t.Fatal(err)
		}
		var keep []string
		for _, l := range strings.Split(strings.TrimSpace(string(lines)), "\n") {
			if !strings.HasPrefix(l, strings.TrimSuffix(f.Bastions[1].Name, ":22")+" ") {
				keep = append(keep, l)
			}
		}
		if err := os.WriteFile(kh, []byte(strings.Join(keep, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := resolve(t, s, "web1", remote.Overrides{KnownHosts: kh})
		_, err = newDialer(t, remote.DialerOptions{}).Dial(t.Context(), cfg)
		var hk *remote.HostKeyError
		if !errors.As(err, &hk) || hk.Host != "b2" || !strings.Contains(err.Error(), "jump host b2") {
			t.Fatalf("got %v, want a host key error naming jump host b2", err)
		}
	})

	t.Run("a bastion that dies fails its hosts", func(t *testing.T) {
		// A command in flight, and commands started after, all fail at
		// once with a lost connection that names the bastion.
		running := make(chan error, 1)
		go func() {
			_, err := clients[0].Run(t.Context(), remote.Cmd{Args: []string{"sleep", "60"}})
			running <- err
		}()
		waitFor(t, 5*time.Second, "sleeping on web1", func() bool {
			out, _ := clients[1].Run(t.Context(), remote.Cmd{Args: []string{"pgrep", "-x", "sleep"}})
			return len(out) > 0
		})
		f.Bastions[0].Kill()
		select {
		case err := <-running:
			checkLostVia(t, err, "b1")
		case <-time.After(10 * time.Second):
			t.Fatal("a command through a dead bastion still runs after 10s")
		}
		for _, c := range clients[1:] {
			_, err := c.ReadDir(t.Context(), "/")
			checkLostVia(t, err, "b1")
		}
	})
}

func checkLostVia(t *testing.T, err error, bastion string) {
	t.Helper()
	if !errors.Is(err, remote.ErrConnLost) || !strings.Contains(err.Error(), "jump host "+bastion) {
		t.Errorf("got %v, want a lost connection naming jump host %s", err, bastion)
	}
}

// A bastion gone silent is found by keepalives, and blamed: the error of
// every host behind it names it.
func TestSilentBastion(t *testing.T) {
	t.Parallel()
	f := sshtest.StartWith(t, 1, sshtest.Options{Bastions: 2})
	s := bastionConfig(t, f, "")
	o := remote.Overrides{KeepaliveInterval: 100 * time.Millisecond, KeepaliveMax: 3}
	c := dial(t, newDialer(t, remote.DialerOptions{}), resolve(t, s, "web1", o))
	f.Bastions[1].Freeze()
	t.Cleanup(f.Bastions[1].Thaw)
	done := make(chan error, 1)
	go func() {
		_, err := c.Run(t.Context(), remote.Cmd{Args: []string{"true"}})
		done <- err
	}()
	select {
	case err := <-done:
		checkLostVia(t, err, "b2")
	case <-time.After(10 * time.Second):
		t.Fatal("a command through a frozen bastion still waits after 10s")
	}
}

// A ProxyCommand carries the connection (here OpenSSH's own client with -W,
// through the host itself); it is ended when the connection closes, and
// when it fails, what it said is in the error.
func TestProxyCommand(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/usr/bin/ssh"); err != nil {
		t.Skip("no OpenSSH client")
	}
	f := sshtest.Start(t, 1)
	h := f.Hosts[0]
	pidFile := filepath.Join(t.TempDir(), "pid")
	s := writeSSHConfig(t, f, fmt.Sprintf(`Host proxied
    HostName 127.0.0.1
    Port %d
    ProxyCommand sh -c 'echo $$ > %s; exec ssh -F none -i %s -o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes -o BatchMode=yes -p %%p -W %%h:%%p %s@%%h'
Host broken
    ProxyCommand sh -c 'echo cannot reach %%h >&2; exit 3'
`, h.Port, pidFile, f.Identity, f.KnownHosts, f.User))
	c, err := remote.NewDialer(remote.DialerOptions{}).Dial(t.Context(), resolve(t, s, "proxied", remote.Overrides{}))
	if err != nil {
		t.Fatal(err)
	}
	if got := whoami(t, c); got != f.User {
		t.Errorf("logged in as %q", got)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the proxy command (pid %d) outlived Close: kill -0 says %v", pid, err)
	}

	_, err = remote.NewDialer(remote.DialerOptions{}).Dial(t.Context(), resolve(t, s, "broken", remote.Overrides{}))
	if err == nil || !strings.Contains(err.Error(), "cannot reach broken") || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("got %v, want the proxy command's message and exit status", err)
	}
}

// A host that never answers fails within the connect timeout, whatever it
// is waiting on.
func TestConnectTimeout(t *testing.T) {
	t.Parallel()
	f := sshtest.Start(t, 1)
	h := f.Hosts[0]
	h.Freeze()
	t.Cleanup(h.Thaw)
	s := writeSSHConfig(t, f, fmt.Sprintf("Host frozen\n    HostName 127.0.0.1\n    Port %d\n    ConnectTimeout 1\n", h.Port))
	begin := time.Now()
	_, err := remote.Dial(t.Context(), resolve(t, s, "frozen", remote.Overrides{}))
	if took := time.Since(begin); err == nil || !strings.Contains(err.Error(), "within 1s") || took > 5*time.Second {
		t.Errorf("got %v after %v, want a timeout after 1s", err, took)
	}
	ctx, cancel := context.WithCancel(t.Context())
	go func() { <-time.After(100 * time.Millisecond); cancel() }()
	if _, err := remote.Dial(ctx, resolve(t, s, "frozen", remote.Overrides{ConnectTimeout: time.Minute})); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled dial: got %v, want context.Canceled", err)
	}
}
