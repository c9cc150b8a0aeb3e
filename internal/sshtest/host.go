package sshtest

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// Host is one sshd of a Fleet. Its methods are safe for concurrent use.
type Host struct {
	Name    string // "127.0.0.1:PORT", the address to dial ("10.99.0.11:22" behind bastions)
	Port    int
	Root    string // absolute path of this host's deploy root (parent exists and is writable by User; Root itself does NOT exist yet)
	HostKey ssh.PublicKey
	Dir     string // this host's own folder: sshd_config, host key, pid file
	// Certificate is the host certificate it presents, with Options.HostCertificates.
	Certificate *ssh.Certificate

	fleet   *Fleet
	config  string      // sshd_config path
	log     *tailBuffer // sshd stderr, across restarts
	bastion bool        // a jump host: the fleet's SSHDConfig lines are not for it
	ns      string      // network namespace; "" for the test's own
	ip      string      // address to listen on in ns

	mu   sync.Mutex
	proc *sshdProc // nil while the host is down
}

// sshdProc is one run of a host's sshd listener.
type sshdProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the listener has exited and been reaped
}

// newHost writes a host's key and deploy folder; it does not start sshd.
func (f *Fleet) newHost(dir string) (*Host, error) {
	h := &Host{
		Dir:   filepath.Join(f.Dir, dir),
		fleet: f,
		log:   newTailBuffer(32 << 10),
	}
	h.config = filepath.Join(h.Dir, "sshd_config")
	if err := os.Mkdir(h.Dir, 0o755); err != nil {
		return nil, err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "sshtest host")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(h.hostKeyPath(), pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	if h.HostKey, err = ssh.NewPublicKey(pub); err != nil {
		return nil, err
	}
	// The deploy root's parent belongs to the login user; the root itself is
	// left for the deploy tool to create.
	parent := filepath.Join(h.Dir, "srv")
	if err := os.Mkdir(parent, 0o755); err != nil {
		return nil, err
	}
	if err := os.Chown(parent, f.account.uid, f.account.gid); err != nil {
		return nil, err
	}
	h.Root = filepath.Join(parent, "app")
	return h, nil
}

func (h *Host) hostKeyPath() string { return filepath.Join(h.Dir, "ssh_host_ed25519_key") }
func (h *Host) pidFile() string     { return filepath.Join(h.Dir, "sshd.pid") }

func (h *Host) listenIP() string {
	if h.ip == "" {
		return "127.0.0.1"
	}
	return h.ip
}

// writeConfig writes the sshd_config for the current Port.
func (h *Host) writeConfig() error {
	lines := []string{
		"# sshtest host " + h.Name,
		"ListenAddress " + h.listenIP(),
		"Port " + strconv.Itoa(h.Port),
		"HostKey " + quote(h.hostKeyPath()),
		"PidFile " + quote(h.pidFile()),
		"UsePAM no",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PubkeyAuthentication yes",
		"AuthorizedKeysFile " + quote(filepath.Join(h.fleet.Dir, "authorized_keys")),
		"StrictModes no",
		"PermitRootLogin prohibit-password",
		// Any user could log in with the shared key otherwise, hiding a client
		// that ignores the user it was told to use.
		"AllowUsers " + quote(h.fleet.User),
		// The default 10:30:100 randomly drops connections past 10 unauthenticated ones.
		"MaxStartups 200:30:400",
		"Subsystem sftp internal-sftp",
		"PrintMotd no",
		"LogLevel ERROR",
	}
	lines = append(lines, h.fleet.extra...)
	if h.fleet.hostCA != nil {
		if err := h.writeCertificate(); err != nil {
			return err
		}
		lines = append(lines, "HostCertificate "+quote(h.certPath()))
	}
	if h.fleet.UserCA != nil {
		lines = append(lines, "TrustedUserCAKeys "+quote(h.fleet.userCAFile()))
	}
	if !h.bastion {
		lines = append(lines, h.fleet.opts.SSHDConfig...)
	}
	return os.WriteFile(h.config, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}

// quote makes a path one sshd_config argument.
func quote(path string) string { return `"` + path + `"` }

// startFresh picks a free port and starts sshd on it, trying another port when
// someone else took the first between picking and binding.
func (h *Host) startFresh() error {
	if h.ns != "" {
		// Alone in its namespace: port 22 of its own address is free.
		h.Port = 22
		h.Name = net.JoinHostPort(h.ip, "22")
		if err := h.writeConfig(); err != nil {
			return err
		}
		p, err := h.run()
		if err != nil {
			return err
		}
		h.mu.Lock()
		h.proc = p
		h.mu.Unlock()
		return nil
	}
	const attempts = 5
	var err error
	for range attempts {
		if h.Port, err = freePort(); err != nil {
			return err
		}
		h.Name = net.JoinHostPort("127.0.0.1", strconv.Itoa(h.Port))
		if err = h.writeConfig(); err != nil {
			return err
		}
		var p *sshdProc
		if p, err = h.run(); err == nil {
			h.mu.Lock()
			h.proc = p
			h.mu.Unlock()
			return nil
		}
		if !errors.Is(err, errPortTaken) {
			return err
		}
	}
	return err
}

// freePort asks the kernel for a port that is free on 127.0.0.1 right now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// errPortTaken says sshd could not bind its port.
var errPortTaken = errors.New("port taken")

// run starts sshd with the current config and waits until it greets.
func (h *Host) run() (*sshdProc, error) {
	fmt.Fprintf(h.log, "--- sshtest: starting sshd on %s\n", h.Name)
	// sshd writes its pid file only once it has bound the port: a fresh one
	// tells our sshd from anything else that might answer there.
	if err := os.Remove(h.pidFile()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	cmd := h.command(true)
	err := cmd.Start()
	if err != nil && isolationRefused(err) {
		cmd = h.command(false)
		err = cmd.Start()
	}
	if err != nil {
		return nil, err
	}
	p := &sshdProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	if err := waitReady(h.ns, h.Name, h.pidFile(), p.done, readyTimeout); err != nil {
		_ = killTree(p)
		if h.ns == "" && portBusy(h.Name) {
			err = fmt.Errorf("%w: %w", errPortTaken, err)
		}
		return nil, fmt.Errorf("%s: %w\nsshd log:\n%s", h.Name, err, h.log.String())
	}
	return p, nil
}

// portBusy reports whether someone else listens on addr.
func portBusy(addr string) bool {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return true
	}
	l.Close()
	return false
}

// command returns the sshd command for the host, isolated in a PID namespace
// of its own if asked.
//
// In its own PID namespace the listener is init: a command left running by a
// closed session is reparented to the listener rather than to the machine's
// init, so it stays in the tree that Freeze and Kill walk, and when the
// listener dies the kernel kills and reaps everything left in the namespace.
// Without root, a user namespace mapping only our own uid and gid makes that
// possible where the kernel allows unprivileged user namespaces.
func (h *Host) command(isolated bool) *exec.Cmd {
	cmd := exec.Command(h.fleet.sshd, "-D", "-e", "-f", h.config)
	if h.ns != "" {
		// nsenter enters the network namespace and execs sshd: the pid stays.
		cmd = exec.Command(nsenterPath, "--net="+netnsPath(h.ns), "--", h.fleet.sshd, "-D", "-e", "-f", h.config)
	}
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"}
	cmd.Stdout = h.log
	cmd.Stderr = h.log
	// Don't let a surviving holder of the log pipe block Wait forever.
	cmd.WaitDelay = time.Second
	// Its own process group too: signals to the group reach the listener and
	// any child that has not yet moved to a session of its own (sshd calls
	// setsid for every connection and session, so the group alone is not enough).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if !isolated {
		return cmd
	}
	cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWPID
	if uid, gid := os.Geteuid(), os.Getegid(); uid != 0 {
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: uid, HostID: uid, Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: gid, HostID: gid, Size: 1}}
	}
	return cmd
}

