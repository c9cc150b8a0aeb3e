package remote_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleetdeploy/internal/sshtest"
	"github.com/fleetdeploy/fleetdeploy/remote"
	"github.com/fleetdeploy/fleetdeploy/sandbox"
)

// host is one server to run commands on, and a folder (made on first use)
// its commands can write and this test can read.
type host struct {
	cfg remote.Config
	dir string
}

func hosts(t *testing.T) map[string]func(t *testing.T) host {
	return map[string]func(t *testing.T) host{
		"openssh": func(t *testing.T) host {
			f := sshtest.Start(t, 1)
			h := f.Hosts[0]
			return host{remote.Config{Name: h.Name, Addr: h.Name, User: f.User, Identity: f.Identity, KnownHosts: f.KnownHosts}, h.Root}
		},
		"sandbox": func(t *testing.T) host {
			f, err := sandbox.StartFleet(t.TempDir(), 1)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			u, err := user.Current()
			if err != nil {
				t.Fatal(err)
			}
			a := f.Hosts[0].Addr().String()
			return host{remote.Config{Name: a, Addr: a, User: u.Username, Identity: f.Identity, KnownHosts: f.KnownHosts}, f.Roots[0]}
		},
	}
}

// endless is an input that never ends by itself.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// A cancelled Run returns only once the command has ended on the host, so
// that what runs next there (an undo after Ctrl-C or another host's failure)
// never races with it. Both kinds of command are covered: one fed a stream
// (the upload), whose input is cut, and one under the kill-on-hangup wrapper
// (hooks, locks), which the host kills.
func TestCancelledRunWaitsForTheCommandToEnd(t *testing.T) {
	for name, start := range hosts(t) {
		t.Run(name, func(t *testing.T) {
			h := start(t)
			c := dial(t, newDialer(t, remote.DialerOptions{}), h.cfg)
			for _, tc := range []struct {
				name string
				cmd  remote.Cmd
			}{
				// The command goes on after its input ends, as the upload
				// script goes on to check and publish what it unpacked.
				{"stream", remote.Cmd{Stdin: endless{}, Args: []string{"sh", "-c", `mkdir -p "${1%/*}"; echo started > "$1"; cat > /dev/null; sleep 0.5; echo ended > "$1"`, "sh"}}},
				// The command takes its time to die, as a hook cleaning up.
				{"wrapped", remote.Cmd{Args: []string{"sh", "-c", `trap 'sleep 0.5; echo ended > "$1"; exit 1' TERM; mkdir -p "${1%/*}"; echo started > "$1"; sleep 30 & wait`, "sh"}}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					file := filepath.Join(h.dir, tc.name)
					tc.cmd.Args = append(tc.cmd.Args, file)
					ctx, cancel := context.WithCancel(t.Context())
					go func() {
						for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
							if b, _ := os.ReadFile(file); len(b) > 0 {
								break
							}
							<-time.After(10 * time.Millisecond)
						}
						cancel()
					}()
					_, err := c.Run(ctx, tc.cmd)
					if !errors.Is(err, context.Canceled) {
						t.Fatalf("got %v, want context.Canceled", err)
					}
					b, _ := os.ReadFile(file)
					if got := strings.TrimSpace(string(b)); got != "ended" {
						t.Fatalf("Run returned while the command was still running on the host (it wrote %q)", got)
					}
				})
			}
		})
	}
}

// dialOpenSSH connects to one real OpenSSH host whose root folder exists;
// the connection is closed when the test ends.
func dialOpenSSH(t *testing.T) (*remote.Client, *sshtest.Host) {
	t.Helper()
	f := sshtest.Start(t, 1)
	h := f.Hosts[0]
	c, err := remote.Dial(t.Context(), remote.Config{Name: h.Name, Addr: h.Name, User: f.User, Identity: f.Identity, KnownHosts: f.KnownHosts})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.MkdirAll(t.Context(), h.Root); err != nil {
		t.Fatal(err)
	}
	return c, h
}

// An SFTP request in flight when its context ends is waited for, and its own
// outcome returned: an undo sent next must find its effect, not race with it.
// The host is frozen so that the request is still in flight when ctx ends.
func TestCancelledSFTPRequestIsWaitedFor(t *testing.T) {
	c, h := dialOpenSSH(t)
	link := filepath.Join(h.Root, "next")
	h.Freeze()
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-time.After(200 * time.Millisecond)
		cancel()
		<-time.After(200 * time.Millisecond)
		h.Thaw()
	}()
	if err := c.Symlink(ctx, "builds/1", link); err != nil {
		t.Fatalf("got %v; want the request's own outcome (done once the host answered)", err)
	}
	if got, err := os.Readlink(link); err != nil || got != "builds/1" {
		t.Fatalf("the link is %q (%v) once Symlink returned", got, err)
	}
}

