package plan

import (
	"context"
	"io"
	"io/fs"
	"strings"
	"testing"

	"github.com/fleetdeploy/fleetdeploy/remote"
	"github.com/fleetdeploy/fleetdeploy/steps"
)

// nopHost is a host on which nothing but the plan's own ops runs.
type nopHost struct{ name string }

func (h nopHost) Name() string { return h.name }
func (h nopHost) Run(context.Context, remote.Cmd) ([]byte, error) {
	return nil, nil
}
func (h nopHost) ReadFile(context.Context, string, int64) ([]byte, error) { return nil, fs.ErrNotExist }
func (h nopHost) ReadTail(context.Context, string, int64) ([]byte, error) {
	return nil, fs.ErrNotExist
}
func (h nopHost) WriteFile(context.Context, string, []byte, fs.FileMode) error {
	return nil
}
func (h nopHost) AppendFile(context.Context, string, []byte) error   { return nil }
func (h nopHost) Symlink(context.Context, string, string) error      { return nil }
func (h nopHost) Readlink(context.Context, string) (string, error)   { return "", fs.ErrNotExist }
func (h nopHost) Rename(context.Context, string, string) error       { return nil }
func (h nopHost) Remove(context.Context, string) error               { return nil }
func (h nopHost) MkdirAll(context.Context, string) error             { return nil }
func (h nopHost) Lstat(context.Context, string) (fs.FileInfo, error) { return nil, fs.ErrNotExist }
func (h nopHost) ReadDir(context.Context, string) ([]string, error)  { return nil, fs.ErrNotExist }
func (h nopHost) Close() error                                       { return nil }

// fnOp is an op that runs a function.
type fnOp func(ctx context.Context) error

func (f fnOp) Calls() []remote.Call                                      { return nil }
func (f fnOp) Run(ctx context.Context, _ remote.Host, _ io.Writer) error { return f(ctx) }

// Two hosts fail at about the same time: the one whose failure is noticed
// second (after the first cancelled the phase) is still reported, because
// its command exited on its own; a host merely stopped is not.
func TestEveryRealFailureIsReported(t *testing.T) {
	failed, bStarted := make(chan struct{}), make(chan struct{})
	op := func(run func(ctx context.Context) error) steps.Op { return fnOp(run) }
	prepare := newPhase("preparing", Undone, []string{"a", "b", "c"})
	p := &Plan{Action: "deploy", Env: "test", Hosts: []string{"a", "b", "c"}}
	prepare.Steps["a"] = []steps.Step{{Name: "hook", Ops: []steps.Op{op(func(context.Context) error {
		<-bStarted
		close(failed)
		return &remote.ExitError{Status: 7, Stderr: "a broke"}
	})}}}
	prepare.Steps["b"] = []steps.Step{{Name: "hook", Ops: []steps.Op{op(func(ctx context.Context) error {
		close(bStarted)
		<-failed
		<-ctx.Done() // noticed after a's failure cancelled the phase
		return &remote.ExitError{Status: 7, Stderr: "b broke"}
	})}}}
	prepare.Steps["c"] = []steps.Step{{Name: "hook", Ops: []steps.Op{op(func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	})}}}
	p.Phases = []Phase{*prepare}
	hosts := map[string]remote.Host{"a": nopHost{"a"}, "b": nopHost{"b"}, "c": nopHost{"c"}}
	_, err := Execute(t.Context(), p, hosts, Options{})
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{"a: hook: exit 7: a broke", "b: hook: exit 7: b broke"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "c:") {
		t.Errorf("a host stopped by the others' failure is reported as failed:\n%s", msg)
	}
}
