package build

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// seams carries a test's clock and open counter into every Make it runs.
type seams struct {
	now   time.Time // zero: the real clock
	opens int       // files of a tree opened for reading
}

// opts returns o with the seams set.
func (s *seams) opts(o Options) Options {
	if !s.now.IsZero() {
		now := s.now
		o.now = func() time.Time { return now }
	}
	o.open = func(name string) (*os.File, error) {
		s.opens++
		return defaultOpen(name)
	}
	return o
}

// later is an hour from now: files written by a test count as settled.
func later() *seams { return &seams{now: time.Now().Add(time.Hour)} }

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func mustMake(t *testing.T, o Options) *Artifact {
	t.Helper()
	a, err := Make(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Remove() })
	return a
}

func sum(t *testing.T, a *Artifact, path string) string {
	t.Helper()
	e, ok := a.Manifest.Get(path)
	if !ok {
		t.Fatalf("%s not in the manifest", path)
	}
	return e.Sum
}

func sampleTree(t *testing.T) string {
	src := t.TempDir()
	mkfile(t, src, "a/b", "one", 0o644)
	mkfile(t, src, "a.b", "dot sorts before slash", 0o644)
	mkfile(t, src, "bin/run", "#!/bin/sh\n", 0o755)
	mkfile(t, src, "big.bin", strings.Repeat("0123456789", 50000), 0o600)
	mkfile(t, src, strings.Repeat("long/", 30)+"name.php", "<?php", 0o644)
	if err := os.Symlink("../a/b", filepath.Join(src, "bin", "link")); err != nil {
		t.Fatal(err)
	}
	return src
}

