package steps

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleetdeploy/remote"
)

// localHost runs a step's operations on this machine: the same rendered shell
// text a host gets, the same file operations. It tests what the scripts do.
type localHost struct {
	cmds     []string
	progress int // progress lines of paced commands (remote.Pace), left out of errors
}

func (l *localHost) Name() string { return "local" }
func (l *localHost) Run(ctx context.Context, c remote.Cmd) ([]byte, error) {
	l.cmds = append(l.cmds, c.String())
	cmd := exec.CommandContext(ctx, "sh", "-c", c.Render())
	cmd.Stdin = c.Stdin
	cmd.WaitDelay = time.Second
	var stderr strings.Builder
	cmd.Stderr = &stderr
	var out []byte
	var err error
	if c.Stdout != nil { // the caller takes the output (a health check)
		cmd.Stdout = c.Stdout
		if c.Stderr != nil {
			cmd.Stderr = io.MultiWriter(&stderr, c.Stderr)
		}
		err = cmd.Run()
	} else {
		out, err = cmd.Output()
	}
	msg := stderr.String()
	if c.Pace != nil {
		var kept []string
		for _, line := range strings.Split(msg, "\n") {
			if _, ok := c.Pace.Read([]byte(line)); ok {
				l.progress++
			} else {
				kept = append(kept, line)
			}
		}
		msg = strings.Join(kept, "\n")
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out, &remote.ExitError{Status: ee.ExitCode(), Stderr: strings.TrimSpace(msg)}
	}
	return out, err
}
func (l *localHost) ReadFile(_ context.Context, p string, _ int64) ([]byte, error) {
	return os.ReadFile(p)
}
func (l *localHost) ReadTail(_ context.Context, p string, max int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if off := fi.Size() - max; off > 0 {
		f.Seek(off, io.SeekStart)
	}
	return io.ReadAll(io.LimitReader(f, max))
}
func (l *localHost) WriteFile(_ context.Context, p string, d []byte, m fs.FileMode) error {
	return os.WriteFile(p, d, m)
}
func (l *localHost) AppendFile(_ context.Context, p string, d []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(d)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
func (l *localHost) Symlink(_ context.Context, target, p string) error      { return os.Symlink(target, p) }
func (l *localHost) Readlink(_ context.Context, p string) (string, error)   { return os.Readlink(p) }
func (l *localHost) Rename(_ context.Context, a, b string) error            { return os.Rename(a, b) }
func (l *localHost) Remove(_ context.Context, p string) error               { return os.Remove(p) }
func (l *localHost) MkdirAll(_ context.Context, p string) error             { return os.MkdirAll(p, 0o755) }
func (l *localHost) Lstat(_ context.Context, p string) (fs.FileInfo, error) { return os.Lstat(p) }
func (l *localHost) ReadDir(_ context.Context, p string) ([]string, error) {
	list, err := os.ReadDir(p)
	var names []string
	for _, e := range list {
		names = append(names, e.Name())
	}
	return names, err
}
func (l *localHost) Close() error { return nil }

func write(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, h *localHost, s Step) error {
	t.Helper()
	return RunOps(t.Context(), h, s.Ops, nil, nil)
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }
