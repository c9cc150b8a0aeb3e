package steps

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"strings"
	"sync"

	"github.com/fleetdeploy/fleetdeploy/remote"
)

// Step is one named unit of work on one host. Its operations run in order; when
// anything later fails before the cutover, Undo runs (newest step first).
type Step struct {
	Name string // gerund, e.g. "uploading build"
	Ops  []Op
	Undo []Op
}

func (s Step) String() string { return s.Name }

// Op is one operation on a host, as data: Calls are the requests it sends
// when all goes well, rendered from the values Run sends, so that a dry run
// (which prints them) cannot drift from a real run. Run may read the host
// besides (reads change nothing and are not Calls), and some ops answer a
// failure with more calls (say so in their Note).
type Op interface {
	Calls() []remote.Call
	Run(ctx context.Context, h remote.Host, out io.Writer) error
}

// noted is an Op with a remark for people beside its calls.
type noted interface{ Note() string }

// Describe is an op as a dry run prints it: its calls, then its note.
func Describe(op Op) string {
	var parts []string
	for _, c := range op.Calls() {
		parts = append(parts, c.String())
	}
	s := strings.Join(parts, "; ")
	t, ok := op.(Together)
	if ok && len(parts) > 1 {
		s = "at once: " + s
	}
	notes := []Op{op}
	if ok {
		notes = t
	}
	sep := " "
	if ok {
		sep = "; "
	}
	for _, o := range notes {
		if n, ok := o.(noted); ok && n.Note() != "" {
			if s != "" {
				s += sep
			}
			s += n.Note()
		}
	}
	return s
}

// Send is one request sent as it is. A command's output goes to the step's
// output unless the command sets its own.
type Send struct {
	Call remote.Call
	// AbsentOK makes a remove of something already absent a success.
	AbsentOK bool
}

// Calls is the request itself.
func (s Send) Calls() []remote.Call { return []remote.Call{s.Call} }

// Run sends the request.
func (s Send) Run(ctx context.Context, h remote.Host, out io.Writer) error {
	c := s.Call
	if out != nil && c.Method == remote.MethodRun && c.Cmd.Stdout == nil {
		c.Cmd.Stdout, c.Cmd.Stderr = out, out
		if s, ok := out.(stderrWriter); ok {
			c.Cmd.Stderr = s.Stderr()
		}
	}
	_, err := remote.Do(ctx, h, c)
	if s.AbsentOK && isNotExist(err) {
		return nil
	}
	return err
}

// stderrWriter is a step's output that keeps a command's standard error
// apart from its standard output (the scheduler's Output events say which
// stream a line came from).
type stderrWriter interface{ Stderr() io.Writer }

// Exec runs a command.
func Exec(c remote.Cmd) Op { return Send{Call: remote.Run(c)} }

// Symlink creates path -> target (failing if path exists).
func Symlink(target, path string) Op {
	return Send{Call: remote.Call{Method: remote.MethodSymlink, Path: path, Arg: target}}
}

// Rename replaces newpath by oldpath in one atomic rename.
func Rename(oldpath, newpath string) Op {
	return Send{Call: remote.Call{Method: remote.MethodRename, Path: oldpath, Arg: newpath}}
}

// RemoveIfExists removes a file or symlink; absence is fine.
func RemoveIfExists(path string) Op {
	return Send{Call: remote.Call{Method: remote.MethodRemove, Path: path}, AbsentOK: true}
}

// Append appends data to a file, creating it.
func Append(path string, data string) Op {
	return Send{Call: remote.Call{Method: remote.MethodAppend, Path: path, Arg: data}}
}

// Write replaces a file by one holding data.
func Write(path string, data string) Op {
	return Send{Call: remote.Call{Method: remote.MethodWrite, Path: path, Arg: data}}
}

func isNotExist(err error) bool {
	return err != nil && (errors.Is(err, fs.ErrNotExist) || strings.Contains(err.Error(), "not exist"))
}

// Together runs independent ops at once: over SFTP, one round trip for all of
// them instead of one each. Every op runs; the errors are joined.
type Together []Op

// Calls are every op's calls.
func (t Together) Calls() []remote.Call {
	var out []remote.Call
	for _, op := range t {
		out = append(out, op.Calls()...)
	}
	return out
}

// Run runs the ops concurrently.
func (t Together) Run(ctx context.Context, h remote.Host, out io.Writer) error {
	errs := make([]error, len(t))
	var wg sync.WaitGroup
	for i, op := range t {
		wg.Go(func() { errs[i] = op.Run(ctx, h, out) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// together is Together, or the op itself when there is one.
func together(ops ...Op) Op {
	if len(ops) == 1 {
		return ops[0]
	}
	return Together(ops)
}

// RunOps executes ops in order, reporting each to before (when set).
func RunOps(ctx context.Context, h remote.Host, ops []Op, out io.Writer, before func(Op)) error {
	for _, op := range ops {
		if before != nil {
			before(op)
		}
		if err := op.Run(ctx, h, out); err != nil {
			return err
		}
	}
	return nil
}