func payloadBytes(t *testing.T, a *Artifact, tr Transfer, gz bool) []byte {
	t.Helper()
	p, err := a.Payload(tr, gz)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(p.Path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestPayloadSameWithOrWithoutCache(t *testing.T) {
	src, cache := sampleTree(t), t.TempDir()
	fx := later() // the files count as old: cached
	plain := mustMake(t, fx.opts(Options{Source: src}))
	mustMake(t, fx.opts(Options{Source: src, CacheDir: cache}))
	warm := mustMake(t, fx.opts(Options{Source: src, CacheDir: cache}))
	if plain.Checksum != warm.Checksum {
		t.Fatalf("checksum %s with the cache, %s without", warm.Checksum, plain.Checksum)
	}
	old := &Manifest{}
	for _, e := range plain.Manifest.Entries {
		if e.Path == "a/b" {
			e.Sum = sha("before")
		}
		old.Entries = append(old.Entries, e)
	}
	for _, tr := range []Transfer{plain.Manifest.Diff(nil, nil, nil, nil), plain.Manifest.Diff(old, nil, nil, nil)} {
		for _, gz := range []bool{false, true} {
			if !bytes.Equal(payloadBytes(t, plain, tr, gz), payloadBytes(t, warm, tr, gz)) {
				t.Errorf("full %v gzip %v: payloads differ", tr.Full, gz)
			}
		}
	}
}

func TestUnchangedTreeReadsNoFile(t *testing.T) {
	src, cache := sampleTree(t), t.TempDir()
	fx := later()
	mustMake(t, fx.opts(Options{Source: src, CacheDir: cache}))
	if fx.opens != 5 {
		t.Errorf("first build read %d files, want 5", fx.opens)
	}
	fx.opens = 0
	mustMake(t, fx.opts(Options{Source: src, CacheDir: cache}))
	if fx.opens != 0 {
		t.Errorf("second build of an unchanged tree read %d files", fx.opens)
	}
	mkfile(t, src, "a/b", "two", 0o644)
	a := mustMake(t, fx.opts(Options{Source: src, CacheDir: cache}))
	if fx.opens != 1 || sum(t, a, "a/b") != sha("two") {
		t.Errorf("after changing a/b: %d files read, a/b %s", fx.opens, sum(t, a, "a/b"))
	}
	c := loadHashCache(cache, src, time.Now())
	if len(c.old) != 5 {
		t.Errorf("cache holds %d entries, want 5", len(c.old))
	}
	for p, want := range map[string]os.FileMode{c.path: 0o600, filepath.Dir(c.path): 0o700 | os.ModeDir} {
		if st, err := os.Stat(p); err != nil || st.Mode() != want {
			t.Errorf("%s: %v %v, want %v", p, st.Mode(), err, want)
		}
	}
}

func TestPayloadFailsOnChangedFile(t *testing.T) {
	for name, change := range map[string]func(p string) error{
		"same size": func(p string) error { return os.WriteFile(p, []byte("TWO"), 0o644) },
		"longer":    func(p string) error { return os.WriteFile(p, []byte("two!"), 0o644) },
		"removed":   os.Remove,
		"symlink":   func(p string) error { os.Remove(p); return os.Symlink("other", p) },
		"fifo":      func(p string) error { os.Remove(p); return syscall.Mkfifo(p, 0o644) },
	} {
		t.Run(name, func(t *testing.T) {
			src := t.TempDir()
			mkfile(t, src, "other", "two", 0o644)
			mkfile(t, src, "x/f.txt", "two", 0o644)
			a := mustMake(t, Options{Source: src})
			if err := change(filepath.Join(src, "x", "f.txt")); err != nil {
				t.Fatal(err)
			}
			_, err := a.Payload(a.Manifest.Diff(nil, nil, nil, nil), false)
			if err == nil || err.Error() != "x/f.txt changed since the build was made: run again (if a process keeps writing there, exclude that path)" {
				t.Fatalf("got %v", err)
			}
			if left, _ := filepath.Glob(filepath.Join(a.dir, "payload-*")); len(left) != 0 {
				t.Errorf("failed payload left behind: %v", left)
			}
		})
	}
}

func TestCacheDistrustsRewrittenFile(t *testing.T) {
	src, cache := t.TempDir(), t.TempDir()
	mkfile(t, src, "f.txt", "aaaa", 0o644)
	p := filepath.Join(src, "f.txt")
	fx := later() // so only the ctime can tell
	mustMake(t, fx.opts(Options{Source: src, CacheDir: cache}))
	st, _ := os.Lstat(p)
	before, _ := statID(st)
	mkfile(t, src, "f.txt", "bbbb", 0o644)
	// Same size, mtime restored; ctime is the kernel's. A coarse clock may
	// give it the old value within one tick: touch it again until it moves.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := os.Chtimes(p, st.ModTime(), st.ModTime()); err != nil {
			t.Fatal(err)
		}
		st2, _ := os.Lstat(p)
		after, _ := statID(st2)
		if after.size != before.size || after.mtime != before.mtime || after.ino != before.ino {
			t.Fatalf("not the same size, mtime and inode: %+v %+v", before, after)
		}
		if after.ctime != before.ctime {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("ctime never moved")
		}
	}
	if a := mustMake(t, fx.opts(Options{Source: src, CacheDir: cache})); sum(t, a, "f.txt") != sha("bbbb") {
		t.Error("trusted the cache entry of a rewritten file")
	}
}

