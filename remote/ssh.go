package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// maxReadFile bounds ReadFile: fleetdeploy's own files are small, and a
// huge one is a broken or hostile host, never a reason to fill memory.
const MaxReadFile = 16 << 20

// byteSize says n bytes in the largest unit that divides it.
func byteSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// Client is a Host reached over SSH, with one SFTP session multiplexed on the
// same connection, and the session channel of its next command opened ahead.
type Client struct {
	name      string
	link      *link
	sftp      *sftpSession
	cmds      *sessions
	info      ConnInfo
	stopGrace time.Duration // see Config.StopGrace
	onClose   func()        // a one-off Dial's own Dialer
	closeOnce sync.Once
}

// ConnectRTT is the network round trip to the host: the smallest the kernel
// measured during the handshake where it says (Linux), else how long the TCP
// connect took (which a busy client can stretch); through a jump host, how
// long opening the channel took (both legs); 0 through a ProxyCommand.
func (c *Client) ConnectRTT() time.Duration { return c.info.RTT }

// ServerVersion is the identification the host's SSH server sent, such as
// "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3".
func (c *Client) ServerVersion() string { return c.info.ServerVersion }

// Info says how the host was reached: user, host key, key accepted, time taken.
func (c *Client) Info() ConnInfo { return c.info }

var _ Host = (*Client)(nil)

// Name is the host as the inventory writes it.
func (c *Client) Name() string { return c.name }

// Close ends the connection at once: SFTP requests still in flight fail
// rather than being waited for (a host stuck on one would otherwise hold
// Close forever). The jump hosts it went through stay up for the other
// hosts of the Dialer.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.cmds.close()
		err = c.link.close()
		c.sftp.close() // returns at once: its transport is gone
		if c.onClose != nil {
			c.onClose()
		}
	})
	return err
}

// connErr turns a transport failure into ErrConnLost with the reason we
// know, naming the jump host when it is the one that failed.
func (c *Client) connErr(err error) error {
	if err == nil {
		return nil
	}
	if why := c.link.why(); why != nil {
		return fmt.Errorf("%w: %v", ErrConnLost, why)
	}
	if errors.Is(err, ErrConnLost) {
		return err
	}
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "use of closed network connection") {
		return fmt.Errorf("%w: %v", ErrConnLost, err)
	}
	return err
}

// Run runs cmd on a session channel of its own: the one opened ahead of it
// (at Dial, or while the command before it started), so that a command
// waits for one round trip, its exec's answer, which comes with its output
// when the command is brief. Run does not wait for that answer before
// going on (reading output, watching ctx); a refused exec is still an
// error.
//
// A command given Stdin waits one round trip more: its input goes out once
// the exec is answered, as OpenSSH requires anyway (sshd grants a session
// channel no window until its command runs).
func (c *Client) Run(ctx context.Context, cmd Cmd) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cmd, err := cmd.fitted()
	if err != nil {
		return nil, err
	}
	s, err := c.cmds.take(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, c.connErr(fmt.Errorf("opening session: %w", err))
	}
	defer s.ch.Close()
	var stdout limitedBuffer
	stdout.max = 16 << 20
	errTail := &tail{max: 4096}
	var outW, errW io.Writer = &stdout, errTail
	if cmd.Stdout != nil {
		outW = cmd.Stdout
	}
	if cmd.Stderr != nil {
		errW = io.MultiWriter(cmd.Stderr, errTail)
	}
	var paced *pacedReader
	var progress *lineFilter
	if cmd.Pace != nil && cmd.Stdin != nil {
		paced = newPacedReader(cmd.Stdin, cmd.Pace.Window, cmd.Pace.Stall)
		progress = &lineFilter{w: errW, drop: func(line []byte) bool {
			n, ok := cmd.Pace.Read(line)
			if ok {
				paced.ack(n)
			}
			return ok
		}}
		errW = progress
		cmd.Stdin = paced
		// Whatever way the command ends, a read still waiting for room must
		// not outlive Run.
		defer paced.close()
	}

	exec := s.exec(cmd.wire())

	// stop makes the command end early: for a command fed by cmd.Stdin, the
	// input ends (what it does with a cut stream is its own affair: a tar
	// fails); for any other, the kill-on-hangup wrapper sees its stdin close
	// and kills the command's process group (a brief script has no wrapper
	// and is left to end by itself).
	var stop func()
	inputDone := make(chan struct{})
	if cmd.Stdin != nil {
		in := &stoppableReader{r: cmd.Stdin, stopped: make(chan struct{})}
		stop = in.stop
		if paced != nil {
			stop = func() { in.stop(); paced.close() }
		}
		go func() {
			defer close(inputDone)
			// The input goes out once the exec has been answered. With
			// OpenSSH that costs nothing: sshd grants a session channel
			// no window before its command runs, and the window comes
			// with the answer. It keeps the input behind the exec on
			// the wire, which x/crypto cannot promise across goroutines:
			// OpenSSH drops an EOF that comes before its command runs
			// (the command then waits for input forever: seen, a test
			// hung), and a server that opens its channels with a window
			// may drop data that does.
			<-exec.done
			if exec.err == nil {
				io.Copy(s.ch, in)
			}
			s.ch.CloseWrite()
		}()
	} else {
		// Held open for the command's life: closing it tells the host to kill
		// it. Not before the exec has been answered: OpenSSH drops an EOF
		// that comes before its command runs, and the command would then
		// never hear of the hangup (seen: a Ctrl-C right after a check
		// started left it running its 30 s).
		close(inputDone)
		stop = func() {
			go func() {
				<-exec.done
				s.ch.CloseWrite()
			}()
		}
	}
	stop = sync.OnceFunc(stop)

	done := make(chan error, 1)
	go func() {
		var outErr, errErr error
		var copies sync.WaitGroup
		var heard atomic.Int64 // when output last came, for waitOutput
		copies.Go(func() { outErr = copyOut(outW, heardReader{s.ch, &heard}) })
		copies.Go(func() { errErr = copyOut(errW, heardReader{s.ch.Stderr(), &heard}) })
		<-exec.done
		if exec.err != nil {
			s.ch.Close() // nothing runs: the host keeps the channel open until told
		}
		if c.waitOutput(s, &copies, &heard, errW) {
			outErr, errErr = nil, nil // the channel closed under them, on purpose
		}
		e := <-s.exit
		if progress != nil {
			progress.Flush() // the copy into it has ended
		}
		stop() // the input of a command that ended without reading all of it
		<-inputDone
		done <- c.runOutcome(exec.err, e, errTail, errors.Join(outErr, errErr))
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
				s.ch.Close()
				<-done
			}
			t.Stop()
			return nil, ctx.Err()
		}
	}
	return stdout.Bytes(), err
}

