package sshtest

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// run runs cmd in a new session of c and returns its combined output.
func run(t *testing.T, c *ssh.Client, cmd string) string {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatalf("new session: %v", err)
	}
	defer s.Close()
	out, err := s.CombinedOutput(cmd)
	if err != nil {
		t.Fatalf("%q: %v\n%s", cmd, err, out)
	}
	return string(out)
}

// await waits for ch up to limit, an upper bound only; it reports whether ch delivered.
func await[T any](ch <-chan T, limit time.Duration) (T, bool) {
	timer := time.NewTimer(limit)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v, true
	case <-timer.C:
		var zero T
		return zero, false
	}
}

// innerPid returns the pid a process has in its own PID namespace, or 0.
func innerPid(pid int) int {
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "NSpid:"); ok {
			f := strings.Fields(rest)
			n, _ := strconv.Atoi(f[len(f)-1])
			return n
		}
	}
	return 0
}

// keepalive sends an OpenSSH keepalive on c and delivers the outcome when a reply (or an error) arrives.
func keepalive(c *ssh.Client) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, _, err := c.SendRequest("keepalive@openssh.com", true, nil)
		done <- err
	}()
	return done
}

func TestStartRunsCommandsAsLoginUser(t *testing.T) {
	t.Parallel()
	f := Start(t, 3)
	u, err := user.Lookup(f.User)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Hosts) != 3 {
		t.Fatalf("got %d hosts, want 3", len(f.Hosts))
	}
	kh, err := os.ReadFile(f.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(kh), "\n"), "\n")
	if len(lines) != len(f.Hosts) {
		t.Fatalf("known_hosts has %d lines, want one per host:\n%s", len(lines), kh)
	}
	seen := map[string]bool{}
	for i, h := range f.Hosts {
		if want := fmt.Sprintf("[127.0.0.1]:%d %s", h.Port, ssh.MarshalAuthorizedKey(h.HostKey)); lines[i]+"\n" != want {
			t.Errorf("known_hosts line %q, want %q", lines[i], want)
		}
		if want := "127.0.0.1:" + strconv.Itoa(h.Port); h.Name != want {
			t.Errorf("host name %q, want %q", h.Name, want)
		}
		if seen[h.Name] || seen[h.Root] || seen[string(h.HostKey.Marshal())] {
			t.Errorf("%s shares its port, root or host key with another host", h.Name)
		}
		seen[h.Name], seen[h.Root], seen[string(h.HostKey.Marshal())] = true, true, true
		if !filepath.IsAbs(h.Root) || !strings.HasPrefix(h.Root, f.Dir+string(filepath.Separator)) {
			t.Errorf("root %q is not an absolute path below %s", h.Root, f.Dir)
		}

		if got, want := run(t, h.Dial(t), "echo $HOME; id -un"), u.HomeDir+"\n"+f.User+"\n"; got != want {
			t.Errorf("%s: got %q, want %q", h.Name, got, want)
		}
		if f.User != "root" {
			cfg := f.ClientConfig(t)
			cfg.User = "root"
			if c, err := ssh.Dial("tcp", h.Name, cfg); err == nil {
				c.Close()
				t.Errorf("%s: root logged in with the fleet's key", h.Name)
			}
		}
		// The root is absent and its parent is the login user's to write in.
		got := h.Exec(t, `id -un; test -e "$ROOT" && echo exists; mkdir "$ROOT" && echo created`)
		if want := f.User + "\ncreated\n"; got != want {
			t.Errorf("%s: Exec got %q, want %q", h.Name, got, want)
		}
	}
}

