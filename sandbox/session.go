package sandbox

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// session is one SSH session channel. Like sshd's, it runs at most one
// command or subsystem.
type session struct {
	srv *Server
	ch  ssh.Channel
	env []string

	// Owned by the goroutine running serve.
	started bool
	pgid    int    // process group of the exec'd command; 0 when none
	closeIO func() // closes the server's ends of the command's pipes; nil when no command
}

// serve answers the session's requests until the channel closes.
func (sess *session) serve(reqs <-chan *ssh.Request) {
	for req := range reqs {
		switch req.Type {
		case "exec":
			sess.exec(req)
		case "subsystem":
			sess.subsystem(req)
		case "signal":
			_ = req.Reply(sess.signal(req.Payload), nil)
		default:
			// env (sshd's default AcceptEnv accepts nothing useful here),
			// pty-req, shell, x11-req, agent forwarding, window-change, ...
			_ = req.Reply(false, nil)
		}
	}
	// The channel is gone: closed by either side, or the connection dropped.
	// Like sshd, close the server's ends of the command's pipes, so it reads
	// EOF on stdin and gets SIGPIPE on its next write, but do not kill it.
	if sess.closeIO != nil {
		sess.closeIO()
	}
	_ = sess.ch.Close()
}

func (sess *session) exec(req *ssh.Request) {
	var p struct{ Command string }
	if sess.started || ssh.Unmarshal(req.Payload, &p) != nil {
		_ = req.Reply(false, nil)
		return
	}
	run, err := sess.start(p.Command)
	if err != nil {
		_ = req.Reply(false, nil)
		return
	}
	sess.started = true
	// Reply before any output goes out, as sshd does.
	_ = req.Reply(true, nil)
	run()
}

// start runs `/bin/sh -c command` in its own process group with pipes for
// stdin, stdout and stderr, and returns the function that wires them to the
// channel.
func (sess *session) start(command string) (run func(), err error) {
	var files []*os.File // every pipe end, closed on failure
	defer func() {
		if err != nil {
			for _, f := range files {
				_ = f.Close()
			}
		}
	}()
	pipe := func() (r, w *os.File, err error) {
		r, w, err = os.Pipe()
		if err == nil {
			files = append(files, r, w)
		}
		return r, w, err
	}
	stdinR, stdinW, err := pipe()
	if err != nil {
		return nil, err
	}
	stdoutR, stdoutW, err := pipe()
	if err != nil {
		return nil, err
	}
	stderrR, stderrW, err := pipe()
	if err != nil {
		return nil, err
	}

	cmd := exec.Command("/bin/sh", "-c", command)
	cmd.Dir = sess.srv.cfg.Dir
	cmd.Env = sess.env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdinR, stdoutW, stderrW
	if err := sess.srv.startCommand(cmd); err != nil {
		return nil, err
	}
	// The child holds its own copies; keeping ours would hide its EOF.
	_ = stdinR.Close()
	_ = stdoutW.Close()
	_ = stderrW.Close()

	pgid := cmd.Process.Pid
	sess.pgid = pgid
	var once sync.Once
	sess.closeIO = func() {
		once.Do(func() {
			_ = stdinW.Close()
			_ = stdoutR.Close()
			_ = stderrR.Close()
		})
	}

	srv, ch := sess.srv, sess.ch
	run = func() {
		var output sync.WaitGroup
		output.Add(2)
		srv.wg.Add(4)
		go func() {
			defer srv.wg.Done()
			// Client EOF (or the channel closing) becomes EOF on the
			// command's stdin, which is how a command notices its client left.
			_, _ = io.Copy(stdinW, ch)
			_ = stdinW.Close()
		}()
		go func() {
			defer srv.wg.Done()
			defer output.Done()
			pump(ch, stdoutR)
		}()
		go func() {
			defer srv.wg.Done()
			defer output.Done()
			pump(ch.Stderr(), stderrR)
		}()
		go func() {
			defer srv.wg.Done()
			_ = cmd.Wait()
			// Like sshd: the exit is reported at once; the channel closes
			// once the output has drained (or the channel is gone), which
			// a process left running in the background may put off.
			name, payload := exitRequest(cmd.ProcessState)
			_, _ = ch.SendRequest(name, false, payload)
			output.Wait()
			srv.forgetGroup(pgid)
			_ = ch.CloseWrite()
			_ = ch.Close()
		}()
	}
	return run, nil
}

// pump copies a command's output to the channel. When the channel can no
// longer take it, closing the pipe gives the command SIGPIPE, as under sshd.
func pump(dst io.Writer, src *os.File) {
	_, _ = io.Copy(dst, src)
	_ = src.Close()
}

func (sess *session) subsystem(req *ssh.Request) {
	var p struct{ Name string }
	if sess.started || ssh.Unmarshal(req.Payload, &p) != nil || p.Name != "sftp" {
		_ = req.Reply(false, nil)
		return
	}
	conn := &sftpConn{
		Reader: &sftpPaths{r: sess.ch, dir: sess.srv.cfg.Dir},
		ch:     sess.ch,
	}
	server, err := sftp.NewServer(conn)
	if err != nil {
		_ = req.Reply(false, nil)
		return
	}
	sess.started = true
	_ = req.Reply(true, nil)

	srv, ch := sess.srv, sess.ch
	srv.wg.Add(1)
	go func() {
		defer srv.wg.Done()
		status := uint32(0)
		if err := server.Serve(); err != nil && !errors.Is(err, io.EOF) {
			status = 1
		}
		// sshd reports the exit of sftp-server like any command's. (pkg/sftp's
		// writer may still be sending a response: not at the same time.)
		conn.mu.Lock()
		_ = ch.CloseWrite()
		conn.mu.Unlock()
		_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
		_ = ch.Close()
	}()
}

// sftpConn is the stream pkg/sftp's server reads requests from and writes
// responses to.
type sftpConn struct {
	io.Reader
	ch ssh.Channel
	mu sync.Mutex // a write and the end of the stream (CloseWrite) never at once
}

func (c *sftpConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ch.Write(p)
}

func (c *sftpConn) Close() error { return c.ch.Close() }

// signal delivers a "signal" request to the running command's process group.
func (sess *session) signal(payload []byte) bool {
	var p struct{ Signal string }
	if sess.pgid == 0 || ssh.Unmarshal(payload, &p) != nil {
		return false
	}
	sig, ok := signalByName(p.Signal)
	if !ok {
		return false
	}
	return sess.srv.signalGroup(sess.pgid, sig)
}

// exitRequest is the "exit-status" or "exit-signal" request reporting how a
// command ended.
func exitRequest(state *os.ProcessState) (string, []byte) {
	if state == nil {
		// Waiting failed; sshd reports 255 when it cannot tell.
		return "exit-status", ssh.Marshal(struct{ Status uint32 }{255})
	}
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "exit-signal", ssh.Marshal(struct {
			Signal     string
			CoreDumped bool
			Error      string
			Lang       string
		}{signalName(ws.Signal()), ws.CoreDump(), "", ""})
	}
	return "exit-status", ssh.Marshal(struct{ Status uint32 }{uint32(state.ExitCode())})
}

// signalByName maps an RFC 4254 signal name ("TERM") to a signal.
func signalByName(name string) (syscall.Signal, bool) {
	switch ssh.Signal(name) {
	case ssh.SIGABRT:
		return syscall.SIGABRT, true
	case ssh.SIGALRM:
		return syscall.SIGALRM, true
	case ssh.SIGFPE:
		return syscall.SIGFPE, true
	case ssh.SIGHUP:
		return syscall.SIGHUP, true
	case ssh.SIGILL:
		return syscall.SIGILL, true
	case ssh.SIGINT:
		return syscall.SIGINT, true
	case ssh.SIGKILL:
		return syscall.SIGKILL, true
	case ssh.SIGPIPE:
		return syscall.SIGPIPE, true
	case ssh.SIGQUIT:
		return syscall.SIGQUIT, true
	case ssh.SIGSEGV:
		return syscall.SIGSEGV, true
	case ssh.SIGTERM:
		return syscall.SIGTERM, true
	case ssh.SIGUSR1:
		return syscall.SIGUSR1, true
	case ssh.SIGUSR2:
		return syscall.SIGUSR2, true
	}
	return 0, false
}

// signalName is the RFC 4254 name of sig, or OpenSSH's catch-all name for
// signals the RFC does not list.
func signalName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGABRT:
		return string(ssh.SIGABRT)
	case syscall.SIGALRM:
		return string(ssh.SIGALRM)
	case syscall.SIGFPE:
		return string(ssh.SIGFPE)
	case syscall.SIGHUP:
		return string(ssh.SIGHUP)
	case syscall.SIGILL:
		return string(ssh.SIGILL)
	case syscall.SIGINT:
		return string(ssh.SIGINT)
	case syscall.SIGKILL:
		return string(ssh.SIGKILL)
	case syscall.SIGPIPE:
		return string(ssh.SIGPIPE)
	case syscall.SIGQUIT:
		return string(ssh.SIGQUIT)
	case syscall.SIGSEGV:
		return string(ssh.SIGSEGV)
	case syscall.SIGTERM:
		return string(ssh.SIGTERM)
	case syscall.SIGUSR1:
		return string(ssh.SIGUSR1)
	case syscall.SIGUSR2:
		return string(ssh.SIGUSR2)
	}
	return "SIG@openssh.com"
}
