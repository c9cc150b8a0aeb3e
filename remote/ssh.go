package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// Default bounds on a host that stops answering; see README "Timeouts".
const (
	DefaultConnectTimeout    = 10 * time.Second // TCP connect + SSH handshake + auth
	DefaultKeepaliveInterval = 5 * time.Second
	DefaultKeepaliveMax      = 3 // unanswered keepalives before the connection is dropped
	// DefaultStopGrace bounds how long a cancelled command may take to end on
	// the host (the kill-on-hangup wrapper sends SIGKILL after 3 s).
	DefaultStopGrace = 10 * time.Second
)

// Config says how to reach one host.
type Config struct {
	Name       string // as the inventory writes it, for messages
	Addr       string // host:port
	User       string
	Identity   string // private key file; "" means ~/.ssh/id_* that exist
	KnownHosts string

	// Agent, when set, is the path of an ssh-agent socket (SSH_AUTH_SOCK).
	Agent string

	ConnectTimeout    time.Duration
	KeepaliveInterval time.Duration
	KeepaliveMax      int

	// StopGrace bounds how long Run, once its context ends, waits for the
	// command to end on the host before it gives up and closes the session;
	// and how long SFTP requests already sent are waited for.
	StopGrace time.Duration
}

func (c *Config) defaults() {
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.KeepaliveInterval <= 0 {
		c.KeepaliveInterval = DefaultKeepaliveInterval
	}
	if c.KeepaliveMax <= 0 {
		c.KeepaliveMax = DefaultKeepaliveMax
	}
	if c.StopGrace <= 0 {
		c.StopGrace = DefaultStopGrace
	}
}

// Client is a Host reached over SSH, with one SFTP session multiplexed on the
// same connection.
type Client struct {
	name   string
	conn   net.Conn
	ssh    *ssh.Client
	sftp   *sftp.Client
	closer []io.Closer
	done   chan struct{}
	once   sync.Once

	rtt       time.Duration // the network round trip (see ConnectRTT)
	stopGrace time.Duration // see Config.StopGrace

	mu   sync.Mutex
	lost error // why the connection was dropped by us, if it was
}

// ConnectRTT is the network round trip to the host: the smallest the kernel
// measured during the handshake where it says (Linux), else how long the TCP
// connect took (which a busy client can stretch).
func (c *Client) ConnectRTT() time.Duration { return c.rtt }

// ServerVersion is the identification the host's SSH server sent, such as
// "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3".
func (c *Client) ServerVersion() string { return string(c.ssh.ServerVersion()) }

var _ Host = (*Client)(nil)

