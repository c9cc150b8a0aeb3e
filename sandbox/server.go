// Package sandbox runs in-process SSH hosts that behave like OpenSSH's sshd
// for everything fleetdeploy uses (exec sessions with streamed stdin, the SFTP
// subsystem, keepalive requests), so deploys are tested end to end over real
// SSH on 127.0.0.1 without root, containers or a system sshd.
//
// A host runs commands as the user running the tests, with the host's Dir as
// working directory and $HOME. Differences from OpenSSH that a client can see
// are listed on Server.
package sandbox

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

const (
	// handshakeTimeout bounds key exchange and authentication, like sshd's LoginGraceTime.
	handshakeTimeout = 10 * time.Second
	// maxConns bounds concurrent connections so a runaway test cannot exhaust file descriptors.
	maxConns = 64
	// maxSessions is sshd's default MaxSessions: sessions open at once on one connection.
	maxSessions = 10
	// closeTimeout bounds how long Close waits for its goroutines after killing everything.
	closeTimeout = 5 * time.Second
	// acceptBackoff spaces out retries when Accept fails for a reason other than Close (e.g. EMFILE).
	acceptBackoff = 20 * time.Millisecond
)

// Config is what a host needs: its identity, who may log in, and where commands run.
type Config struct {
	HostKey        ssh.Signer
	AuthorizedKeys []ssh.PublicKey // key-only auth; nothing else accepted (no password, no keyboard-interactive, no "none")
	Dir            string          // working dir of exec sessions, and $HOME for them
}

// Server is one in-process SSH host listening on 127.0.0.1.
//
// Like sshd it answers "exec" and "subsystem sftp" session requests, delivers
// "signal" requests to the command's process group, rejects "env", "pty-req"
// and "shell", and answers every global request that wants a reply with a
// failure (which is all a keepalive needs). Any user name is accepted: the key
// decides, and commands run as the current user whatever name the client gave.
//
// Visible differences from OpenSSH: the SFTP server is pkg/sftp's, which does
// not offer fsync@openssh.com, limits@openssh.com or the other OpenSSH
// extensions beyond posix-rename, hardlink and statvfs, and whose realpath
// does not resolve symlinks.
type Server struct {
	cfg     Config
	sshCfg  *ssh.ServerConfig
	ln      net.Listener
	baseEnv []string
	done    chan struct{} // closed by Close

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	groups map[int]struct{} // process groups of running commands, killed by Close

	wg        sync.WaitGroup // every goroutine the server started
	closeOnce sync.Once
	closeErr  error
}

// Listen starts a host on a random port of 127.0.0.1 and serves it until Close.
func Listen(cfg Config) (*Server, error) {
	if cfg.HostKey == nil {
		return nil, errors.New("sandbox: no host key")
	}
	if len(cfg.AuthorizedKeys) == 0 {
		return nil, errors.New("sandbox: no authorized keys")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("sandbox: host dir: %w", err)
	}
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("sandbox: host dir: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("sandbox: host dir %s is not a directory", dir)
	}
	cfg.Dir = dir

	authorized := make([][]byte, len(cfg.AuthorizedKeys))
	for i, k := range cfg.AuthorizedKeys {
		authorized[i] = k.Marshal()
	}
	sshCfg := &ssh.ServerConfig{
		// Only PublicKeyCallback is set, so x/crypto offers publickey alone and
		// refuses "none", password and keyboard-interactive.
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			wire := key.Marshal()
			for _, k := range authorized {
				if subtle.ConstantTimeCompare(k, wire) == 1 {
					return &ssh.Permissions{}, nil
				}
			}
			return nil, fmt.Errorf("sandbox: key %s not authorized for %q", ssh.FingerprintSHA256(key), meta.User())
		},
		ServerVersion: "SSH-2.0-fleetdeploy_sandbox",
	}
	sshCfg.AddHostKey(cfg.HostKey)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	s := &Server{
		cfg:     cfg,
		sshCfg:  sshCfg,
		ln:      ln,
		baseEnv: baseEnv(dir),
		done:    make(chan struct{}),
		conns:   make(map[net.Conn]struct{}),
		groups:  make(map[int]struct{}),
	}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// Addr is where clients connect.
