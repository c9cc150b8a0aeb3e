package remote

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
)

// Host is one connected server. Implementations are safe for concurrent use
// and honour ctx in every call.
type Host interface {
	// Name is the host as the inventory writes it.
	Name() string
	// Run runs cmd and returns its standard output (when cmd.Stdout is nil).
	// A non-zero exit is an *ExitError carrying the tail of standard error.
	Run(ctx context.Context, cmd Cmd) ([]byte, error)
	// ReadFile returns a regular file's contents, at most max bytes (a
	// larger file is an error; 0 means MaxReadFile); fs.ErrNotExist when absent.
	ReadFile(ctx context.Context, path string, max int64) ([]byte, error)
	// ReadTail returns the last max bytes of a file (all of it when shorter);
	// fs.ErrNotExist when absent.
	ReadTail(ctx context.Context, path string, max int64) ([]byte, error)
	// WriteFile replaces path atomically: a fresh temporary file, then a rename.
	WriteFile(ctx context.Context, path string, data []byte, perm fs.FileMode) error
	// AppendFile appends data to path, creating it when absent. Concurrent
	// appenders are not expected (callers hold the host's deploy lock).
	AppendFile(ctx context.Context, path string, data []byte) error
	// Symlink creates path pointing to target; it fails if path exists.
	Symlink(ctx context.Context, target, path string) error
	// Readlink returns a symlink's target.
	Readlink(ctx context.Context, path string) (string, error)
	// Rename replaces newpath with oldpath in one rename(2).
	Rename(ctx context.Context, oldpath, newpath string) error
	// Remove removes a file, symlink or empty directory.
	Remove(ctx context.Context, path string) error
	// MkdirAll creates a directory and its parents.
	MkdirAll(ctx context.Context, path string) error
	// Lstat describes path, not following a final symlink; fs.ErrNotExist when absent.
	Lstat(ctx context.Context, path string) (fs.FileInfo, error)
	// ReadDir returns the names in a directory, sorted; fs.ErrNotExist when absent.
	ReadDir(ctx context.Context, path string) ([]string, error)
	// Close ends the connection.
	Close() error
}

// ExitError is a remote command that ran and failed.
type ExitError struct {
	Status int    // exit status; -1 when killed by a signal
	Signal string // signal name when killed by one
	Stderr string // last part of standard error, trimmed
}

func (e *ExitError) Error() string {
	var what string
	if e.Signal != "" {
		what = "killed by SIG" + e.Signal
	} else {
		what = fmt.Sprintf("exit %d", e.Status)
	}
	if e.Stderr == "" {
		return what
	}
	return what + ": " + e.Stderr
}

// ErrConnLost reports that the connection went away while an operation was in
// flight: whether the host carried it out is unknown.
var ErrConnLost = errors.New("connection lost")

// tail keeps the last max bytes written to it.
type tail struct {
	max int
	buf []byte
	cut bool
}

func (t *tail) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
		t.cut = true
	}
	return len(p), nil
}

func (t *tail) String() string {
	s := strings.TrimSpace(strings.ToValidUTF8(string(t.buf), "?"))
	if t.cut {
		s = "..." + s
	}
	return s
}
