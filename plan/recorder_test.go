package plan

import (
	"context"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetdeploy/fleetdeploy/remote"
	"github.com/fleetdeploy/fleetdeploy/steps"
)

// recorder is a fake host that records every request that changes it,
// rendered as remote.Call renders it (the rendering a dry run prints), and
// keeps its symlinks in a map, enough for the lock and the swap to read back
// what was written. Its reads find nothing else. before, when set, runs before
// each recorded request and may fail it.
type recorder struct {
	name string

	mu     sync.Mutex
	calls  []string
	links  map[string]string // path -> target
	dirs   map[string][]string
	before func(c remote.Call) error
	// running, when set, runs in each command with its context (to hang
	// until cancelled) and may fail it.
	running func(ctx context.Context, c remote.Cmd) error
}

func newRecorder(name string) *recorder {
	return &recorder{name: name, links: map[string]string{}, dirs: map[string][]string{}}
}

// do records c, after before has had its say.
func (r *recorder) do(c remote.Call) error {
	r.mu.Lock()
	before := r.before
	r.mu.Unlock()
	if before != nil {
		if err := before(c); err != nil {
			r.mu.Lock()
			r.calls = append(r.calls, "FAILED "+c.String())
			r.mu.Unlock()
			return err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, c.String())
	return nil
}

// recorded returns the requests so far.
func (r *recorder) recorded() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

func (r *recorder) Name() string { return r.name }

func (r *recorder) Run(ctx context.Context, c remote.Cmd) ([]byte, error) {
	if c.Stdin != nil {
		io.Copy(io.Discard, c.Stdin)
	}
	r.mu.Lock()
	running := r.running
	r.mu.Unlock()
	if running != nil {
		if err := running(ctx, c); err != nil {
			r.mu.Lock()
			r.calls = append(r.calls, "FAILED "+remote.Run(c).String())
			r.mu.Unlock()
			return nil, err
		}
	}
	if err := r.do(remote.Run(c)); err != nil {
		return nil, err
	}
	if c.Script != nil && c.Script.Name == "finish" {
		r.finish(c.Params)
	}
	if c.Script != nil && c.Script.Name == "lock" {
		r.lock(c.Params)
	}
	return nil, nil
}

// lock takes the lock as the lock script does (the test's hosts are never
// locked by others).
func (r *recorder) lock(ps []remote.Param) {
	var root, holder string
	for _, p := range ps {
		switch p.Name {
		case "root":
			root = p.Value
		case "holder":
			holder = p.Value
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.links[steps.Layout{Root: root}.Lock()] = holder
}

// finish does to the links what the finish script does: remove the staged
// links named, and the lock when it holds the text given.
func (r *recorder) finish(ps []remote.Param) {
	var root string
	for _, p := range ps {
		if p.Name == "root" {
			root = p.Value
		}
	}
	l := steps.Layout{Root: root}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range ps {
		switch {
		case p.Name == "unstage" && p.Value == "next":
			delete(r.links, l.Next())
		case p.Name == "unstage" && p.Value == "back":
			delete(r.links, l.Back())
		case p.Name == "lock" && r.links[l.Lock()] == p.Value:
			delete(r.links, l.Lock())
		}
	}
}

func (r *recorder) ReadFile(context.Context, string, int64) ([]byte, error) {
	return nil, fs.ErrNotExist
}
func (r *recorder) ReadTail(context.Context, string, int64) ([]byte, error) {
	return nil, fs.ErrNotExist
}
func (r *recorder) WriteFile(_ context.Context, p string, d []byte, _ fs.FileMode) error {
	return r.do(remote.Call{Method: remote.MethodWrite, Path: p, Arg: string(d)})
}
func (r *recorder) AppendFile(_ context.Context, p string, d []byte) error {
	return r.do(remote.Call{Method: remote.MethodAppend, Path: p, Arg: string(d)})
}

func (r *recorder) Symlink(_ context.Context, target, p string) error {
	r.mu.Lock()
	_, exists := r.links[p]
	r.mu.Unlock()
	if exists {
		return fs.ErrExist
	}
	if err := r.do(remote.Call{Method: remote.MethodSymlink, Path: p, Arg: target}); err != nil {
		return err
	}
	r.mu.Lock()
	r.links[p] = target
	r.mu.Unlock()
	return nil
}

func (r *recorder) Readlink(_ context.Context, p string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.links[p]
	if !ok {
		return "", fs.ErrNotExist
	}
	return t, nil
}

func (r *recorder) Rename(_ context.Context, a, b string) error {
	if err := r.do(remote.Call{Method: remote.MethodRename, Path: a, Arg: b}); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.links[a]; ok {
		r.links[b] = t
		delete(r.links, a)
	}
	return nil
}

func (r *recorder) Remove(_ context.Context, p string) error {
	if err := r.do(remote.Call{Method: remote.MethodRemove, Path: p}); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.links, p)
	return nil
}

func (r *recorder) MkdirAll(context.Context, string) error { return nil }

func (r *recorder) Lstat(_ context.Context, p string) (fs.FileInfo, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.links[p]; ok {
		return fakeInfo{name: path.Base(p), mode: fs.ModeSymlink}, nil
	}
	if _, ok := r.dirs[p]; ok {
		return fakeInfo{name: path.Base(p), mode: fs.ModeDir}, nil
	}
	return nil, fs.ErrNotExist
}

func (r *recorder) ReadDir(_ context.Context, p string) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	names, ok := r.dirs[p]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return slices.Clone(names), nil
}

func (r *recorder) Close() error { return nil }

type fakeInfo struct {
	name string
	mode fs.FileMode
}

func (f fakeInfo) Name() string       { return f.name }
func (f fakeInfo) Size() int64        { return 0 }
func (f fakeInfo) Mode() fs.FileMode  { return f.mode }
func (f fakeInfo) ModTime() time.Time { return time.Time{} }
func (f fakeInfo) IsDir() bool        { return f.mode.IsDir() }
func (f fakeInfo) Sys() any           { return nil }

var _ remote.Host = (*recorder)(nil)

// expected lists what a host's recorder must have seen after ops ran: each
// op's calls in order (the calls of a Together in any order: sorted here,
// and compareCalls sorts the recorded ones the same way).
type group []string

// compareCalls checks that got holds exactly the groups of want, in order,
// each group's calls in any order.
func compareCalls(t *testing.T, host string, want []group, got []string) {
	t.Helper()
	i := 0
	for _, g := range want {
		if i+len(g) > len(got) {
			t.Errorf("%s: recorded %d requests, plan has more:\nwant %q\ngot  %q", host, len(got), want, got)
			return
		}
		a, b := slices.Sorted(slices.Values(g)), slices.Sorted(slices.Values(got[i:i+len(g)]))
		if !slices.Equal(a, b) {
			t.Errorf("%s: request %d:\nplanned  %s\nexecuted %s", host, i, strings.Join(a, "\n         "), strings.Join(b, "\n         "))
		}
		i += len(g)
	}
	if i != len(got) {
		t.Errorf("%s: requests beyond the plan: %q", host, got[i:])
	}
}