func TestKillAndRestart(t *testing.T) {
	t.Parallel()
	f := Start(t, 2)
	h, other := f.Hosts[0], f.Hosts[1]
	c := h.Dial(t)
	run(t, c, "true")
	procs, err := processTree(h.Pids()[0])
	if err != nil {
		t.Fatal(err)
	}

	h.Kill()
	closed := make(chan error, 1)
	go func() { closed <- c.Wait() }()
	if _, ok := await(closed, 10*time.Second); !ok {
		t.Fatal("client connection still open after Kill")
	}
	for _, p := range procs {
		if !dead(p) {
			t.Errorf("process %d survived Kill", p.pid)
		}
	}
	if pids := h.Pids(); pids != nil {
		t.Errorf("Pids after Kill = %v, want none", pids)
	}
	if conn, err := net.DialTimeout("tcp", h.Name, 5*time.Second); err == nil {
		conn.Close()
		t.Errorf("%s still accepts connections after Kill", h.Name)
	}
	if got := run(t, other.Dial(t), "id -un"); got != f.User+"\n" {
		t.Errorf("other host: got %q", got)
	}
	h.Kill() // a dead host stays dead

	h.Restart(t)
	// Dial checks the host key against the unchanged known_hosts file.
	if got := run(t, h.Dial(t), "id -un"); got != f.User+"\n" {
		t.Errorf("after Restart: got %q", got)
	}
}

func TestFreezeSilencesHost(t *testing.T) {
	t.Parallel()
	f := Start(t, 2)
	h := f.Hosts[0]
	c := h.Dial(t)
	if _, ok := await(keepalive(c), 10*time.Second); !ok {
		t.Fatal("no keepalive reply before Freeze")
	}
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := s.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("echo running; exec sleep 600"); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "running\n" {
		t.Fatalf("session: got %q, %v", line, err)
	}

	h.Freeze()
	pids := h.Pids()
	if len(pids) < 3 {
		t.Errorf("frozen host has processes %v, want the listener and its sessions", pids)
	}
	for _, pid := range pids {
		if p, err := readProc(pid); err == nil && p.state != 'T' {
			t.Errorf("process %d in state %c, want stopped", pid, p.state)
		}
	}

	reply := keepalive(c)
	if _, ok := await(reply, time.Second); ok {
		t.Fatal("keepalive answered while frozen")
	}
	// The kernel still completes new TCP handshakes, but no banner comes.
	conn, err := net.DialTimeout("tcp", h.Name, 5*time.Second)
	if err != nil {
		t.Fatalf("TCP connect to frozen host: %v", err)
	}
	defer conn.Close()
	banner := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(conn).ReadString('\n')
		banner <- line
	}()
	if line, ok := await(banner, 500*time.Millisecond); ok {
		t.Fatalf("frozen host sent %q", line)
	}
	// Other hosts are not affected.
	if got := run(t, f.Hosts[1].Dial(t), "id -un"); got != f.User+"\n" {
		t.Errorf("other host: got %q", got)
	}

	h.Thaw()
	if err, ok := await(reply, 10*time.Second); !ok {
		t.Fatal("no keepalive reply after Thaw")
	} else if err != nil {
		t.Fatalf("keepalive after Thaw: %v", err)
	}
	if line, ok := await(banner, 10*time.Second); !ok || !strings.HasPrefix(line, "SSH-2.0-") {
		t.Fatalf("queued connection after Thaw: got %q", line)
	}
	if got := run(t, c, "id -un"); got != f.User+"\n" {
		t.Errorf("after Thaw: got %q", got)
	}
}