// Dial connects to a host, verifies its key against known_hosts, authenticates
// with the agent and/or key file, and opens SFTP. Every stage is bounded by
// cfg.ConnectTimeout; afterwards keepalives detect a host gone silent.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	cfg.defaults()
	hostKey, algos, err := hostKeyCheck(cfg.KnownHosts, cfg.Addr)
	if err != nil {
		return nil, err
	}
	auth, closers, err := authMethods(cfg)
	if err != nil {
		return nil, err
	}
	closeAll := func() {
		for _, c := range closers {
			c.Close()
		}
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	var d net.Dialer
	dialStart := time.Now()
	conn, err := d.DialContext(ctx, "tcp", cfg.Addr)
	rtt := time.Since(dialStart)
	if err != nil {
		closeAll()
		return nil, dialError(ctx, err, cfg.ConnectTimeout)
	}
	// x/crypto/ssh's Timeout covers only the TCP dial: bound the handshake and
	// authentication too, and give up at once if ctx is cancelled.
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	sshConf := &ssh.ClientConfig{
		User:              cfg.User,
		Auth:              auth,
		HostKeyCallback:   hostKey,
		HostKeyAlgorithms: algos,
		Timeout:           cfg.ConnectTimeout,
	}
	quick, connected := ackAtOnce(conn)
	c, chans, reqs, err := ssh.NewClientConn(quick, cfg.Addr, sshConf)
	if err != nil {
		stop()
		conn.Close()
		closeAll()
		if hk, ok := asHostKeyError(err); ok {
			return nil, hk
		}
		if ctx.Err() != nil {
			return nil, dialError(ctx, ctx.Err(), cfg.ConnectTimeout)
		}
		return nil, fmt.Errorf("ssh handshake: %w", err)
	}
	client := ssh.NewClient(c, chans, reqs)
	sc, err := sftp.NewClient(client)
	if err != nil {
		stop()
		client.Close()
		closeAll()
		if ctx.Err() != nil {
			return nil, dialError(ctx, ctx.Err(), cfg.ConnectTimeout)
		}
		return nil, fmt.Errorf("opening sftp (is the sftp subsystem enabled in sshd_config?): %w", err)
	}
	if !stop() && ctx.Err() != nil {
		sc.Close()
		client.Close()
		closeAll()
		return nil, dialError(ctx, ctx.Err(), cfg.ConnectTimeout)
	}
	connected()
	conn.SetDeadline(time.Time{})
	if k, ok := kernelRTT(conn); ok {
		rtt = k
	}
	cl := &Client{name: cfg.Name, conn: conn, ssh: client, sftp: sc, closer: closers, done: make(chan struct{}), rtt: rtt, stopGrace: cfg.StopGrace}
	go cl.keepalive(cfg.KeepaliveInterval, cfg.KeepaliveMax)
	return cl, nil
}

func dialError(ctx context.Context, err error, limit time.Duration) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("no SSH connection within %s (host down or not answering)", limit)
	}
	if errors.Is(err, context.Canceled) {
		return context.Canceled
	}
	return fmt.Errorf("connecting: %w", err)
}

// authMethods offers the agent's keys (when SSH_AUTH_SOCK is set) and the key files.
func authMethods(cfg Config) ([]ssh.AuthMethod, []io.Closer, error) {
	var signers []ssh.Signer
	var closers []io.Closer
	var problems []string
	if cfg.Agent != "" {
		if conn, err := net.Dial("unix", cfg.Agent); err == nil {
			closers = append(closers, conn)
			if s, err := agent.NewClient(conn).Signers(); err == nil {
				signers = append(signers, s...)
			}
		}
	}
	files := []string{cfg.Identity}
	if cfg.Identity == "" {
		files = nil
		if home, err := os.UserHomeDir(); err == nil {
			for _, n := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
				files = append(files, filepath.Join(home, ".ssh", n))
			}
		}
	}
	for _, f := range files {
		pem, err := os.ReadFile(f)
		if err != nil {
			if cfg.Identity != "" {
				problems = append(problems, fmt.Sprintf("identity %s: %v", f, err))
			}
			continue
		}
		s, err := ssh.ParsePrivateKey(pem)
		var pp *ssh.PassphraseMissingError
		if errors.As(err, &pp) {
			problems = append(problems, fmt.Sprintf("identity %s is passphrase-protected: load it into ssh-agent", f))
			continue
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("identity %s: %v", f, err))
			continue
		}
		signers = append(signers, s)
	}
	if len(signers) == 0 {
		for _, c := range closers {
			c.Close()
		}
		msg := "no SSH key to offer: set ssh.identity in the inventory or start ssh-agent"
		if len(problems) > 0 {
			msg += " (" + strings.Join(problems, "; ") + ")"
		}
		return nil, nil, errors.New(msg)
	}
	return []ssh.AuthMethod{ssh.PublicKeys(signers...)}, closers, nil
}

