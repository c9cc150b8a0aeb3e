package remote_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/fleetdeploy/fleetdeploy/remote"
)

// dirHost is a Host without a connection (as the fakes of steps and plan
// are): files in a local folder, every call recorded.
type dirHost struct {
	calls  []string
	during func(call string) // runs inside each call
}

func (d *dirHost) rec(call, p string) {
	call += " " + filepath.Base(p)
	d.calls = append(d.calls, call)
	if d.during != nil {
		d.during(call)
	}
}

func (d *dirHost) Name() string { return "dir" }
func (d *dirHost) Run(_ context.Context, c remote.Cmd) ([]byte, error) {
	d.rec("run", c.Args[0])
	return []byte("ran"), nil
}
func (d *dirHost) ReadFile(_ context.Context, p string, _ int64) ([]byte, error) {
	d.rec("readfile", p)
	return os.ReadFile(p)
}
func (d *dirHost) ReadTail(_ context.Context, p string, _ int64) ([]byte, error) {
	d.rec("readtail", p)
	return os.ReadFile(p)
}
func (d *dirHost) WriteFile(_ context.Context, p string, b []byte, m fs.FileMode) error {
	d.rec("writefile", p)
	return os.WriteFile(p, b, m)
}
func (d *dirHost) AppendFile(_ context.Context, p string, b []byte) error {
	d.rec("append", p)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	return errors.Join(err, f.Close())
}
func (d *dirHost) Symlink(_ context.Context, t, p string) error {
	d.rec("symlink", p)
	return os.Symlink(t, p)
}
func (d *dirHost) Readlink(_ context.Context, p string) (string, error) {
	d.rec("readlink", p)
	return os.Readlink(p)
}
func (d *dirHost) Rename(_ context.Context, a, b string) error {
	d.rec("rename", a)
	return os.Rename(a, b)
}
func (d *dirHost) Remove(_ context.Context, p string) error {
	d.rec("remove", p)
	return os.Remove(p)
}
func (d *dirHost) MkdirAll(_ context.Context, p string) error {
	d.rec("mkdirall", p)
	return os.MkdirAll(p, 0o755)
}
func (d *dirHost) Lstat(_ context.Context, p string) (fs.FileInfo, error) {
	d.rec("lstat", p)
	return os.Lstat(p)
}
func (d *dirHost) ReadDir(_ context.Context, p string) ([]string, error) {
	d.rec("readdir", p)
	list, err := os.ReadDir(p)
	var names []string
	for _, e := range list {
		names = append(names, e.Name())
	}
	return names, err
}
func (d *dirHost) Close() error { return nil }

// On a Host without a connection, a pipeline carries its operations out
// one after the other, in the order added, through the Host's methods: a
// Readlink added after a Symlink sees it; once ctx ends, no more start.
func TestPipelineOnAnyHost(t *testing.T) {
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	h := &dirHost{}
	pl := remote.NewPipeline(h)
	link := pl.Symlink("target", p("lock"))
	who := pl.Readlink(p("lock"))
	mk := pl.MkdirAll(p("a/b"))
	list := pl.ReadDir(dir)
	app := pl.Append(p("log"), []byte("x\n"))
	read := pl.ReadFile(p("log"), 0)
	run := pl.Do(remote.Run(remote.Cmd{Args: []string{"cmd"}}))
	ren := pl.Rename(p("lock"), p("lock2"))
	if _, err := who.Get(); err == nil {
		t.Error("a result read before Wait has a value")
	}
	if err := pl.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(link.Err(), mk.Err(), app.Err(), ren.Err()); err != nil {
		t.Fatal(err)
	}
	if got, err := who.Get(); err != nil || got != "target" {
		t.Errorf("readlink after symlink: %q, %v", got, err)
	}
	if got, _ := list.Get(); !slices.Equal(got, []string{"a", "lock"}) {
		t.Errorf("readdir: %q", got)
	}
	if got, _ := read.Get(); string(got) != "x\n" {
		t.Errorf("readfile: %q", got)
	}
	if got, _ := run.Get(); string(got) != "ran" {
		t.Errorf("run: %q", got)
	}
	want := []string{"symlink lock", "readlink lock", "mkdirall b", "readdir " + filepath.Base(dir), "append log", "readfile log", "run cmd", "rename lock"}
	if !slices.Equal(h.calls, want) {
		t.Errorf("calls\n%q\nwant\n%q", h.calls, want)
	}
	if r := pl.Lstat(dir); r.Err() == nil {
		t.Errorf("an operation added after Wait: %v, want an error", r.Err())
	}

	// ctx ends during the second operation: the third never starts.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	h = &dirHost{during: func(call string) {
		if call == "lstat lock2" {
			cancel()
		}
	}}
	pl = remote.NewPipeline(h)
	first := pl.Lstat(p("a"))
	second := pl.Lstat(p("lock2"))
	third := pl.Remove(p("lock2"))
	if err := pl.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait: %v, want context.Canceled", err)
	}
	if first.Err() != nil || second.Err() != nil || !errors.Is(third.Err(), context.Canceled) {
		t.Errorf("outcomes %v, %v, %v: want the first two done, the third cancelled", first.Err(), second.Err(), third.Err())
	}
	if _, err := os.Lstat(p("lock2")); err != nil {
		t.Errorf("the cancelled remove ran: %v", err)
	}
}
