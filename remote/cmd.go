// Package remote reaches one host over SSH: it dials with verified host keys,
// runs commands, and changes files through SFTP. Everything that reaches a
// remote shell is rendered by Cmd.Render, which quotes every value.
package remote

import (
	"bytes"
	_ "embed"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
)

// Script is a fixed shell program of ours, run as `sh -c BODY fleetdeploy-NAME
// PARAMS...`, so that values only ever reach it as quoted words: its named
// parameters (Cmd.Params), each one word `name=value`.
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
	Script *Script  // when set, the command is this script, fed Params
	Params []Param  // the script's named parameters, in order
	Args   []string // argv, when Script is nil

	// Input says what Stdin carries, for people (e.g. "payload (12 files,
	// 3.1 MiB)"); String shows it as "< Input".
	Input string
	// Stdin, when set, is streamed to the command; the command then ends when it
	// reads EOF. When nil, the command reads /dev/null and is killed on the host,
	// with its whole process group, as soon as the session goes away (unless
	// it is a Brief script, left to end by itself).
	Stdin io.Reader
	// Inline, for a Script, is its input carried in the command itself, as a
	// last parameter inline=BASE64 (String shows Input alone, as for Stdin):
	// a small input then costs no round trip of its own, where Stdin waits
	// for the exec's answer (OpenSSH opens a command's input once it runs).
	// sshd hands the whole command to the login shell as one argument,
	// which Linux caps at 128 KiB: Run sends an Inline input on stdin
	// instead when the command would be longer (see maxWire).
	Inline []byte
	// Pace, with Stdin, holds the input back to what the command reports
	// having read (see Pace).
	Pace *Pace
	// Stdout and Stderr, when set, receive the command's output as it arrives.
	Stdout io.Writer
	Stderr io.Writer
	// Secret hides the values of Env in String (they still reach the host).
	Secret bool
}

// Param is one named parameter of a Script. A list is the same name given
// several times.
type Param struct{ Name, Value string }

func (p Param) word() string { return p.Name + "=" + p.Value }

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
	words := c.words(display)
	switch {
	case display && c.Script != nil:
		b = append(b, words[0]) // the script's name, unquoted
		words = words[1:]
	case c.Script != nil:
		b = append(b, "sh", "-c")
		words = words[2:]
	}
	for _, w := range words {
		b = append(b, Quote(w))
	}
	if display && c.Input != "" {
		b = append(b, "<", c.Input)
	}
	return strings.Join(b, " ")
}

// killOnHangup runs its arguments as a command in its own session and
// process group, and kills the group when the SSH channel closes (see the
// script for why, and how it keeps process starts low).
//
//go:embed scripts/run.sh
var killOnHangup string

// argv is the command as words for killOnHangup: the script or argv itself
// when it needs no shell around it, else `sh -c` of its rendering.
func (c Cmd) argv() []string {
	if c.Dir != "" || len(c.Env) > 0 || (c.Script == nil && len(c.Args) == 0) {
		return []string{"sh", "-c", c.Render()}
	}
	return c.words(false)
}

// words is the command as argv: a script as `sh -c BODY fleetdeploy-NAME
// name=value...` (shown by its name alone), else Args.
func (c Cmd) words(display bool) []string {
	if c.Script == nil {
		return c.Args
	}
	w := []string{"sh", "-c", c.Script.Body, "fleetdeploy-" + c.Script.Name}
	if display {
		w = w[3:]
	}
	var many, seen map[string]int
	if display {
		many, seen = map[string]int{}, map[string]int{}
		for _, p := range c.Params {
			many[p.Name]++
		}
	}
	for _, p := range c.Params {
		if n := many[p.Name]; n > shownOfList+1 {
			seen[p.Name]++
			if k := seen[p.Name]; k == shownOfList+1 {
				w = append(w, fmt.Sprintf("%s=… (%d more)", p.Name, n-shownOfList))
			}
			if seen[p.Name] > shownOfList {
				continue
			}
		}
		w = append(w, p.word())
	}
	if c.Inline != nil && !display {
		w = append(w, "inline="+base64.StdEncoding.EncodeToString(c.Inline))
	}
	return w
}

// shownOfList is how many values of one parameter people see from a long
// list (the files a redeploy does not reuse can be thousands): the first
// few, then how many more.
const shownOfList = 4

// maxWire bounds the command sent in an exec request. sshd hands it to the
// login shell as one argument, and Linux caps one argument at 128 KiB
// (MAX_ARG_STRLEN): beyond, the shell fails with "Argument list too long"
// and the command never runs. A few KiB are left for the NUL and for
// shells that add to it.
const maxWire = 124 << 10

// fitted is c as it can be sent: an Inline input that would make the
// command too long goes on stdin instead (the script reads either); a
// command too long all the same is an error that says so.
func (c Cmd) fitted() (Cmd, error) {
	n := len(c.wire())
	if n <= maxWire {
		return c, nil
	}
	if c.Inline != nil && c.Stdin == nil {
		c.Stdin, c.Inline = bytes.NewReader(c.Inline), nil
		if n = len(c.wire()); n <= maxWire {
			return c, nil
		}
	}
	name := "the command"
	switch {
	case c.Script != nil:
		name = "fleetdeploy-" + c.Script.Name
	case len(c.Args) > 0:
		name = c.Args[0]
	}
	return c, fmt.Errorf("%s: the command is %d KiB, over the %d KiB a command may have on a host", name, n>>10, maxWire>>10)
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