// keepalive drops the connection when the host stops answering, so that every
// operation in flight fails instead of hanging.
func (c *Client) keepalive(every time.Duration, maxMissed int) {
	t := time.NewTicker(every)
	defer t.Stop()
	replies := make(chan error, 1)
	inFlight := false
	last := time.Now()
	for {
		select {
		case <-c.done:
			return
		case err := <-replies:
			inFlight = false
			if err != nil {
				return // connection already gone
			}
			last = time.Now()
		case now := <-t.C:
			if silent := now.Sub(last); silent >= every*time.Duration(maxMissed) {
				c.drop(fmt.Errorf("host silent for %s (no answer to keepalives)", silent.Round(time.Second)))
				return
			}
			if !inFlight {
				inFlight = true
				go func() {
					_, _, err := c.ssh.SendRequest("keepalive@openssh.com", true, nil)
					replies <- err
				}()
			}
		}
	}
}

func (c *Client) drop(why error) {
	c.mu.Lock()
	if c.lost == nil {
		c.lost = why
	}
	c.mu.Unlock()
	c.conn.Close()
}

// Name is the host as the inventory writes it.
func (c *Client) Name() string { return c.name }

// Close ends the SFTP session and the connection.
func (c *Client) Close() error {
	c.once.Do(func() { close(c.done) })
	c.sftp.Close()
	err := c.ssh.Close()
	for _, cl := range c.closer {
		cl.Close()
	}
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// connErr turns a transport failure into ErrConnLost with the reason we know.
func (c *Client) connErr(err error) error {
	if err == nil {
		return nil
	}
	c.mu.Lock()
	lost := c.lost
	c.mu.Unlock()
	if lost != nil {
		return fmt.Errorf("%w: %v", ErrConnLost, lost)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, sftp.ErrSSHFxConnectionLost) || strings.Contains(err.Error(), "use of closed network connection") {
		return fmt.Errorf("%w: %v", ErrConnLost, err)
	}
	return err
}

// Run runs cmd in a new session on the connection.
func (c *Client) Run(ctx context.Context, cmd Cmd) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s, err := c.ssh.NewSession()
	if err != nil {
		return nil, c.connErr(fmt.Errorf("opening session: %w", err))
	}
	defer s.Close()
	var stdout limitedBuffer
	stdout.max = 16 << 20
	errTail := &tail{max: 4096}
	if cmd.Stdout != nil {
		s.Stdout = cmd.Stdout
	} else {
		s.Stdout = &stdout
	}
	if cmd.Stderr != nil {
		s.Stderr = io.MultiWriter(cmd.Stderr, errTail)
	} else {
		s.Stderr = errTail
	}
	var paced *pacedReader
	var progress *lineFilter
	if cmd.Pace != nil && cmd.Stdin != nil {
		paced = newPacedReader(cmd.Stdin, cmd.Pace.Window, cmd.Pace.Stall)
		progress = &lineFilter{w: s.Stderr, drop: func(line []byte) bool {
			n, ok := cmd.Pace.Read(line)
			if ok {
				paced.ack(n)
			}
			return ok
		}}
		s.Stderr = progress
		cmd.Stdin = paced
		// Whatever way the command ends, a read still waiting for room must
		// not outlive Run.
		defer paced.close()
	}
	// stop makes the command end early: for a command fed by cmd.Stdin, the
	// input ends (what it does with a cut stream is its own affair: a tar
	// fails); for any other, the kill-on-hangup wrapper sees its stdin close
	// and kills the command's process group (a brief script has no wrapper
	// and is left to end by itself).
	var stdin io.WriteCloser
	var stop func()
	if cmd.Stdin != nil {
		in := &stoppableReader{r: cmd.Stdin, stopped: make(chan struct{})}
		s.Stdin = in
		stop = in.stop
		if paced != nil {
			stop = func() { in.stop(); paced.close() }
		}
	} else {
		// Held open for the command's life: closing it tells the host to kill it.
		if stdin, err = s.StdinPipe(); err != nil {
			return nil, c.connErr(err)
		}
		stop = func() { stdin.Close() }
	}
	if err := s.Start(cmd.wire()); err != nil {
		return nil, c.connErr(fmt.Errorf("starting command: %w", err))
	}
	done := make(chan error, 1)
	go func() {
		err := s.Wait()
		if progress != nil {
			progress.Flush() // the copy into it has ended
		}
		done <- err
	}()
	select {
	case err = <-done:
	case <-ctx.Done():
		select {
		case err = <-done: // it ended as ctx did: its own outcome counts
		default:
			// Wait for the command to end, not just for the channel to
			// close: whatever runs next on the host (an undo) must never
			// race with a command still at work there.
			stop()
			t := time.NewTimer(c.stopGrace)
			select {
			case <-done:
			case <-t.C:
				s.Close()
				<-done
			}
			t.Stop()
			return nil, ctx.Err()
		}
	}
	if stdin != nil {
		stdin.Close()
	}
	if err != nil {
		var ee *ssh.ExitError
		if errors.As(err, &ee) {
			x := &ExitError{Status: ee.ExitStatus(), Signal: ee.Signal(), Stderr: errTail.String()}
			if x.Signal != "" {
				x.Status = -1
			}
			return stdout.Bytes(), x
		}
		var missing *ssh.ExitMissingError
		if errors.As(err, &missing) {
			return stdout.Bytes(), c.connErr(fmt.Errorf("%w: command ended without an exit status", ErrConnLost))
		}
		return stdout.Bytes(), c.connErr(err)
	}
	return stdout.Bytes(), nil
}

