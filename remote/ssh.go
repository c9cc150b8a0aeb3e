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
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
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
// same connection.
type Client struct {
	name      string
	link      *link
	sftp      *sftp.Client
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
// rather than being waited for (a host stuck on one, e.g. opening a FIFO,
// would otherwise hold Close forever). The jump hosts it went through stay
// up for the other hosts of the Dialer.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		err = c.link.close()
		c.sftp.Close() // returns at once: its transport is gone
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
	s, err := c.link.ssh.NewSession()
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

// ReadFile reads a remote file: a regular one only (a FIFO would hang
// OpenSSH's single-threaded sftp-server, and the whole session with it; a
// symlink is not followed), of at most max bytes (MaxReadFile when 0): a
// larger one is an error, never silently cut.
func (c *Client) ReadFile(ctx context.Context, p string, max int64) ([]byte, error) {
	if max <= 0 {
		max = MaxReadFile
	}
	return sftpGet(ctx, c, func() ([]byte, error) {
		f, size, err := c.openRegular(p)
		if err != nil {
			return nil, err
		}
		defer closeLater(f)
		if size > max {
			return nil, fmt.Errorf("%s is %d bytes, over the %s limit for this file", p, size, byteSize(max))
		}
		// The size from Lstat lets all of the file be asked for at once
		// (pkg/sftp sends the requests together); a file that grew since
		// reads as it was.
		buf := make([]byte, size)
		n, err := f.ReadAt(buf, 0)
		if errors.Is(err, io.EOF) {
			err = nil
		}
		return buf[:n], err
	})
}

// ReadTail reads the last max bytes of a remote file, a regular one only
// (see ReadFile).
func (c *Client) ReadTail(ctx context.Context, p string, max int64) ([]byte, error) {
	return sftpGet(ctx, c, func() ([]byte, error) {
		f, size, err := c.openRegular(p)
		if err != nil {
			return nil, err
		}
		defer closeLater(f)
		off := size - max
		if off < 0 {
			off = 0
		}
		buf := make([]byte, size-off)
		n, err := f.ReadAt(buf, off)
		if errors.Is(err, io.EOF) {
			err = nil
		}
		return buf[:n], err
	})
}

// errNotRegular is a path that should be a regular file and is something else.
var errNotRegular = errors.New("not a regular file")

// openRegular opens p for reading once Lstat says it is a regular file, and
// returns its size.
func (c *Client) openRegular(p string) (*sftp.File, int64, error) {
	fi, err := c.sftp.Lstat(p)
	if err != nil {
		return nil, 0, err
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("%s: %w (%s)", p, errNotRegular, fileKind(fi.Mode()))
	}
	f, err := c.sftp.Open(p)
	if err != nil {
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

// closeLater closes a file opened for reading without waiting for the
// host's answer, which tells nothing: one round trip less per read.
func closeLater(f *sftp.File) { go f.Close() }

func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "mode " + m.String()
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
// honours O_APPEND, other servers (pkg/sftp's) use the offset. A file that
// does not end with a newline (cut short, or written by hand) gets one
// first, so that the record appended stays a line of its own.
func (c *Client) AppendFile(ctx context.Context, p string, data []byte) error {
	return c.sftpCall(ctx, func() error {
		f, err := c.sftp.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_APPEND)
		if err != nil {
			return err
		}
		fi, err := f.Stat()
		if err == nil && !fi.Mode().IsRegular() {
			err = fmt.Errorf("%s is not a regular file", p)
		}
		if err == nil && fi.Size() > 0 {
			last := make([]byte, 1)
			if _, err = f.ReadAt(last, fi.Size()-1); err == nil && last[0] != '\n' {
				data = append([]byte("\n"), data...)
			}
		}
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

// Remove removes a file, symlink or empty directory, and reports what
// really happened. pkg/sftp's Remove, after both SSH_FXP_REMOVE and RMDIR
// fail, asks Stat which error to return; Stat follows a dangling symlink
// and says "not found", so a lock link that a read-only filesystem kept
// looked removed. Here a "not found" is checked with Lstat, and a failure
// the server does not explain (SSH_FX_FAILURE) is checked against the
// filesystem's read-only flag.
func (c *Client) Remove(ctx context.Context, p string) error {
	return c.sftpCall(ctx, func() error {
		err := c.sftp.Remove(p)
		if err == nil {
			return nil
		}
		var se *sftp.StatusError
		switch {
		case errors.Is(err, fs.ErrNotExist):
			_, lerr := c.sftp.Lstat(p)
			if errors.Is(lerr, fs.ErrNotExist) {
				return err
			}
			if lerr != nil {
				return fmt.Errorf("removing %s: %w", p, lerr)
			}
			err = fmt.Errorf("removing %s: the host refused, and it is still there", p)
		case !errors.As(err, &se) || se.FxCode() != sftp.ErrSSHFxFailure:
			return err
		}
		// SSH_FX_FAILURE tells nothing more: a read-only filesystem is the
		// usual cause, and the one to name.
		if vfs, verr := c.sftp.StatVFS(path.Dir(p)); verr == nil && vfs.Flag&stRdonly != 0 {
			return fmt.Errorf("removing %s: %w", p, syscall.EROFS)
		}
		return err
	})
}

// stRdonly is ST_RDONLY in statvfs@openssh.com's flags.
const stRdonly = 0x1

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