// isolationRefused reports whether starting in new namespaces failed because
// the kernel or a security module does not allow them here.
func isolationRefused(err error) bool {
	return errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL) ||
		errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EACCES)
}

// errExited says sshd exited while we waited for it to greet.
var errExited = errors.New("sshd exited")

// waitReady polls until sshd has written pidFile and addr accepts a connection
// and sends an SSH-2.0 banner, giving up at once if the process exits and
// after timeout otherwise.
func waitReady(ns, addr, pidFile string, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	backoff := time.Millisecond
	for {
		select {
		case <-exited:
			return errExited
		default:
		}
		_, err := os.Stat(pidFile)
		if err == nil {
			if err = probe(ns, addr, deadline); err == nil {
				return nil
			}
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("no SSH banner within %v: %w", timeout, err)
		}
		retry := time.NewTimer(backoff)
		select {
		case <-exited:
			retry.Stop()
			return errExited
		case <-retry.C:
		}
		backoff = min(2*backoff, 50*time.Millisecond)
	}
}

// probe connects once and reads the server's identification line.
func probe(ns, addr string, deadline time.Time) error {
	if d := time.Now().Add(time.Second); d.Before(deadline) {
		deadline = d
	}
	conn, err := dialIn(ns, addr, deadline)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(deadline); err != nil {
		return err
	}
	// Identify ourselves too: sshd logs a connection closed before that as an error.
	if _, err := io.WriteString(conn, "SSH-2.0-sshtest_probe\r\n"); err != nil {
		return err
	}
	line, err := bufio.NewReaderSize(conn, 256).ReadSlice('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(string(line), "SSH-2.0-") {
		return fmt.Errorf("unexpected greeting %q", line)
	}
	return nil
}

// Kill makes the host die: SIGKILL for its sshd and every session process.
// Killing a host that is already down does nothing.
func (h *Host) Kill() {
	if err := h.kill(); err != nil {
		h.fleet.t.Errorf("sshtest: killing %s: %v", h.Name, err)
	}
}