// stoppableReader is a command's input that can be cut short: after stop,
// the next read ends the stream.
type stoppableReader struct {
	r       io.Reader
	once    sync.Once
	stopped chan struct{}
}

func (s *stoppableReader) Read(p []byte) (int, error) {
	select {
	case <-s.stopped:
		return 0, io.EOF
	default:
		return s.r.Read(p)
	}
}

func (s *stoppableReader) stop() { s.once.Do(func() { close(s.stopped) }) }

// limitedBuffer keeps at most max bytes of output; Run's callers read small outputs.
type limitedBuffer struct {
	max int
	b   []byte
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - len(l.b); room > 0 {
		if len(p) > room {
			l.b = append(l.b, p[:room]...)
		} else {
			l.b = append(l.b, p...)
		}
	}
	return len(p), nil
}

func (l *limitedBuffer) Bytes() []byte { return l.b }

// sftpCall runs SFTP requests. pkg/sftp takes no context, so when ctx ends
// first the requests already sent are waited for (up to the stop grace; a
// dead connection ends them sooner): an undo that follows must not race with
// them. Their own outcome is returned when it arrives, else ctx.Err.
func (c *Client) sftpCall(ctx context.Context, f func() error) error {
	_, err := sftpGet(ctx, c, func() (struct{}, error) { return struct{}{}, f() })
	return err
}

// sftpGet is sftpCall for requests that return a value.
func sftpGet[T any](ctx context.Context, c *Client, f func() (T, error)) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := f()
		done <- result{v, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		t := time.NewTimer(c.stopGrace)
		defer t.Stop()
		select {
		case r = <-done:
		case <-t.C:
			return zero, ctx.Err()
		}
	}
	if r.err != nil {
		return r.v, c.connErr(sftpErr(r.err))
	}
	return r.v, nil
}

// sftpErr maps SFTP status codes onto the fs errors callers test for.
func sftpErr(err error) error {
	var se *sftp.StatusError
	if errors.As(err, &se) {
		switch se.FxCode() {
		case sftp.ErrSSHFxNoSuchFile:
			return fmt.Errorf("%w (%v)", fs.ErrNotExist, err)
		case sftp.ErrSSHFxPermissionDenied:
			return fmt.Errorf("%w (%v)", fs.ErrPermission, err)
		}
	}
	return err
}

