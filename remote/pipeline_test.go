package remote_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetdeploy/fleetdeploy/internal/rtt"
	"github.com/fleetdeploy/fleetdeploy/internal/sshtest"
	"github.com/fleetdeploy/fleetdeploy/remote"
)

// oneWay is the delay the counting link adds to everything a host sends:
// far above the work on either end, so that what it counts is round trips.
const oneWay = 150 * time.Millisecond

// counted is a connection whose round trips are counted (internal/rtt),
// and a folder on its host to work in.
type counted struct {
	c    *remote.Client
	link *rtt.Link
	dir  string
}

// dialCounted connects to h through a counting link.
func dialCounted(t *testing.T, h host, grace time.Duration) counted {
	t.Helper()
	link := &rtt.Link{OneWay: oneWay}
	d := remote.NewDialer(remote.DialerOptions{Wrap: link.Wrap})
	t.Cleanup(func() { d.Close() })
	cfg := h.cfg
	cfg.KeepaliveInterval = time.Hour // no keepalive in the counts
	cfg.StopGrace = grace
	c, err := d.Dial(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return counted{c, link, h.dir}
}

// count returns the round trips f waited for. First it lets every answer
// still due arrive (the host answers SFTP requests in order, so an Lstat's
// answer comes after them): a CLOSE sent and never waited for must not
// land in the count.
func (k counted) count(t *testing.T, f func()) int {
	t.Helper()
	if _, err := k.c.Lstat(t.Context(), "/"); err != nil {
		t.Fatal(err)
	}
	k.link.Reset()
	f()
	return k.link.Waits()
}

// sh runs a shell script on the host, in its folder, as the login user.
func (k counted) sh(t *testing.T, script string) string {
	t.Helper()
	out, err := k.c.Run(t.Context(), remote.Cmd{Args: []string{"sh", "-c", `set -e; cd "$1"; ` + script, "sh", k.dir}})
	if err != nil {
		t.Fatalf("%s: %v", script, err)
	}
	return string(out)
}

func (k counted) p(name string) string { return path.Join(k.dir, name) }

// setUp makes the tree the tests read: a deploy root's folders, files, a
// FIFO, links, a folder of 250 names.
func (k counted) setUp(t *testing.T) {
	t.Helper()
	if err := k.c.MkdirAll(t.Context(), k.dir); err != nil {
		t.Fatal(err)
	}
	k.sh(t, `mkdir -p builds/a builds/b builds/c staging pending big
		: > builds/a/x; : > builds/b/y
		printf 'one\ntwo\n' > history
		printf 'hello\n' > state
		printf 'cut' > cut
		: > empty
		printf 'read only\n' > ro; chmod 0444 ro
		mkfifo fifo; ln -s fifo fifolink; ln -s state statelink
		i=0; while [ $i -lt 250 ]; do : > big/n$i; i=$((i+1)); done`)
}

func want[T any](t *testing.T, what string, r *remote.Result[T]) T {
	t.Helper()
	v, err := r.Get()
	if err != nil {
		t.Errorf("%s: %v", what, err)
	}
	return v
}

// The lead's deploy takes the lock and reads the state under it in one
// exchange: a Symlink, then reads of what it made and of the root. Every
// request's first packet goes out in the order given, so the Readlink sees
// the link the Symlink made before it; the whole pipeline costs two round
// trips (a ReadDir's second, a ReadTail's and a ReadFile's READ), on real
// OpenSSH and on the sandbox's server.
func TestPipelineRoundTrips(t *testing.T) {
	for name, start := range hosts(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			k := dialCounted(t, start(t), time.Second)
			k.setUp(t)

			var p *remote.Pipeline
			var link *remote.Result[struct{}]
			var who *remote.Result[string]
			var stats []*remote.Result[fs.FileInfo]
			var dirs []*remote.Result[[]string]
			var hist, state *remote.Result[[]byte]
			n := k.count(t, func() {
				p = remote.NewPipeline(k.c)
				link = p.Symlink("deploy by me", k.p("lock"))
				who = p.Readlink(k.p("lock"))
				for _, s := range []string{"lock", "builds", "staging", "pending", "history", "state", "fifo", "none"} {
					stats = append(stats, p.Lstat(k.p(s)))
				}
				for _, d := range []string{"builds", "staging", "pending"} {
					dirs = append(dirs, p.ReadDir(k.p(d)))
				}
				hist = p.ReadTail(k.p("history"), 4)
				state = p.ReadFile(k.p("state"), 0)
				if err := p.Wait(t.Context()); err != nil {
					t.Fatal(err)
				}
			})
			t.Logf("lock + state read (%d requests): %d round trips", p.Len(), n)
			if n > 2 { // fewer: a wait cut short because this side was slow to start it (CI load), not a saving
				t.Errorf("lock + state read: %d round trips, want 2", n)
			}
			want(t, "symlink", link)
			if got := want(t, "readlink", who); got != "deploy by me" {
				t.Errorf("readlink after the symlink in the same pipeline: %q", got)
			}
			modes := []fs.FileMode{fs.ModeSymlink, fs.ModeDir, fs.ModeDir, fs.ModeDir, 0, 0, fs.ModeNamedPipe}
			for i, m := range modes {
				if fi := want(t, "lstat", stats[i]); fi != nil && fi.Mode().Type() != m {
					t.Errorf("lstat %d: mode %v, want type %v", i, fi.Mode(), m)
				}
			}
			if _, err := stats[7].Get(); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("lstat of nothing: %v, want fs.ErrNotExist", err)
			}
			if got := want(t, "readdir", dirs[0]); !slices.Equal(got, []string{"a", "b", "c"}) {
				t.Errorf("builds: %q", got)
			}
			if got := want(t, "readdir", dirs[1]); len(got) != 0 {
				t.Errorf("staging: %q", got)
			}
			if got := want(t, "readtail", hist); string(got) != "two\n" {
				t.Errorf("history tail: %q", got)
			}
			if got := want(t, "readfile", state); string(got) != "hello\n" {
				t.Errorf("state: %q", got)
			}

			// Each operation alone: its round trips, and what it did.
			ro := 2 // the login user may write the read-only file (root, on the sandbox)
			if name == "openssh" {
				ro = 3 // opened again for reading once LSTAT said it is a regular file
			}
			for _, tc := range []struct {
				name  string
				trips int
				op    func(ctx context.Context) error
			}{
				{"Lstat", 1, func(ctx context.Context) error { _, err := k.c.Lstat(ctx, k.p("state")); return err }},
				{"Readlink", 1, func(ctx context.Context) error { _, err := k.c.Readlink(ctx, k.p("statelink")); return err }},
				{"Symlink", 1, func(ctx context.Context) error { return k.c.Symlink(ctx, "x", k.p("newlink")) }},
				{"Rename", 1, func(ctx context.Context) error { return k.c.Rename(ctx, k.p("newlink"), k.p("renamed")) }},
				{"Remove a link", 1, func(ctx context.Context) error { return k.c.Remove(ctx, k.p("renamed")) }},
				{"Remove a folder", 1, func(ctx context.Context) error { return k.c.Remove(ctx, k.p("builds/c")) }},
				{"MkdirAll", 1, func(ctx context.Context) error { return k.c.MkdirAll(ctx, k.p("new/deep/folder")) }},
				{"ReadDir of 3", 2, func(ctx context.Context) error { _, err := k.c.ReadDir(ctx, k.p("builds")); return err }},
				{"ReadDir of 250", 3, func(ctx context.Context) error {
					names, err := k.c.ReadDir(ctx, k.p("big"))
					if err == nil && (len(names) != 250 || !slices.IsSorted(names) || names[0] != "n0") {
						err = fmt.Errorf("%d names: %q...", len(names), names[:min(3, len(names))])
					}
					return err
				}},
				{"ReadFile", 2, func(ctx context.Context) error { _, err := k.c.ReadFile(ctx, k.p("state"), 0); return err }},
				{"ReadFile of an empty file", 1, func(ctx context.Context) error { _, err := k.c.ReadFile(ctx, k.p("empty"), 0); return err }},
				{"ReadFile of a read-only file", ro, func(ctx context.Context) error {
					b, err := k.c.ReadFile(ctx, k.p("ro"), 0)
					if err == nil && string(b) != "read only\n" {
						err = fmt.Errorf("read %q", b)
					}
					return err
				}},
				{"ReadTail", 2, func(ctx context.Context) error { _, err := k.c.ReadTail(ctx, k.p("history"), 100); return err }},
				{"Append", 2, func(ctx context.Context) error { return k.c.AppendFile(ctx, k.p("history"), []byte("three\n")) }},
				{"Append to a new file", 2, func(ctx context.Context) error { return k.c.AppendFile(ctx, k.p("new/log"), []byte("first\n")) }},
				{"Append after a cut line", 3, func(ctx context.Context) error { return k.c.AppendFile(ctx, k.p("cut"), []byte("next\n")) }},
				{"WriteFile", 3, func(ctx context.Context) error { return k.c.WriteFile(ctx, k.p("written"), []byte("data\n"), 0o600) }},
				{"ReadFile of a FIFO", 1, func(ctx context.Context) error {
					if _, err := k.c.ReadFile(ctx, k.p("fifo"), 0); err == nil || !strings.Contains(err.Error(), "not a regular file (a FIFO)") {
						return fmt.Errorf("got %v, want it refused", err)
					}
					return nil
				}},
			} {
				var err error
				n := k.count(t, func() { err = tc.op(t.Context()) })
				t.Logf("%-28s %d round trips", tc.name, n)
				if err != nil {
					t.Errorf("%s: %v", tc.name, err)
				}
				if n > tc.trips { // fewer: see the lock + state read above
					t.Errorf("%s: %d round trips, want %d", tc.name, n, tc.trips)
				}
			}
			got := k.sh(t, `cat history; echo --; cat new/log; echo --; cat cut; echo --; cat written; ls -l written | cut -c1-10; readlink newlink renamed || echo gone; ls builds; [ -d new/deep/folder ] && echo made`)
			if w := "one\ntwo\nthree\n--\nfirst\n--\ncut\nnext\n--\ndata\n-rw-------\ngone\na\nb\nmade\n"; got != w {
				t.Errorf("the host holds\n%s\nwant\n%s", got, w)
			}
		})
	}
}

