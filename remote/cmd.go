// Package remote reaches one host over SSH: it dials with verified host keys,
// runs commands, and changes files through SFTP. Everything that reaches a
// remote shell is rendered by Cmd.Render, which quotes every value.
package remote

import (
	"io"
	"strings"
)

// Script is a fixed shell program of ours, run as `sh -c BODY fleetdeploy-NAME ARGS...`,
// so that values only ever reach it as quoted positional parameters.
type Script struct {
	Name string
	Body string
	// Brief marks a script that ends by itself within moments and runs no
	// user code: it runs without the kill-on-hangup wrapper, which saves two
	// process starts per command.
	Brief bool
}

// Cmd is a remote command as data. Nothing else in fleetdeploy builds shell text.
type Cmd struct {
	Dir    string   // directory to run in; "" for the login directory
	Env    []string // KEY=VALUE pairs, set with env(1)
	Script *Script  // when set, Args are the script's positional parameters
	Args   []string // argv, or the script's parameters

	// Stdin, when set, is streamed to the command; the command then ends when it
	// reads EOF. When nil, the command reads /dev/null and is killed on the host,
	// with its whole process group, as soon as the session goes away (unless
	// it is a Brief script, left to end by itself).
	Stdin io.Reader
	// Pace, with Stdin, holds the input back to what the command reports
	// having read (see Pace).
	Pace *Pace
	// Stdout and Stderr, when set, receive the command's output as it arrives.
	Stdout io.Writer
	Stderr io.Writer
	// Secret hides the values of Env in String (they still reach the host).
	Secret bool
}

// Quote single-quotes s for a POSIX shell: every byte stands for itself.
func Quote(s string) string {
	if s == "" {
		return "''"
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Render is the shell text sent to the host.
func (c Cmd) Render() string { return c.render(false) }

// String is the command as shown to people: a script of ours is shown by its
// name rather than its body, and secret values are masked.
func (c Cmd) String() string { return c.render(true) }

func (c Cmd) render(display bool) string {
	var b []string
	if c.Dir != "" {
		b = append(b, "cd", Quote(c.Dir), "&&")
	}
	if !display && (c.Dir != "" || len(c.Env) > 0) {
		b = append(b, "exec") // the shell this runs in need not wait for env
	}
	if len(c.Env) > 0 {
		b = append(b, "env")
		for _, e := range c.Env {
			if display && c.Secret {
				k, _, _ := strings.Cut(e, "=")
				e = k + "=***"
			}
			b = append(b, Quote(e))
		}
	}
	if c.Script != nil {
		if display {
			b = append(b, "fleetdeploy-"+c.Script.Name)
		} else {
			b = append(b, "sh", "-c", Quote(c.Script.Body), Quote("fleetdeploy-"+c.Script.Name))
		}
	}
	for _, a := range c.Args {
		b = append(b, Quote(a))
	}
	return strings.Join(b, " ")
}

// killOnHangup runs its arguments as a command in its own session and process
// group and watches the SSH channel's stdin: when the channel closes (the
// client cancelled, timed out or vanished) the whole group is sent SIGTERM,
// then SIGKILL. sshd alone would leave it running. It starts as few processes
// as it can (every process start costs about a millisecond of CPU on a small
// VM, and a deploy runs a few commands on every host): the command is exec'd by
// setsid without another shell in between, and the watcher is a subshell using
// the shell's own read rather than cat.
const killOnHangup = `exec 3<&0
if command -v setsid >/dev/null 2>&1; then setsid "$@" </dev/null & else "$@" </dev/null & fi
p=$!
( while read -r _ <&3; do :; done; kill -TERM -"$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null; sleep 3; kill -KILL -"$p" 2>/dev/null ) >/dev/null 2>&1 &
w=$!
exec 3<&-
wait "$p"; rc=$?
kill "$w" 2>/dev/null
exit "$rc"`

// argv is the command as words for killOnHangup: the script or argv itself
// when it needs no shell around it, else `sh -c` of its rendering.
func (c Cmd) argv() []string {
	if c.Dir != "" || len(c.Env) > 0 || (c.Script == nil && len(c.Args) == 0) {
		return []string{"sh", "-c", c.Render()}
	}
	if c.Script != nil {
		return append([]string{"sh", "-c", c.Script.Body, "fleetdeploy-" + c.Script.Name}, c.Args...)
	}
	return c.Args
}

// wire is what is sent in the SSH exec request. sshd runs it with the login
// shell's -c, which it replaces (exec): bash would exec a lone command by
// itself, but dash (Debian's /bin/sh) forks it and waits, a process more on
// the host for every command.
func (c Cmd) wire() string {
	if c.Stdin != nil || (c.Script != nil && c.Script.Brief) {
		if c.Dir == "" && len(c.Env) == 0 {
			return "exec " + c.Render() // one simple command
		}
		return "exec sh -c " + Quote(c.Render())
	}
	w := []string{"exec", "sh", "-c", Quote(killOnHangup), "fleetdeploy-run"}
	for _, a := range c.argv() {
		w = append(w, Quote(a))
	}
	return strings.Join(w, " ")
}