// ReadTail reads the end of a file over SFTP: all of a short one, the last
// max bytes of a long one, fs.ErrNotExist for none.
func TestReadTail(t *testing.T) {
	c, h := dialOpenSSH(t)
	p := filepath.Join(h.Root, "history")
	data := []byte(strings.Repeat("0123456789", 100))
	if err := c.WriteFile(t.Context(), p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int64{100, 999, 1000, 5000} {
		got, err := c.ReadTail(t.Context(), p, n)
		want := data[max(0, int64(len(data))-n):]
		if err != nil || string(got) != string(want) {
			t.Errorf("ReadTail(%d) = %d bytes %q..., %v; want the last %d", n, len(got), got[:min(len(got), 10)], err, len(want))
		}
	}
	if _, err := c.ReadTail(t.Context(), filepath.Join(h.Root, "none"), 10); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadTail of a missing file: %v, want fs.ErrNotExist", err)
	}
}

// An input carried in the command (Cmd.Inline) goes on stdin instead when
// the command would be too long with it: sshd hands the login shell the
// whole command as one argument, which Linux caps at 128 KiB (E2BIG, and
// the command never runs). The script reads its input either way.
func TestInlineTooLongGoesOnStdin(t *testing.T) {
	script := &remote.Script{Name: "count", Body: `for kv do case $kv in inline=*) printf '%s' "${kv#inline=}" | base64 -d | wc -c; exit ;; esac; done; wc -c`}
	for name, start := range hosts(t) {
		t.Run(name, func(t *testing.T) {
			h := start(t)
			c := dial(t, newDialer(t, remote.DialerOptions{}), h.cfg)
			for _, param := range []int{0, 80 << 10} {
				cmd := remote.Cmd{Script: script, Params: []remote.Param{{Name: "skip", Value: strings.Repeat("x", param)}}, Inline: []byte(strings.Repeat("y", 48<<10))}
				out, err := c.Run(t.Context(), cmd)
				if err != nil {
					t.Fatalf("with a %d-byte parameter: %v", param, err)
				}
				if got := strings.TrimSpace(string(out)); got != "49152" {
					t.Errorf("with a %d-byte parameter the script read %q bytes, want 49152", param, got)
				}
			}
			// Too long even without its input: said before anything runs.
			cmd := remote.Cmd{Script: script, Params: []remote.Param{{Name: "skip", Value: strings.Repeat("x", 130<<10)}}, Inline: []byte("y")}
			if _, err := c.Run(t.Context(), cmd); err == nil || !strings.Contains(err.Error(), "fleetdeploy-count: the command is 130 KiB, over the 124 KiB a command may have on a host") {
				t.Errorf("a command too long: %v", err)
			}
		})
	}
}

// A command that leaves a process in the background holding its output
// (`cmd &` in a hook) is done once it ends: its output is read for a moment
// more, then no longer waited for, and its stderr says why. A plain ssh
// waits as long as that process runs.
func TestBackgroundProcessHoldingOutputIsNotWaitedFor(t *testing.T) {
	for name, start := range hosts(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := dial(t, newDialer(t, remote.DialerOptions{}), start(t).cfg)
			var errb strings.Builder
			begin := time.Now()
			out, err := c.Run(t.Context(), remote.Cmd{Args: []string{"sh", "-c", "echo started; sleep 30 & echo done"}, Stderr: &errb})
			if took := time.Since(begin); took > 15*time.Second {
				t.Errorf("Run took %s: it waited for the background process", took)
			}
			if err != nil || string(out) != "started\ndone\n" {
				t.Errorf("got %q, %v; want its output and no error", out, err)
			}
			if !strings.Contains(errb.String(), "a process it started still holds its output open: not waited for") {
				t.Errorf("stderr %q", errb.String())
			}
			// Output that keeps coming after the command ended, past the
			// wait for a quiet channel, is read to its end.
			out, err = c.Run(t.Context(), remote.Cmd{Args: []string{"sh", "-c", "(for i in 1 2 3 4 5 6 7; do sleep 1; echo $i; done) & echo now"}})
			if err != nil || string(out) != "now\n1\n2\n3\n4\n5\n6\n7\n" {
				t.Errorf("got %q, %v; want every line", out, err)
			}
			// The quiet is counted from the end, not from the last output
			// before it, however long ago.
			out, err = c.Run(t.Context(), remote.Cmd{Args: []string{"sh", "-c", "echo first; sleep 6; (sleep 1; echo late) &"}})
			if err != nil || string(out) != "first\nlate\n" {
				t.Errorf("got %q, %v; want both lines", out, err)
			}
		})
	}
}