// Reads refuse what is not a regular file at once, the session usable
// after each (OpenSSH's sftp-server does one request at a time: an OPEN
// stuck on a FIFO would hold every one after it); errors are the fs errors
// callers test for; limits hold; a large file arrives intact.
func TestPipelineErrors(t *testing.T) {
	for name, start := range hosts(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			k := dialCounted(t, start(t), time.Second)
			k.setUp(t)
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second) // a hung session fails, not hangs
			defer cancel()
			p := remote.NewPipeline(k.c)
			type refusal struct {
				what string
				r    *remote.Result[[]byte]
				want string
			}
			var refused []refusal
			for _, s := range []struct{ file, kind string }{{"fifo", "a FIFO"}, {"fifolink", "a symlink"}, {"statelink", "a symlink"}, {"builds", "a folder"}} {
				refused = append(refused,
					refusal{"ReadFile " + s.file, p.ReadFile(k.p(s.file), 0), "not a regular file (" + s.kind + ")"},
					refusal{"ReadTail " + s.file, p.ReadTail(k.p(s.file), 10), "not a regular file (" + s.kind + ")"})
			}
			appendFIFO := p.Append(k.p("fifo"), []byte("x\n"))
			appendLink := p.Append(k.p("fifolink"), []byte("x\n"))
			after := p.ReadFile(k.p("state"), 0)
			small := p.ReadFile(k.p("history"), 4)
			missing := []*remote.Result[[]byte]{p.ReadFile(k.p("none"), 0), p.ReadTail(k.p("none"), 10)}
			missingDir := p.ReadDir(k.p("none"))
			missingLink := p.Readlink(k.p("none"))
			notLink := p.Readlink(k.p("state"))
			rmMissing := p.Remove(k.p("none"))
			rmFull := p.Remove(k.p("builds"))
			linkExists := p.Symlink("x", k.p("state"))
			renameMissing := p.Rename(k.p("none"), k.p("other"))
			mkdirOnFile := p.MkdirAll(k.p("state/sub"))
			appendNoFolder := p.Append(k.p("none/log"), []byte("x\n"))
			if err := p.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			for _, r := range refused {
				if _, err := r.r.Get(); err == nil || !strings.Contains(err.Error(), r.want) {
					t.Errorf("%s: got %v, want %q", r.what, err, r.want)
				}
			}
			for _, r := range []*remote.Result[struct{}]{appendFIFO, appendLink} {
				if err := r.Err(); err == nil || !strings.Contains(err.Error(), "not a regular file") {
					t.Errorf("append to a FIFO: %v, want it refused", err)
				}
			}
			if b, err := after.Get(); err != nil || string(b) != "hello\n" {
				t.Errorf("a read after the refusals: %q, %v", b, err)
			}
			if _, err := small.Get(); err == nil || !strings.Contains(err.Error(), "over the 4 bytes limit") {
				t.Errorf("a read over its limit: %v", err)
			}
			for _, err := range []error{missing[0].Err(), missing[1].Err(), missingDir.Err(), missingLink.Err(), rmMissing.Err(), renameMissing.Err(), appendNoFolder.Err()} {
				if !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("got %v, want fs.ErrNotExist", err)
				}
			}
			for what, err := range map[string]error{"readlink of a file": notLink.Err(), "remove of a full folder": rmFull.Err(), "symlink over a file": linkExists.Err(), "mkdir below a file": mkdirOnFile.Err()} {
				if err == nil || errors.Is(err, fs.ErrNotExist) {
					t.Errorf("%s: %v, want an error other than fs.ErrNotExist", what, err)
				}
			}
			if got := k.sh(t, `cat state; ls builds`); got != "hello\na\nb\nc\n" {
				t.Errorf("the failed requests changed the host: %q", got)
			}

			// A file over 16 MiB, read with the limit raised, arrives whole.
			sum := strings.Fields(k.sh(t, `head -c 17825792 /dev/urandom > large; sha256sum large`))[0]
			if _, err := k.c.ReadFile(ctx, k.p("large"), 0); err == nil || !strings.Contains(err.Error(), "over the 16 MiB limit") {
				t.Errorf("17 MiB with the default limit: %v", err)
			}
			var b []byte
			var err error
			n := k.count(t, func() { b, err = k.c.ReadFile(ctx, k.p("large"), 32<<20) })
			got := sha256.Sum256(b)
			if err != nil || hex.EncodeToString(got[:]) != sum {
				t.Fatalf("17 MiB: %d bytes, %v; not what the host holds", len(b), err)
			}
			t.Logf("ReadFile of 17 MiB: %d round trips", n)
			if n > 12 { // 2 MiB in flight: 9 windows, and the LSTAT and OPEN
				t.Errorf("ReadFile of 17 MiB: %d round trips, want at most 12", n)
			}
			if tail, err := k.c.ReadTail(ctx, k.p("large"), 10); err != nil || len(tail) != 10 {
				t.Errorf("ReadTail of 17 MiB: %d bytes, %v", len(tail), err)
			}
		})
	}
}

