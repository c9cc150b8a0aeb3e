package remote

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proxyConn is a connection carried by a ProxyCommand: the command's
// standard input and output. Closing it ends the command.
type proxyConn struct {
	command string
	cmd     *exec.Cmd
	in      *os.File // the command's standard input
	out     *os.File // its standard output
	stderr  *lockedTail
	exited  chan struct{}
	waitErr error
	once    sync.Once
}

// A proxy command has proxyEndGrace to end by itself once its input is
// closed, then proxyKillGrace after SIGTERM.
const (
	proxyEndGrace  = 200 * time.Millisecond
	proxyKillGrace = 2 * time.Second
)

// startProxy runs command with sh, as ssh(1) does ("exec" first, so that the
// shell does not stay in between), in a process group of its own so that
// Close ends whatever it started.
func startProxy(command string) (*proxyConn, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	p := &proxyConn{command: command, in: inW, out: outR, stderr: &lockedTail{t: tail{max: 2048}}, exited: make(chan struct{})}
	p.cmd = exec.Command("/bin/sh", "-c", "exec "+command)
	p.cmd.Stdin, p.cmd.Stdout, p.cmd.Stderr = inR, outW, p.stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.cmd.WaitDelay = time.Second
	err = p.cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, fmt.Errorf("starting ProxyCommand %q: %w", command, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

func (p *proxyConn) Read(b []byte) (int, error)  { return p.out.Read(b) }
func (p *proxyConn) Write(b []byte) (int, error) { return p.in.Write(b) }

// Close ends the command: its input and output close (ssh -W and nc end
// by themselves then), then its process group gets SIGTERM, and SIGKILL if
// it lingers. It returns once the command is gone.
func (p *proxyConn) Close() error {
	p.once.Do(func() {
		p.in.Close()
		p.out.Close()
		pgid := p.cmd.Process.Pid
		for _, step := range []struct {
			wait time.Duration
			sig  syscall.Signal
		}{{proxyEndGrace, syscall.SIGTERM}, {proxyKillGrace, syscall.SIGKILL}} {
			t := time.NewTimer(step.wait)
			select {
			case <-p.exited:
				t.Stop()
				return
			case <-t.C:
			}
			syscall.Kill(-pgid, step.sig)
		}
		<-p.exited
	})
	return nil
}

// report describes how the command ended, with the end of what it said, for
// a connection that failed; "" while it runs.
func (p *proxyConn) report() string {
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-p.exited:
	case <-t.C:
		return ""
	}
	msg := fmt.Sprintf(" (ProxyCommand %q ended: %v", p.command, p.waitErr)
	if p.waitErr == nil {
		msg = fmt.Sprintf(" (ProxyCommand %q ended", p.command)
	}
	if s := p.stderr.String(); s != "" {
		msg += ": " + SanitizeLines(s)
	}
	return msg + ")"
}

func (p *proxyConn) LocalAddr() net.Addr  { return &net.TCPAddr{} }
func (p *proxyConn) RemoteAddr() net.Addr { return &net.TCPAddr{} }

func (p *proxyConn) SetDeadline(t time.Time) error {
	if err := p.in.SetWriteDeadline(t); err != nil {
		return err
	}
	return p.out.SetReadDeadline(t)
}
func (p *proxyConn) SetReadDeadline(t time.Time) error  { return p.out.SetReadDeadline(t) }
func (p *proxyConn) SetWriteDeadline(t time.Time) error { return p.in.SetWriteDeadline(t) }

// lockedTail is a tail written by one goroutine and read by another.
type lockedTail struct {
	mu sync.Mutex
	t  tail
}

func (l *lockedTail) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.t.Write(p)
}

func (l *lockedTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.TrimSpace(l.t.String())
}