// writeCache stores one entry for path in the cache, as if hashed at hashed.
func writeCache(t *testing.T, cache, src, path, sum string, hashed time.Time) {
	t.Helper()
	st, err := os.Lstat(filepath.Join(src, path))
	if err != nil {
		t.Fatal(err)
	}
	id, _ := statID(st)
	c := loadHashCache(cache, src, time.Now())
	os.MkdirAll(filepath.Dir(c.path), 0o700)
	line := fmt.Sprintf("%s%d\n%d\t%d\t%d\t%d\t%d\t%s\t%s\n", hashCacheHeader, hashed.UnixNano(), id.dev, id.ino, id.size, id.mtime, id.ctime, sum, path)
	if err := os.WriteFile(c.path, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestRacyEntriesNeitherStoredNorTrusted(t *testing.T) {
	src, cache := t.TempDir(), t.TempDir()
	mkfile(t, src, "f.txt", "fresh", 0o644)
	fx := &seams{}
	// Hashed within 2 s of its mtime and ctime: not stored.
	mustMake(t, fx.opts(Options{Source: src, CacheDir: cache}))
	if data, _ := os.ReadFile(loadHashCache(cache, src, time.Now()).path); strings.Contains(string(data), "f.txt") {
		t.Errorf("stored an entry for a file written just now:\n%s", data)
	}
	mustMake(t, fx.opts(Options{Source: src, CacheDir: cache}))
	if fx.opens != 2 {
		t.Errorf("a file written just now was read %d times by two builds, want 2", fx.opens)
	}
	// An entry stored against the rule (a wrong sum, to tell) is not trusted.
	st, _ := os.Lstat(filepath.Join(src, "f.txt"))
	id, _ := statID(st)
	fx = later()
	writeCache(t, cache, src, "f.txt", sha("wrong"), time.Unix(0, id.ctime).Add(time.Second))
	if a := mustMake(t, fx.opts(Options{Source: src, CacheDir: cache})); sum(t, a, "f.txt") != sha("fresh") {
		t.Error("trusted an entry hashed within 2 s of the file's ctime")
	}
	// A wrong entry that passes the rule: the payload refuses, no wrong build.
	writeCache(t, cache, src, "f.txt", sha("wrong"), time.Unix(0, id.ctime).Add(3*time.Second))
	a := mustMake(t, fx.opts(Options{Source: src, CacheDir: cache}))
	if sum(t, a, "f.txt") != sha("wrong") {
		t.Fatal("the test's cache entry was not used")
	}
	if _, err := a.Payload(a.Manifest.Diff(nil, nil, nil, nil), false); err == nil || !strings.Contains(err.Error(), "changed since the build was made") {
		t.Errorf("payload of a build with a wrong cached sum: %v", err)
	}
}

func TestBadCacheIgnored(t *testing.T) {
	src := sampleTree(t)
	fx := later()
	want := mustMake(t, fx.opts(Options{Source: src})).Checksum
	valid := func(cache string) string {
		mustMake(t, fx.opts(Options{Source: src, CacheDir: cache}))
		data, _ := os.ReadFile(loadHashCache(cache, src, time.Now()).path)
		return string(data)
	}(t.TempDir())
	for name, spoil := range map[string]func(cache, file string) error{
		"garbage":    func(_, f string) error { return os.WriteFile(f, []byte("\x00\xffnot a cache\n"), 0o600) },
		"truncated":  func(_, f string) error { return os.WriteFile(f, []byte(valid[:len(valid)-10]), 0o600) },
		"bad number": func(_, f string) error { return os.WriteFile(f, []byte(strings.Replace(valid, "\t", "\tx", 1)), 0o600) },
		"empty":      func(_, f string) error { return os.WriteFile(f, nil, 0o600) },
		"a folder":   func(_, f string) error { return os.Mkdir(f, 0o700) },
		"cache dir is a file": func(c, _ string) error {
			os.RemoveAll(filepath.Join(c, "hashes"))
			return os.WriteFile(filepath.Join(c, "hashes"), nil, 0o600)
		},
	} {
		t.Run(name, func(t *testing.T) {
			cache := t.TempDir()
			file := loadHashCache(cache, src, time.Now()).path
			os.MkdirAll(filepath.Dir(file), 0o700)
			if err := spoil(cache, file); err != nil {
				t.Fatal(err)
			}
			fx.opens = 0
			if a := mustMake(t, fx.opts(Options{Source: src, CacheDir: cache})); a.Checksum != want || fx.opens != 5 {
				t.Errorf("checksum %s (want %s), %d files read (want 5)", a.Checksum, want, fx.opens)
			}
		})
	}
}

func TestPayloadKeepsWalkOrder(t *testing.T) {
	src := t.TempDir()
	mkfile(t, src, "a/b", "1", 0o644)
	mkfile(t, src, "a.b", "2", 0o644)
	a := mustMake(t, Options{Source: src})
	p, err := a.Payload(a.Manifest.Diff(nil, nil, nil, nil), false)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(p.Path)
	var members, manifestOrder []string
	for tr := tar.NewReader(bytes.NewReader(data)); ; {
		h, err := tr.Next()
		if err != nil {
			break
		}
		members = append(members, h.Name)
	}
	for _, e := range a.Manifest.Entries {
		manifestOrder = append(manifestOrder, e.Path)
	}
	if got, want := strings.Join(members, " "), "a/ a/b a.b "+MetaSums+" "+MetaManifest; got != want {
		t.Errorf("payload members %q, want %q", got, want)
	}
	if got := strings.Join(manifestOrder, " "); got != "a a.b a/b" {
		t.Errorf("manifest order %q", got)
	}
}

func TestNoCacheForScratchCopy(t *testing.T) {
	src, cache := sampleTree(t), t.TempDir()
	fx := later()
	a := mustMake(t, fx.opts(Options{Source: src, CacheDir: cache, Commands: []string{"true"}}))
	if _, err := os.Stat(filepath.Join(cache, "hashes")); !os.IsNotExist(err) {
		t.Errorf("a build with commands used the cache: %v", err)
	}
	if want := mustMake(t, fx.opts(Options{Source: src})).Checksum; a.Checksum != want {
		t.Errorf("checksum %s, want %s", a.Checksum, want)
	}
}

// With Link, a delta carries each reused file as a hard-link entry naming its
// own path (no content), and the files sent with their content; without it,
// reused files are absent.
func TestDeltaPayloadLinksReusedFiles(t *testing.T) {
	src := sampleTree(t)
	a := mustMake(t, Options{Source: src})
	old := &Manifest{}
	for _, e := range a.Manifest.Entries {
		if e.Path == "a/b" {
			e.Sum = sha("before")
		}
		old.Entries = append(old.Entries, e)
	}
	for _, link := range []bool{false, true} {
		tr := a.Manifest.Diff(old, nil, nil, nil)
		tr.Link = link
		got := map[string]string{}
		for r := tar.NewReader(bytes.NewReader(payloadBytes(t, a, tr, false))); ; {
			h, err := r.Next()
			if err != nil {
				break
			}
			switch h.Typeflag {
			case tar.TypeLink:
				got[h.Name] = "link " + h.Linkname
			case tar.TypeReg:
				got[h.Name] = fmt.Sprintf("file %d", h.Size)
			}
		}
		if got["a/b"] != "file 3" {
			t.Errorf("link %v: changed file a/b: %q", link, got["a/b"])
		}
		want := ""
		if link {
			want = "link bin/run"
		}
		if got["bin/run"] != want {
			t.Errorf("link %v: reused file bin/run: %q, want %q", link, got["bin/run"], want)
		}
	}
}

// Two full transfers that differ in what they leave out (the seeds of a shared
// folder one host already has) get different payloads.
func TestFullPayloadsDifferByOmittedFiles(t *testing.T) {
	a := mustMake(t, Options{Source: sampleTree(t)})
	all, err := a.Payload(a.Manifest.Diff(nil, nil, nil, nil), false)
	if err != nil {
		t.Fatal(err)
	}
	some, err := a.Payload(a.Manifest.Diff(nil, nil, nil, []string{"a"}), false)
	if err != nil {
		t.Fatal(err)
	}
	if all.Sent == some.Sent || all.Path == some.Path {
		t.Errorf("full payloads with and without a/ share %s: %d and %d files", all.Path, all.Sent, some.Sent)
	}
}