// A cancelled pipeline sends nothing new and stops waiting for a silent
// host once the stop grace has passed; the session works again once the
// host does.
func TestPipelineCancelled(t *testing.T) {
	t.Parallel()
	f := sshtest.Start(t, 1)
	h := f.Hosts[0]
	const grace = 300 * time.Millisecond
	cfg := remote.Config{Name: h.Name, Addr: h.Name, User: f.User, Identity: f.Identity, KnownHosts: f.KnownHosts, StopGrace: grace}
	k := dialCounted(t, host{cfg, h.Root}, grace)
	k.setUp(t)

	// Cancelled before Wait: nothing is sent.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	p := remote.NewPipeline(k.c)
	r := p.Symlink("x", k.p("never"))
	if err := p.Wait(ctx); !errors.Is(err, context.Canceled) || !errors.Is(r.Err(), context.Canceled) {
		t.Errorf("Wait with a cancelled context: %v, %v", err, r.Err())
	}

	h.Freeze()
	thawed := false
	defer func() {
		if !thawed {
			h.Thaw()
		}
	}()
	ctx, cancel = context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	p = remote.NewPipeline(k.c)
	read := p.ReadFile(k.p("state"), 0)
	dir := p.ReadDir(k.p("builds"))
	begin := time.Now()
	err := p.Wait(ctx)
	took := time.Since(begin)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(read.Err(), context.DeadlineExceeded) || !errors.Is(dir.Err(), context.DeadlineExceeded) {
		t.Errorf("Wait on a silent host: %v (read %v, readdir %v), want the deadline", err, read.Err(), dir.Err())
	}
	if took < 200*time.Millisecond+grace-50*time.Millisecond || took > 200*time.Millisecond+grace+2*time.Second {
		t.Errorf("Wait returned after %v; want the deadline and the %v grace", took, grace)
	}
	h.Thaw()
	thawed = true
	if _, err := k.c.ReadFile(t.Context(), k.p("never"), 0); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the cancelled symlink: %v, want none made", err)
	}
	if b, err := k.c.ReadFile(t.Context(), k.p("state"), 0); err != nil || string(b) != "hello\n" {
		t.Errorf("after the host came back: %q, %v", b, err)
	}
}