func TestCleanupLeavesNothing(t *testing.T) {
	t.Parallel()
	var (
		procs  []proc
		dir    string
		client *ssh.Client
	)
	t.Run("fleet", func(t *testing.T) {
		f := Start(t, 2)
		dir = f.Dir
		var err error
		// Not h.Dial: the session must still run when the fleet is torn down.
		if client, err = ssh.Dial("tcp", f.Hosts[0].Name, f.ClientConfig(t)); err != nil {
			t.Fatal(err)
		}
		s, err := client.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		out, err := s.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		// $$ is the shell's pid as seen on the host: in its PID namespace if any.
		if err := s.Start("echo $$; exec sleep 600"); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil {
			t.Fatalf("session: %v", err)
		}
		shell, err := strconv.Atoi(strings.TrimSpace(line))
		if err != nil {
			t.Fatalf("session: got %q", line)
		}
		f.Hosts[1].Freeze() // teardown must cope with a silent host too
		for _, h := range f.Hosts {
			pids := h.Pids()
			if len(pids) == 0 {
				t.Fatalf("%s has no processes", h.Name)
			}
			p, err := processTree(pids[0])
			if err != nil {
				t.Fatal(err)
			}
			procs = append(procs, p...)
		}
		if !slices.ContainsFunc(procs, func(p proc) bool { return innerPid(p.pid) == shell }) {
			t.Errorf("the session's command (pid %d inside) is not among the fleet's processes %v", shell, procs)
		}
	})
	if client != nil {
		defer client.Close()
	}
	if t.Failed() {
		return
	}

	for _, p := range procs {
		if !dead(p) {
			t.Errorf("process %d (ppid %d) survived the fleet", p.pid, p.ppid)
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("fleet folder %s left behind: %v", dir, err)
	}
}

// outcomeTB records how a test would end instead of ending it, to test what
// Start does on a machine without sshd. Skip and Fatal end the calling
// goroutine, as they do in a real test.
type outcomeTB struct {
	testing.TB
	mu      sync.Mutex
	skipped bool
	failed  bool
	message string
}

func (r *outcomeTB) end(skipped bool, msg string) {
	r.mu.Lock()
	r.skipped, r.failed, r.message = skipped, !skipped, msg
	r.mu.Unlock()
	runtime.Goexit()
}

func (r *outcomeTB) Skip(args ...any)                 { r.end(true, fmt.Sprint(args...)) }
func (r *outcomeTB) Skipf(format string, args ...any) { r.end(true, fmt.Sprintf(format, args...)) }
func (r *outcomeTB) SkipNow()                         { r.end(true, "") }
func (r *outcomeTB) Fatal(args ...any)                { r.end(false, fmt.Sprint(args...)) }
func (r *outcomeTB) Fatalf(format string, args ...any) {
	r.end(false, fmt.Sprintf(format, args...))
}
func (r *outcomeTB) FailNow() { r.end(false, "") }

func TestStartWithoutSSHD(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "sshd")
	for _, tc := range []struct {
		name               string
		ci                 bool
		wantSkip, wantFail bool
	}{
		{name: "locally the test is skipped", ci: false, wantSkip: true},
		{name: "in CI the test fails", ci: true, wantFail: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := &outcomeTB{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				start(r, 1, options{sshd: missing, ci: tc.ci})
				t.Error("start returned without sshd")
			}()
			<-done
			if r.skipped != tc.wantSkip || r.failed != tc.wantFail {
				t.Errorf("skipped=%v failed=%v, want %v %v", r.skipped, r.failed, tc.wantSkip, tc.wantFail)
			}
			if !strings.Contains(r.message, missing) || !strings.Contains(r.message, "openssh-server") {
				t.Errorf("message %q does not name the missing binary and the package to install", r.message)
			}
		})
	}
}

// TestLoginLatency measures what one remote command costs, with OpenSSH's
// client and with golang.org/x/crypto/ssh, so a slow login shell or a
// mistuned sshd shows up in the log. It asserts correctness, not speed.
func TestLoginLatency(t *testing.T) {
	t.Parallel()
	f := Start(t, 1)
	h := f.Hosts[0]
	const rounds = 5
	report := func(what string, d []time.Duration) {
		slices.Sort(d)
		t.Logf("%-40s min %v  median %v  max %v", what, d[0].Round(time.Millisecond/10), d[len(d)/2].Round(time.Millisecond/10), d[len(d)-1].Round(time.Millisecond/10))
	}

	if _, err := exec.LookPath("ssh"); err != nil {
		t.Log("no OpenSSH client: skipping its measurement")
	} else {
		var d []time.Duration
		for range rounds {
			cmd := exec.CommandContext(t.Context(), "ssh", "-F", "/dev/null", "-i", f.Identity,
				"-o", "UserKnownHostsFile="+f.KnownHosts, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
				"-p", strconv.Itoa(h.Port), f.User+"@127.0.0.1", "id -un")
			begin := time.Now()
			out, err := cmd.CombinedOutput()
			d = append(d, time.Since(begin))
			if err != nil || string(out) != f.User+"\n" {
				t.Fatalf("ssh: %v: %s", err, out)
			}
		}
		report("ssh (connect, auth, command)", d)
	}

	var dial, cmd []time.Duration
	for range rounds {
		begin := time.Now()
		c, err := ssh.Dial("tcp", h.Name, f.ClientConfig(t))
		if err != nil {
			t.Fatal(err)
		}
		run(t, c, "true")
		dial = append(dial, time.Since(begin))
		begin = time.Now()
		run(t, c, "true")
		cmd = append(cmd, time.Since(begin))
		c.Close()
	}
	report("x/crypto/ssh (connect, auth, command)", dial)
	report("x/crypto/ssh (command on open connection)", cmd)
}

// dialThrough opens an SSH connection to h through c's direct-tcpip channel.
func dialThrough(t *testing.T, f *Fleet, c *ssh.Client, h *Host) *ssh.Client {
	t.Helper()
	conn, err := c.Dial("tcp", h.Name)
	if err != nil {
		t.Fatalf("through %s to %s: %v", c.RemoteAddr(), h.Name, err)
	}
	sc, chans, reqs, err := ssh.NewClientConn(conn, h.Name, f.ClientConfig(t))
	if err != nil {
		t.Fatalf("handshake with %s: %v", h.Name, err)
	}
	next := ssh.NewClient(sc, chans, reqs)
	t.Cleanup(func() { next.Close() })
	return next
}

// Hosts behind two bastions are reached through both, over one connection
// per bastion, and from nowhere else: not from the first bastion's network.
func TestHostsBehindBastions(t *testing.T) {
	t.Parallel()
	f := StartWith(t, 2, Options{Bastions: 2, HostCertificates: true})
	if len(f.Bastions) != 2 {
		t.Fatalf("got %d bastions, want 2", len(f.Bastions))
	}
	b1, b2 := f.Bastions[0], f.Bastions[1]
	c1, err := ssh.Dial("tcp", b1.Name, f.ClientConfig(t))
	if err != nil {
		t.Fatalf("the first bastion is not reachable from the test: %v", err)
	}
	defer c1.Close()
	c2 := dialThrough(t, f, c1, b2)
	for i, h := range f.Hosts {
		if want := fmt.Sprintf("10.99.0.%d:22", 11+i); h.Name != want {
			t.Errorf("host %d is %s, want %s", i, h.Name, want)
		}
		if got, want := run(t, dialThrough(t, f, c2, h), "id -un"), f.User+"\n"; got != want {
			t.Errorf("%s: got %q, want %q", h.Name, got, want)
		}
		if h.Certificate == nil || !slices.Contains(h.Certificate.ValidPrincipals, strings.TrimSuffix(h.Name, ":22")) {
			t.Errorf("%s: host certificate %v does not name its address", h.Name, h.Certificate)
		}
	}
	// One each, once the readiness probes' connections have ended.
	for _, h := range []*Host{b1, b2, f.Hosts[0]} {
		for deadline := time.Now().Add(5 * time.Second); h.Connections() != 1; {
			if time.Now().After(deadline) {
				t.Fatalf("%s serves %d connections, want 1", h.Name, h.Connections())
			}
			<-time.After(10 * time.Millisecond)
		}
	}
	// Only through the last bastion: the first one's network has no way in.
	if conn, err := dialIn(b1.ns, f.Hosts[0].Name, time.Now().Add(2*time.Second)); err == nil {
		conn.Close()
		t.Errorf("%s reachable from the first bastion's namespace, not only through the last bastion", f.Hosts[0].Name)
	}
}
