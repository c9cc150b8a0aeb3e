package remote_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetdeploy/fleetdeploy/internal/sshtest"
	"github.com/fleetdeploy/fleetdeploy/remote"
)

// A command waits for one round trip: its session channel was opened ahead
// (the first at Dial, alongside SFTP's; each next one while the command
// before it started), and its exec's answer comes with its output. Input
// costs one more: it goes out once the exec is answered (OpenSSH grants
// the channel no window before).
func TestRunRoundTrips(t *testing.T) {
	for name, start := range hosts(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := start(t)
			k := dialCounted(t, h, time.Second)
			input := strings.Repeat("0123456789abcdef", 256) // 4 KiB
			var out []byte
			var err error
			run := func(cmd remote.Cmd) func() {
				return func() { out, err = k.c.Run(t.Context(), cmd) }
			}
			// Right after Dial, before any other request: only the SFTP
			// version, sent unasked, is still on its way.
			k.link.Reset()
			run(remote.Cmd{Args: []string{"true"}})()
			n := k.link.Waits()
			t.Logf("Run true right after Dial: %d round trips", n)
			if err != nil || n > 1 { // fewer: a wait cut short under load, not a saving
				t.Errorf("Run true right after Dial: %d round trips, want 1 (%v)", n, err)
			}
			for _, tc := range []struct {
				name  string
				cmd   remote.Cmd
				out   string
				trips int
			}{
				{"true again", remote.Cmd{Args: []string{"true"}}, "", 1},
				{"echo", remote.Cmd{Args: []string{"echo", "hi"}}, "hi\n", 1},
				{"4 KiB of input", remote.Cmd{Args: []string{"wc", "-c"}, Stdin: strings.NewReader(input)}, "4096\n", 2},
				{"empty input", remote.Cmd{Args: []string{"wc", "-c"}, Stdin: strings.NewReader("")}, "0\n", 2},
				{"brief script", remote.Cmd{Script: &remote.Script{Name: "x", Body: `echo "$1"`, Brief: true}, Params: []remote.Param{{Name: "a", Value: "b"}}}, "a=b\n", 1},
			} {
				n := k.count(t, run(tc.cmd))
				t.Logf("Run %-16s %d round trips", tc.name, n)
				if err != nil || strings.TrimSpace(string(out)) != strings.TrimSpace(tc.out) {
					t.Errorf("%s: %q, %v; want %q", tc.name, out, err, tc.out)
				}
				if n > tc.trips { // fewer: a wait cut short under load, not a saving
					t.Errorf("%s: %d round trips, want %d", tc.name, n, tc.trips)
				}
			}
			// A failure still says how the command ended, with its stderr.
			_, err = k.c.Run(t.Context(), remote.Cmd{Args: []string{"sh", "-c", "echo oops >&2; exit 3"}})
			var ee *remote.ExitError
			if !errors.As(err, &ee) || ee.Status != 3 || ee.Stderr != "oops" {
				t.Errorf("failing command: %v", err)
			}
			_, err = k.c.Run(t.Context(), remote.Cmd{Args: []string{"sh", "-c", "kill -TERM $$"}, Stdin: strings.NewReader("")})
			if !errors.As(err, &ee) || ee.Signal != "TERM" || ee.Status != -1 {
				t.Errorf("killed command: %v", err)
			}
		})
	}
}

// A host that allows few sessions per connection (MaxSessions) still runs
// commands one after the other: the channel opened ahead gives way. With
// one session, SFTP gets it, and commands fail with the host's refusal.
func TestRunWithFewSessions(t *testing.T) {
	for _, max := range []int{1, 2} {
		t.Run(fmt.Sprint("MaxSessions ", max), func(t *testing.T) {
			t.Parallel()
			f := sshtest.StartWith(t, 1, sshtest.Options{SSHDConfig: []string{fmt.Sprint("MaxSessions ", max)}})
			h := f.Hosts[0]
			for range 5 { // the channel opened ahead and SFTP's race at Dial
				c, err := remote.Dial(t.Context(), remote.Config{Name: h.Name, Addr: h.Name, User: f.User, Identity: f.Identity, KnownHosts: f.KnownHosts})
				if err != nil {
					t.Fatal(err)
				}
				for i := range 3 {
					out, err := c.Run(t.Context(), remote.Cmd{Args: []string{"echo", "ok"}})
					if max == 1 {
						if err == nil || !strings.Contains(err.Error(), "opening session") {
							t.Errorf("a command with no session left: %q, %v", out, err)
						}
					} else if err != nil || string(out) != "ok\n" {
						t.Fatalf("command %d: %q, %v", i, out, err)
					}
					if _, err := c.Lstat(t.Context(), "/"); err != nil {
						t.Fatalf("sftp after command %d: %v", i, err)
					}
				}
				c.Close()
			}
		})
	}
}

// A command cancelled the moment it is sent, before its exec has even left,
// is still killed on the host: its hangup (the end of its input) must not
// reach OpenSSH before the exec does, or sshd drops it and the command never
// hears of it (seen: a Ctrl-C right after a health check started left it
// running its 30 s).
func TestCancelRightAfterExec(t *testing.T) {
	for name, start := range hosts(t) {
		t.Run(name, func(t *testing.T) {
			k := dialCounted(t, start(t), 20*time.Second)
			begin := time.Now()
			_, err := k.c.Run(&cancelledOnSecondLook{Context: t.Context()}, remote.Cmd{Args: []string{"sleep", "30"}})
			if !errors.Is(err, context.Canceled) {
				t.Errorf("got %v, want context.Canceled", err)
			}
			if took := time.Since(begin); took > 10*time.Second {
				t.Errorf("Run returned after %s: the command was not killed", took)
			}
		})
	}
}

// cancelledOnSecondLook is a context that is live while Run takes its
// session and cancelled from the moment Run watches it while the command
// runs: the cancel lands before the exec request's goroutine sends it.
type cancelledOnSecondLook struct {
	context.Context
	mu    sync.Mutex
	looks int
	done  chan struct{}
}

func (c *cancelledOnSecondLook) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
	}
	c.looks++
	if c.looks == 2 {
		close(c.done)
	}
	if c.looks == 1 {
		return make(chan struct{}) // take: never cancelled
	}
	return c.done
}

func (c *cancelledOnSecondLook) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.looks >= 2 {
		return context.Canceled
	}
	return nil
}