// Pipelines from many goroutines share one session.
func TestPipelinesConcurrent(t *testing.T) {
	t.Parallel()
	c, h := dialOpenSSH(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			p := remote.NewPipeline(c)
			f := path.Join(h.Root, fmt.Sprint("f", i))
			w := p.WriteFile(f, []byte(strings.Repeat("x", i*50000)), 0o644)
			a := p.Append(f+".log", []byte("line\n"))
			if err := p.Wait(t.Context()); err != nil {
				errs <- err
				return
			}
			if err := errors.Join(w.Err(), a.Err()); err != nil {
				errs <- err
				return
			}
			b, err := c.ReadFile(t.Context(), f, 0)
			if err == nil && len(b) != i*50000 {
				err = fmt.Errorf("%s: %d bytes", f, len(b))
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// Do sends a Call as remote.Do would, a command included (on a channel of
// its own, alongside the file requests).
func TestPipelineDo(t *testing.T) {
	for name, start := range hosts(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			k := dialCounted(t, start(t), time.Second)
			if err := k.c.MkdirAll(t.Context(), k.dir); err != nil {
				t.Fatal(err)
			}
			var out *remote.Result[[]byte]
			var calls []*remote.Result[[]byte]
			// Counted by the time taken, not by the reads that waited: the
			// command's answer lands between the append's two, and splits
			// the read that waits for the second into two shorter ones.
			var took time.Duration
			k.count(t, func() {
				begin := time.Now()
				defer func() { took = time.Since(begin) }()
				p := remote.NewPipeline(k.c)
				out = p.Do(remote.Run(remote.Cmd{Args: []string{"echo", "hi"}}))
				for _, c := range []remote.Call{
					{Method: remote.MethodSymlink, Path: k.p("l1"), Arg: "t1"},
					{Method: remote.MethodRename, Path: k.p("l1"), Arg: k.p("l2")},
					{Method: remote.MethodAppend, Path: k.p("log"), Arg: "a\n"},
					{Method: remote.MethodRemove, Path: k.p("gone")},
				} {
					calls = append(calls, p.Do(c))
				}
				if err := p.Wait(t.Context()); err != nil {
					t.Fatal(err)
				}
			})
			n := int((took + oneWay/2) / oneWay)
			t.Logf("a command and four requests: %d round trips (%v)", n, took.Round(time.Millisecond))
			if n != 2 {
				t.Errorf("a command and four requests: %d round trips, want 2 (the append's)", n)
			}
			if b, err := out.Get(); err != nil || string(b) != "hi\n" {
				t.Errorf("command: %q, %v", b, err)
			}
			for i, r := range calls[:3] {
				if err := r.Err(); err != nil {
					t.Errorf("call %d: %v", i, err)
				}
			}
			if !errors.Is(calls[3].Err(), fs.ErrNotExist) {
				t.Errorf("remove of nothing: %v", calls[3].Err())
			}
			if got, err := k.c.Readlink(t.Context(), k.p("l2")); err != nil || got != "t1" {
				t.Errorf("the renamed link: %q, %v", got, err)
			}
		})
	}
}