func (s *Server) Addr() *net.TCPAddr { return s.ln.Addr().(*net.TCPAddr) }

// Close stops listening, drops every connection, kills the process group of
// every running command and waits for the server's goroutines.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *Server) close() error {
	s.mu.Lock()
	s.closed = true
	close(s.done)
	for pgid := range s.groups {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()

	err := s.ln.Close()
	for _, c := range conns {
		_ = c.Close()
	}

	finished := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(finished)
	}()
	timer := time.NewTimer(closeTimeout)
	defer timer.Stop()
	select {
	case <-finished:
	case <-timer.C:
		err = errors.Join(err, fmt.Errorf("sandbox: goroutines still running %s after close", closeTimeout))
	}
	if err != nil {
		return fmt.Errorf("sandbox: closing %s: %w", s.ln.Addr(), err)
	}
	return nil
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			timer := time.NewTimer(acceptBackoff)
			select {
			case <-s.done:
				timer.Stop()
				return
			case <-timer.C:
			}
			continue
		}
		if !s.track(c) {
			_ = c.Close()
			continue
		}
		s.wg.Add(1)
		go s.serveConn(c)
	}
}

// track registers a connection so Close can drop it; false means refuse it.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || len(s.conns) >= maxConns {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	_ = c.Close()
}

func (s *Server) serveConn(c net.Conn) {
	defer s.wg.Done()
	defer s.untrack(c)

	if err := c.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
		return
	}
	sc, chans, reqs, err := ssh.NewServerConn(c, s.sshCfg)
	if err != nil {
		return
	}
	defer sc.Close()
	if err := c.SetDeadline(time.Time{}); err != nil {
		return
	}

	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for req := range reqs {
			// sshd answers unknown global requests (keepalive@openssh.com
			// included) with a failure; a keepalive only needs an answer.
			if req.WantReply {
				_ = req.Reply(false, nil)
			}
		}
	}()

	slots := make(chan struct{}, maxSessions)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "only session channels are supported")
			continue
		}
		select {
		case slots <- struct{}{}:
		default:
			_ = nc.Reject(ssh.ResourceShortage, "too many sessions")
			continue
		}
		ch, chReqs, err := nc.Accept()
		if err != nil {
			<-slots
			continue
		}
		sess := &session{srv: s, ch: ch, env: s.sessionEnv(sc)}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-slots }()
			sess.serve(chReqs)
		}()
	}
}

// startCommand starts cmd in its own process group and records the group so
// Close can kill it; it refuses once Close has begun, so nothing escapes it.
func (s *Server) startCommand(cmd *exec.Cmd) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("sandbox: server closed")
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	s.groups[cmd.Process.Pid] = struct{}{}
	return nil
}

// forgetGroup stops tracking a process group once its command is over.
func (s *Server) forgetGroup(pgid int) {
	s.mu.Lock()
	delete(s.groups, pgid)
	s.mu.Unlock()
}

// signalGroup delivers sig to a command's process group if it is still tracked.
func (s *Server) signalGroup(pgid int, sig syscall.Signal) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.groups[pgid]; !ok {
		return false
	}
	return syscall.Kill(-pgid, sig) == nil
}

// baseEnv is the environment sshd gives a non-interactive session, less the
// per-connection variables.
func baseEnv(dir string) []string {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	if name == "" {
		name = strconv.Itoa(os.Getuid())
	}
	return []string{
		"HOME=" + dir,
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"USER=" + name,
		"LOGNAME=" + name,
		"SHELL=/bin/sh",
	}
}

// sessionEnv adds SSH_CONNECTION and SSH_CLIENT, which scripts use to tell
// they run over SSH.
func (s *Server) sessionEnv(meta ssh.ConnMetadata) []string {
	env := append([]string(nil), s.baseEnv...)
	rh, rp, err1 := net.SplitHostPort(meta.RemoteAddr().String())
	lh, lp, err2 := net.SplitHostPort(meta.LocalAddr().String())
	if err1 == nil && err2 == nil {
		env = append(env,
			"SSH_CONNECTION="+rh+" "+rp+" "+lh+" "+lp,
			"SSH_CLIENT="+rh+" "+rp+" "+lp,
		)
	}
	return env
}