// leftOpenGrace is how long Run waits, once the host said a command ended,
// for output that does not come: output still on its way keeps coming
// (every round trip at the least, however slow the link), so only a quiet
// channel counts.
const leftOpenGrace = 5 * time.Second

// waitOutput waits for the command's output to be copied to its end. A
// command that ended while a process it started in the background (`cmd &`
// in a hook) still holds its output open is not waited for once nothing
// has come for leftOpenGrace: the channel is closed (that process's next
// write fails) and a line on its stderr says why, where a plain ssh would
// hang until that process exits. It reports whether it cut the output
// short so.
func (c *Client) waitOutput(s *session, copies *sync.WaitGroup, heard *atomic.Int64, errW io.Writer) bool {
	copied := make(chan struct{})
	go func() {
		copies.Wait()
		close(copied)
	}()
	select {
	case <-copied:
		return false
	case <-s.ended:
	}
	// Quiet since the end, or since the last output after it: output may
	// come after the host's word that the command ended (sshd says so on
	// the exit, then sends what it still holds).
	ended := time.Now().UnixNano()
	for {
		quiet := time.Since(time.Unix(0, max(heard.Load(), ended)))
		if quiet >= leftOpenGrace {
			break
		}
		t := time.NewTimer(leftOpenGrace - quiet)
		select {
		case <-copied:
			t.Stop()
			return false
		case <-t.C:
		}
	}
	s.ch.Close()
	<-copied
	fmt.Fprintln(errW, "fleetdeploy: the command ended, but a process it started still holds its output open: not waited for (start background processes with nohup CMD >/dev/null 2>&1 &)")
	return true
}

// heardReader notes when data last came.
type heardReader struct {
	r     io.Reader
	heard *atomic.Int64
}

func (h heardReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	if n > 0 {
		h.heard.Store(time.Now().UnixNano())
	}
	return n, err
}

// runOutcome is how a command ended, as Run reports it.
func (c *Client) runOutcome(execErr error, e exitInfo, errTail *tail, copyErr error) error {
	switch {
	case errors.Is(execErr, errExecRefused):
		return fmt.Errorf("starting command: %w", execErr)
	case execErr != nil:
		return c.connErr(fmt.Errorf("starting command: %w", execErr))
	case !e.got:
		return c.connErr(fmt.Errorf("%w: command ended without an exit status", ErrConnLost))
	case e.status != 0 || e.signal != "":
		return &ExitError{Status: e.status, Signal: e.signal, Stderr: errTail.String()}
	}
	return copyErr
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

// one runs a pipeline of one operation. A request in flight when ctx ends
// is waited for (up to the stop grace), and its own outcome returned: an
// undo sent next must find its effect, not race with it.
func one[T any](ctx context.Context, c *Client, add func(p *Pipeline) *Result[T]) (T, error) {
	p := NewPipeline(c)
	r := add(p)
	p.Wait(ctx)
	return r.Get()
}

// ReadFile reads a remote file: a regular one only, of at most max bytes
// (MaxReadFile when 0): a larger one is an error, never silently cut.
//
// LSTAT and OPEN go out together, and only LSTAT's answer decides: a
// symlink, a FIFO, a folder or a device is refused, and never read. The
// OPEN asks for reading and writing, which on Linux never blocks on a
// FIFO: opened for reading alone, a FIFO would hang OpenSSH's
// single-threaded sftp-server, and every request after it. What this costs:
// the OPEN follows a final symlink and opens what it points to (without
// reading it); a file the login user cannot write (or a read-only
// filesystem) is opened again, for reading, once LSTAT has said it is a
// regular file: one round trip more; and a file opened for writing cannot
// be executed meanwhile (ETXTBSY), so this is for data files, not
// programs.
func (c *Client) ReadFile(ctx context.Context, p string, max int64) ([]byte, error) {
	return one(ctx, c, func(pl *Pipeline) *Result[[]byte] { return pl.ReadFile(p, max) })
}

// ReadTail reads the last max bytes of a remote file, a regular one only
// (see ReadFile).
func (c *Client) ReadTail(ctx context.Context, p string, max int64) ([]byte, error) {
	return one(ctx, c, func(pl *Pipeline) *Result[[]byte] { return pl.ReadTail(p, max) })
}

// errNotRegular is a path that should be a regular file and is something else.
var errNotRegular = errors.New("not a regular file")

// FileKind names a file's type for messages: "a symlink", "a folder", "a
// FIFO"...
func FileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	case m.IsDir():
		return "a folder"
	case m.IsRegular():
		return "a regular file"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "a special file (mode " + m.String() + ")"
}

