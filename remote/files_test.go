package remote_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Reads take regular files only: a FIFO (which would hang OpenSSH's
// single-threaded sftp-server, and every request after it), a symlink or a
// directory is an error at once; a file over the limit is an error, never a
// silently cut read. The session stays usable after each.
func TestReadsRefuseWhatIsNotARegularFile(t *testing.T) {
	t.Parallel()
	c, h := dialOpenSSH(t)
	h.Exec(t, `cd "$ROOT" && mkfifo fifo && printf 'hello\n' > file && ln -s file link && mkdir dir && : > empty && truncate -s 17M big`)
	for _, tc := range []struct{ name, want string }{
		{"fifo", "a FIFO"},
		{"link", "a symlink"},
		{"dir", "a folder"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			p := filepath.Join(h.Root, tc.name)
			if _, err := c.ReadFile(ctx, p, 0); err == nil || !strings.Contains(err.Error(), "not a regular file ("+tc.want+")") {
				t.Errorf("ReadFile: got %v, want it refused as %s", err, tc.want)
			}
			if _, err := c.ReadTail(ctx, p, 10); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ReadTail: got %v, want it refused as %s", err, tc.want)
			}
			if b, err := c.ReadFile(ctx, filepath.Join(h.Root, "file"), 0); err != nil || string(b) != "hello\n" {
				t.Errorf("the next read got %q, %v: the session is stuck", b, err)
			}
		})
	}
	if _, err := c.ReadFile(t.Context(), filepath.Join(h.Root, "big"), 0); err == nil || !strings.Contains(err.Error(), "over the 16 MiB limit") {
		t.Errorf("ReadFile of 17 MiB: got %v, want an error about the limit", err)
	}
	// A caller that expects more (a manifest of 100,000 files) says so.
	if b, err := c.ReadFile(t.Context(), filepath.Join(h.Root, "big"), 32<<20); err != nil || len(b) != 17<<20 {
		t.Errorf("ReadFile of 17 MiB with a 32 MiB limit: %d bytes, %v", len(b), err)
	}
	if b, err := c.ReadTail(t.Context(), filepath.Join(h.Root, "big"), 10); err != nil || len(b) != 10 {
		t.Errorf("ReadTail of a big file: %d bytes, %v", len(b), err)
	}
	if b, err := c.ReadFile(t.Context(), filepath.Join(h.Root, "empty"), 0); err != nil || len(b) != 0 {
		t.Errorf("empty file: %q, %v", b, err)
	}
	if _, err := c.ReadFile(t.Context(), filepath.Join(h.Root, "none"), 0); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
}

// A record appended to a file that does not end with a newline (cut short,
// or edited by hand) still starts a line of its own.
func TestAppendKeepsLines(t *testing.T) {
	t.Parallel()
	c, h := dialOpenSSH(t)
	h.Exec(t, `printf 'first' > "$ROOT/history" && : > "$ROOT/empty"`)
	for name, want := range map[string]string{"history": "first\nsecond\n", "empty": "second\n", "new": "second\n"} {
		if err := c.AppendFile(t.Context(), filepath.Join(h.Root, name), []byte("second\n")); err != nil {
			t.Fatal(err)
		}
		if got := h.Exec(t, `cat "$ROOT/`+name+`"`); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
}

// Close returns at once even when the host no longer answers SFTP
// requests: pkg/sftp's Close alone waits for the server to close the
// channel, forever on a stuck server.
func TestCloseDoesNotWaitForTheHost(t *testing.T) {
	t.Parallel()
	c, h := dialOpenSSH(t)
	h.Freeze()
	t.Cleanup(h.Thaw)
	read := make(chan error, 1)
	go func() {
		_, err := c.ReadFile(context.Background(), filepath.Join(h.Root, "x"), 0)
		read <- err
	}()
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close still waits for a frozen host after 5s")
	}
	select {
	case err := <-read:
		if err == nil {
			t.Error("a read in flight on a closed connection succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a read in flight still waits after Close")
	}
}

// Remove, Symlink and Rename say what happened: on a read-only filesystem,
// a dangling symlink (a lock) or a file that could not be removed is an
// error naming the cause, never "not found" (pkg/sftp's Remove said so for
// the link), and a link that could not be made names it too.
func TestRemoveOnReadOnlyFilesystem(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("mounting a read-only filesystem needs root")
	}
	c, h := dialOpenSSH(t)
	ro := filepath.Join(h.Root, "ro")
	if err := os.Mkdir(ro, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "fdtest-ro", ro).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", ro).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", ro, err, out)
		}
	})
	if err := os.Symlink("../gone", filepath.Join(ro, "lock")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ro, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-o", "remount,ro", ro).CombinedOutput(); err != nil {
		t.Fatalf("remount ro: %v: %s", err, out)
	}
	for _, name := range []string{"lock", "file"} {
		err := c.Remove(t.Context(), filepath.Join(ro, name))
		if !errors.Is(err, syscall.EROFS) || errors.Is(err, fs.ErrNotExist) {
			t.Errorf("removing %s: got %v, want a read-only filesystem error", name, err)
		}
		if _, lerr := os.Lstat(filepath.Join(ro, name)); lerr != nil {
			t.Errorf("%s: %v", name, lerr)
		}
	}
	// A symlink or a rename there fails as OpenSSH says (SSH_FX_FAILURE),
	// and the filesystem's flag names the cause.
	if err := c.Symlink(t.Context(), "x", filepath.Join(ro, "new")); !errors.Is(err, syscall.EROFS) || !strings.Contains(err.Error(), "new") {
		t.Errorf("symlink: got %v, want a read-only filesystem error naming the path", err)
	}
	if err := c.Rename(t.Context(), filepath.Join(ro, "lock"), filepath.Join(ro, "moved")); !errors.Is(err, syscall.EROFS) {
		t.Errorf("rename: got %v, want a read-only filesystem error", err)
	}
	if err := c.Symlink(t.Context(), "x", filepath.Join(h.Root, "ro")); errors.Is(err, syscall.EROFS) || err == nil {
		t.Errorf("symlink over an existing folder elsewhere: got %v, want a failure that is not EROFS", err)
	}
	if err := c.Remove(t.Context(), filepath.Join(ro, "none")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("removing a missing file: %v, want fs.ErrNotExist", err)
	}
	if err := c.Remove(t.Context(), filepath.Join(h.Root, "none")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("removing a missing file: %v, want fs.ErrNotExist", err)
	}
}