func (h *Host) kill() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.proc
	h.proc = nil
	if p == nil {
		return nil
	}
	return killTree(p)
}

// killTree stops the listener and all its descendants, so none can fork a
// process we would miss, then kills them all and waits until they are dead.
func killTree(p *sshdProc) error {
	listener := p.cmd.Process.Pid
	procs, stopErr := stopTree(listener)
	for _, pr := range procs {
		_ = syscall.Kill(pr.pid, syscall.SIGKILL)
	}
	_ = syscall.Kill(-listener, syscall.SIGKILL)
	timeout := time.NewTimer(stopTimeout)
	defer timeout.Stop()
	select {
	case <-p.done:
	case <-timeout.C:
		return fmt.Errorf("sshd %d still running %v after SIGKILL", listener, stopTimeout)
	}
	if err := waitAll(procs, time.Now().Add(stopTimeout), dead); err != nil {
		return err
	}
	return stopErr
}

// Freeze makes the host silent: its listener and every session process get
// SIGSTOP, so TCP connections are still accepted by the kernel but nothing
// answers on them, nor on connections already open.
func (h *Host) Freeze() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.proc == nil {
		h.fleet.t.Errorf("sshtest: freezing %s: host is down", h.Name)
		return
	}
	if _, err := stopTree(h.proc.cmd.Process.Pid); err != nil {
		h.fleet.t.Errorf("sshtest: freezing %s: %v", h.Name, err)
	}
}

// Thaw undoes Freeze: every process of the host continues where it stopped.
func (h *Host) Thaw() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.proc == nil {
		h.fleet.t.Errorf("sshtest: thawing %s: host is down", h.Name)
		return
	}
	listener := h.proc.cmd.Process.Pid
	procs, err := processTree(listener)
	if err != nil {
		h.fleet.t.Errorf("sshtest: thawing %s: %v", h.Name, err)
	}
	for _, pr := range procs {
		_ = syscall.Kill(pr.pid, syscall.SIGCONT)
	}
	_ = syscall.Kill(-listener, syscall.SIGCONT)
}

// Restart starts a killed host again on the same port with the same host key.
func (h *Host) Restart(t testing.TB) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.proc != nil {
		t.Fatalf("sshtest: restarting %s: host is still running; Kill it first", h.Name)
	}
	p, err := h.run()
	if err != nil {
		t.Fatalf("sshtest: restarting %v", err)
	}
	h.proc = p
}

// Connections counts the SSH connections the host's sshd is serving: one
// child of the listener per connection (OpenSSH before 9.8, and
// sshd-session after). 0 when down.
func (h *Host) Connections() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.proc == nil {
		return 0
	}
	listener := h.proc.cmd.Process.Pid
	procs, err := processTree(listener)
	if err != nil {
		h.fleet.t.Errorf("sshtest: listing processes of %s: %v", h.Name, err)
	}
	n := 0
	for _, p := range procs {
		if p.ppid == listener {
			n++
		}
	}
	return n
}

// Pids lists the live processes of the host: its sshd listener and every
// descendant (per-connection sshd, sessions, remote commands). Nil when down.
func (h *Host) Pids() []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.proc == nil {
		return nil
	}
	procs, err := processTree(h.proc.cmd.Process.Pid)
	if err != nil {
		h.fleet.t.Errorf("sshtest: listing processes of %s: %v", h.Name, err)
	}
	pids := make([]int, len(procs))
	for i, pr := range procs {
		pids[i] = pr.pid
	}
	return pids
}

// Exec runs script with /bin/sh on this machine (not over SSH) as the login
// user, in its home folder, with $ROOT set to the host's deploy root, to set up
// or inspect the host's files. It returns the combined output and fails the
// test when the script fails.
func (h *Host) Exec(t testing.TB, script string) string {
	t.Helper()
	a := h.fleet.account
	// No t.Context(): it is already cancelled when a Cleanup inspects a host.
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Dir = a.home
	cmd.Env = append(a.env(), "ROOT="+h.Root)
	cmd.SysProcAttr = a.sysProcAttr()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sshtest: %s: running %q as %s: %v\n%s", h.Name, script, a.name, err, out)
	}
	return string(out)
}

// Dial opens an SSH connection to the host with Fleet.ClientConfig, closed
// in t.Cleanup; from inside its network namespace for a host behind bastions.
func (h *Host) Dial(t testing.TB) *ssh.Client {
	t.Helper()
	conn, err := dialIn(h.ns, h.Name, time.Now().Add(readyTimeout))
	if err != nil {
		t.Fatalf("sshtest: dialing %s: %v", h.Name, err)
	}
	sc, chans, reqs, err := ssh.NewClientConn(conn, h.Name, h.fleet.ClientConfig(t))
	if err != nil {
		conn.Close()
		t.Fatalf("sshtest: dialing %s: %v", h.Name, err)
	}
	c := ssh.NewClient(sc, chans, reqs)
	t.Cleanup(func() { _ = c.Close() })
	return c
}
