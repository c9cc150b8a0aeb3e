package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/fleetdeploy/fleetdeploy/remote"
)

// localHooks runs env's on_success hooks (the run ended with exit 0) or
// on_failure hooks (any other end) on this machine, once a run of up or
// rollback is over: each with `sh -c`, in the inventory's folder, with
// FLEETDEPLOY_RELEASE, FLEETDEPLOY_ENV, FLEETDEPLOY_RESULT (ok, reverted,
// failed, ... : results), FLEETDEPLOY_EXIT (the exit code), and
// FLEETDEPLOY_ACTION and FLEETDEPLOY_MESSAGE besides. They are for
// notifications: a hook that fails or times out is reported, and changes
// neither the fleet nor the exit code. Ctrl-C does not stop them; each is
// bounded by its timeout.
func (c *common) localHooks(ctx context.Context, env *inventory.Environment, action, release string, runErr error) {
	err := finalError(runErr)
	code := exitCode(err)
	phase := inventory.OnSuccess
	if code != exitOK {
		phase = inventory.OnFailure
	}
	hooks := env.HooksFor(phase, "")
	if len(hooks) == 0 {
		return
	}
	msg := ""
	switch {
	case err != nil:
		msg, _, _ = strings.Cut(remote.SanitizeLines(err.Error()), "\n")
	case action == "rollback":
		msg = fmt.Sprintf("rolled back %s to %s", env.Name, release)
	default:
		msg = fmt.Sprintf("deployed %s to %s", release, env.Name)
	}
	vars := []string{
		"FLEETDEPLOY_RELEASE=" + release,
		"FLEETDEPLOY_ENV=" + env.Name,
		"FLEETDEPLOY_RESULT=" + results[code],
		"FLEETDEPLOY_EXIT=" + strconv.Itoa(code),
		"FLEETDEPLOY_ACTION=" + action,
		"FLEETDEPLOY_MESSAGE=" + msg,
	}
	dir := filepath.Dir(env.File)
	for _, hk := range hooks {
		name := fmt.Sprintf("%s hook %q", phase, oneLine(hk.Run))
		if c.verbose {
			c.out.Printf("(local)  running %s\n", name)
		}
		if err := c.localHook(context.WithoutCancel(ctx), hk, dir, vars); err != nil {
			c.out.Printf("  (local)  %s failed: %s (the fleet and the exit code are unchanged)\n", name, remote.SanitizeLines(err.Error()))
		}
	}
}

// localHook runs one hook, its output shown with -v, killed with its
// process group when its timeout runs out.
func (c *common) localHook(ctx context.Context, hk inventory.Hook, dir string, vars []string) error {
	timeout := hk.Timeout
	if timeout <= 0 {
		timeout = inventory.DefaultHookTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", hk.Run)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), vars...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	last := &lastLines{verbose: c.verbose, out: c.out}
	cmd.Stdout, cmd.Stderr = last, last
	err := cmd.Run()
	last.flush()
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("timed out after %s (killed)", timeout)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		err = fmt.Errorf("exit %d", ee.ExitCode())
		if tail := last.tail(); tail != "" {
			err = fmt.Errorf("%w: %s", err, tail)
		}
	}
	return err
}

// lastLines shows a local hook's output lines with -v, and keeps the last
// few for its error.
type lastLines struct {
	verbose bool
	out     *printer
	buf     []byte
	lines   []string
}

func (l *lastLines) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	for {
		i := strings.IndexByte(string(l.buf), '\n')
		if i < 0 {
			break
		}
		l.line(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
	if len(l.buf) > 4096 {
		l.line(string(l.buf))
		l.buf = l.buf[:0]
	}
	return len(p), nil
}

func (l *lastLines) line(s string) {
	s = remote.Sanitize(s)
	if l.verbose {
		l.out.Printf("  (local)  | %s\n", s)
	}
	l.lines = append(l.lines, s)
	if len(l.lines) > 3 {
		l.lines = l.lines[1:]
	}
}

func (l *lastLines) flush() {
	if len(l.buf) > 0 {
		l.line(string(l.buf))
		l.buf = nil
	}
}

func (l *lastLines) tail() string { return strings.Join(l.lines, " / ") }

// oneLine is a command on one short line, for messages.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}