// WriteFile writes data to a temporary name beside path (created with
// O_EXCL, mode perm), then renames it over path: three round trips (the
// OPEN; the WRITEs, FSETSTAT and CLOSE; the rename). On failure the
// temporary file is removed.
func (c *Client) WriteFile(ctx context.Context, p string, data []byte, perm fs.FileMode) error {
	_, err := one(ctx, c, func(pl *Pipeline) *Result[struct{}] { return pl.WriteFile(p, data, perm) })
	return err
}

// AppendFile appends data to path, creating it (0644) when absent, a
// regular file only: two round trips. The first sends LSTAT, an OPEN of the
// file as it is and an OPEN that creates it with O_EXCL (so never through a
// symlink), together; the second writes the record at the size LSTAT gave
// and reads the byte before it. A file that does not end with a newline
// (cut short, or written by hand) then has the record written again one
// byte further, after a newline, so that it stays a line of its own: one
// round trip more, and a moment when the record is glued to the cut line.
// No O_APPEND (OpenSSH honours it, pkg/sftp's server does not, and that
// rewrite needs the offset): concurrent appenders are not expected (callers
// hold the host's deploy lock).
func (c *Client) AppendFile(ctx context.Context, p string, data []byte) error {
	_, err := one(ctx, c, func(pl *Pipeline) *Result[struct{}] { return pl.Append(p, data) })
	return err
}

// Symlink creates path -> target, as os.Symlink does (OpenSSH's
// SSH_FXP_SYMLINK takes the two the other way round).
func (c *Client) Symlink(ctx context.Context, target, p string) error {
	_, err := one(ctx, c, func(pl *Pipeline) *Result[struct{}] { return pl.Symlink(target, p) })
	return err
}

// Readlink returns a symlink's target.
func (c *Client) Readlink(ctx context.Context, p string) (string, error) {
	return one(ctx, c, func(pl *Pipeline) *Result[string] { return pl.Readlink(p) })
}

// Rename replaces newpath by oldpath atomically (posix-rename@openssh.com).
func (c *Client) Rename(ctx context.Context, oldpath, newpath string) error {
	_, err := one(ctx, c, func(pl *Pipeline) *Result[struct{}] { return pl.Rename(oldpath, newpath) })
	return err
}

// Remove removes a file, symlink or empty directory, and reports what
// really happened, in one round trip: REMOVE, RMDIR, then LSTAT and
// statvfs@openssh.com go out together. A "not found" is believed only when
// LSTAT agrees (a dangling symlink, a lock, that a read-only filesystem kept
// is there), and a failure the server does not explain (SSH_FX_FAILURE) is
// checked against the filesystem's read-only flag.
func (c *Client) Remove(ctx context.Context, p string) error {
	_, err := one(ctx, c, func(pl *Pipeline) *Result[struct{}] { return pl.Remove(p) })
	return err
}

// MkdirAll creates a directory and its parents, in one round trip (a MKDIR
// and a STAT of each).
func (c *Client) MkdirAll(ctx context.Context, p string) error {
	_, err := one(ctx, c, func(pl *Pipeline) *Result[struct{}] { return pl.MkdirAll(p) })
	return err
}

// Lstat describes path, not following a final symlink.
func (c *Client) Lstat(ctx context.Context, p string) (fs.FileInfo, error) {
	return one(ctx, c, func(pl *Pipeline) *Result[fs.FileInfo] { return pl.Lstat(p) })
}

// ReadDir returns the names in a directory, sorted.
func (c *Client) ReadDir(ctx context.Context, p string) ([]string, error) {
	return one(ctx, c, func(pl *Pipeline) *Result[[]string] { return pl.ReadDir(p) })
}