// ReadFile reads a small remote file.
func (c *Client) ReadFile(ctx context.Context, p string) ([]byte, error) {
	return sftpGet(ctx, c, func() ([]byte, error) {
		f, err := c.sftp.Open(p)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return io.ReadAll(io.LimitReader(f, 16<<20))
	})
}

// ReadTail reads the last max bytes of a remote file.
func (c *Client) ReadTail(ctx context.Context, p string, max int64) ([]byte, error) {
	return sftpGet(ctx, c, func() ([]byte, error) {
		f, err := c.sftp.Open(p)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return nil, err
		}
		if off := fi.Size() - max; off > 0 {
			if _, err := f.Seek(off, io.SeekStart); err != nil {
				return nil, err
			}
		}
		return io.ReadAll(io.LimitReader(f, max))
	})
}

// WriteFile writes data to a temporary name beside path, then renames it over path.
func (c *Client) WriteFile(ctx context.Context, p string, data []byte, perm fs.FileMode) error {
	tmp := path.Join(path.Dir(p), fmt.Sprintf(".%s.tmp-%d", path.Base(p), time.Now().UnixNano()))
	return c.sftpCall(ctx, func() error {
		f, err := c.sftp.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
		if err != nil {
			return err
		}
		_, werr := f.Write(data)
		if werr == nil {
			werr = f.Chmod(perm)
		}
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr == nil {
			werr = c.sftp.PosixRename(tmp, p)
		}
		if werr != nil {
			c.sftp.Remove(tmp)
		}
		return werr
	})
}

// AppendFile appends data to path, creating it (0644) when absent. The write
// goes at the file's current size, with O_APPEND too: OpenSSH's sftp-server
// honours O_APPEND, other servers (pkg/sftp's) use the offset.
func (c *Client) AppendFile(ctx context.Context, p string, data []byte) error {
	return c.sftpCall(ctx, func() error {
		f, err := c.sftp.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND)
		if err != nil {
			return err
		}
		fi, err := f.Stat()
		if err == nil {
			_, err = f.WriteAt(data, fi.Size())
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	})
}

// Symlink creates path -> target. (pkg/sftp's client swaps the arguments for
// OpenSSH's reversed SSH_FXP_SYMLINK, so this reads as os.Symlink does.)
func (c *Client) Symlink(ctx context.Context, target, p string) error {
	return c.sftpCall(ctx, func() error { return c.sftp.Symlink(target, p) })
}

// Readlink returns a symlink's target.
func (c *Client) Readlink(ctx context.Context, p string) (string, error) {
	return sftpGet(ctx, c, func() (string, error) { return c.sftp.ReadLink(p) })
}

// Rename replaces newpath by oldpath atomically (posix-rename@openssh.com).
func (c *Client) Rename(ctx context.Context, oldpath, newpath string) error {
	return c.sftpCall(ctx, func() error { return c.sftp.PosixRename(oldpath, newpath) })
}

// Remove removes a file, symlink or empty directory.
func (c *Client) Remove(ctx context.Context, p string) error {
	return c.sftpCall(ctx, func() error { return c.sftp.Remove(p) })
}

// MkdirAll creates a directory and its parents.
func (c *Client) MkdirAll(ctx context.Context, p string) error {
	return c.sftpCall(ctx, func() error { return c.sftp.MkdirAll(p) })
}

// Lstat describes path, not following a final symlink.
func (c *Client) Lstat(ctx context.Context, p string) (fs.FileInfo, error) {
	return sftpGet(ctx, c, func() (fs.FileInfo, error) { return c.sftp.Lstat(p) })
}

// ReadDir returns the names in a directory, sorted.
func (c *Client) ReadDir(ctx context.Context, p string) ([]string, error) {
	return sftpGet(ctx, c, func() ([]string, error) {
		list, err := c.sftp.ReadDir(p)
		names := make([]string, 0, len(list))
		for _, fi := range list {
			names = append(names, fi.Name())
		}
		slices.Sort(names)
		return names, err
	})
}
