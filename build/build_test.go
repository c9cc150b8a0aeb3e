package build

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func mkfile(t *testing.T, root, rel, body string, mode os.FileMode) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
}

// entries lists the members of a full payload of a.
func entries(t *testing.T, a *Artifact) map[string]*tar.Header {
	t.Helper()
	p, err := a.Payload(a.Manifest.Diff(nil, nil, nil, nil), false)
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	tr := tar.NewReader(r)
	out := map[string]*tar.Header{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = h
	}
}

func TestMakePacksSourceWithoutExcludes(t *testing.T) {
	src := t.TempDir()
	mkfile(t, src, "index.php", "x", 0o644)
	mkfile(t, src, "bin/run", "#!/bin/sh", 0o755)
	mkfile(t, src, ".git/HEAD", "ref", 0o644)
	mkfile(t, src, "tests/a_test.php", "t", 0o644)
	mkfile(t, src, "app/tests/keep.php", "nested tests/ is not the excluded path", 0o644)
	if err := os.Symlink("../index.php", filepath.Join(src, "bin", "index")); err != nil {
		t.Fatal(err)
	}
	a, err := Make(t.Context(), Options{Source: src, Exclude: []string{".git", "tests"}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Remove()
	got := entries(t, a)
	for _, want := range []string{"index.php", "bin/", "bin/run", "bin/index", "app/tests/keep.php"} {
		if got[want] == nil {
			t.Errorf("missing %s", want)
		}
	}
	for _, gone := range []string{".git/", ".git/HEAD", "tests/", "tests/a_test.php"} {
		if got[gone] != nil {
			t.Errorf("excluded %s was packed", gone)
		}
	}
	if h := got["bin/run"]; h.Mode != 0o755 || h.Uid != 0 || h.Uname != "" {
		t.Errorf("bin/run: mode %o uid %d uname %q: want 755, no owner", h.Mode, h.Uid, h.Uname)
	}
	if h := got["bin/index"]; h.Typeflag != tar.TypeSymlink || h.Linkname != "../index.php" {
		t.Errorf("symlink not kept: %+v", h)
	}
	if !strings.HasPrefix(a.Checksum, "sha256:") || a.Files != 7 {
		t.Errorf("checksum %q files %d", a.Checksum, a.Files)
	}
}

// Version-control metadata never goes into a build made from a folder, at
// any depth, excluded or not (a web server would serve the project's
// history); build commands still see it.
func TestVersionControlLeftOut(t *testing.T) {
	src := t.TempDir()
	mkfile(t, src, "index.php", "x", 0o644)
	mkfile(t, src, ".git/HEAD", "ref", 0o644)
	mkfile(t, src, "vendor/acme/lib/.git", "gitdir: ../../../.git/modules/lib", 0o644)
	mkfile(t, src, "vendor/acme/lib/src.php", "y", 0o644)
	mkfile(t, src, "old/.svn/entries", "z", 0o644)
	mkfile(t, src, ".gitignore", "vendor/", 0o644)
	a, err := Make(t.Context(), Options{Source: src, Commands: []string{"test -f .git/HEAD && echo seen > git-was-there"}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Remove()
	got := entries(t, a)
	for _, want := range []string{"index.php", "vendor/acme/lib/src.php", ".gitignore", "git-was-there", "old/"} {
		if got[want] == nil {
			t.Errorf("missing %s", want)
		}
	}
	for name := range got {
		for _, vc := range []string{".git", ".svn"} {
			if name == vc+"/" || strings.HasPrefix(name, vc+"/") || strings.Contains(name, "/"+vc) {
				t.Errorf("%s was packed", name)
			}
		}
	}
}

func TestChecksumFollowsContentNotTime(t *testing.T) {
	src := t.TempDir()
	mkfile(t, src, "a.txt", "one", 0o644)
	a1, err := Make(t.Context(), Options{Source: src})
	if err != nil {
		t.Fatal(err)
	}
	defer a1.Remove()
	os.Chtimes(filepath.Join(src, "a.txt"), time.Now(), time.Now().Add(time.Hour))
	a2, _ := Make(t.Context(), Options{Source: src})
	defer a2.Remove()
	mkfile(t, src, "a.txt", "two", 0o644)
	a3, _ := Make(t.Context(), Options{Source: src})
	defer a3.Remove()
	if a1.Checksum != a2.Checksum {
		t.Error("checksum changed with mtime only")
	}
	if a1.Checksum == a3.Checksum {
		t.Error("checksum did not change with content")
	}
}

func TestSymlinkOutsideBuildRefused(t *testing.T) {
	for _, target := range []string{"/etc", "../../outside", "a/../../.."} {
		src := t.TempDir()
		mkfile(t, src, "a/x", "", 0o644)
		os.Symlink(target, filepath.Join(src, "a", "link"))
		_, err := Make(t.Context(), Options{Source: src})
		if err == nil || !strings.Contains(err.Error(), "outside the build") {
			t.Errorf("symlink to %s: %v", target, err)
		}
	}
}

func TestBuildCommandsRunInScratchCopy(t *testing.T) {
	src := t.TempDir()
	mkfile(t, src, "in.txt", "source", 0o644)
	a, err := Make(t.Context(), Options{Source: src, Commands: []string{"echo built > out.txt", "rm in.txt"}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Remove()
	got := entries(t, a)
	if got["out.txt"] == nil || got["in.txt"] != nil {
		t.Errorf("build commands did not shape the build: %v", got)
	}
	if _, err := os.Stat(filepath.Join(src, "in.txt")); err != nil {
		t.Error("the build changed the source folder")
	}
	_, err = Make(t.Context(), Options{Source: src, Commands: []string{"echo boom >&2; exit 3"}})
	if err == nil || !strings.Contains(err.Error(), "boom") || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("failing build command: %v", err)
	}
}

func TestCancelledBuildStopsItsProcesses(t *testing.T) {
	src := t.TempDir()
	pidfile := filepath.Join(t.TempDir(), "pid")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := Make(ctx, Options{Source: src, Commands: []string{"sleep 30 & echo $! > " + pidfile + "; wait"}})
		done <- err
	}()
	var pid int
	for pid == 0 {
		data, _ := os.ReadFile(pidfile)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(data)))
		select {
		case err := <-done:
			t.Fatalf("build ended early: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid, 0) == nil && !zombie(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("the build command's child %d outlived the cancelled build", pid)
		}
		<-time.After(10 * time.Millisecond)
	}
}

func zombie(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	_, rest, _ := strings.Cut(string(data), ") ")
	return strings.HasPrefix(rest, "Z")
}

// Folders the owner cannot write, or files the owner cannot read, are
// refused up front, all of them in one error: on a host they would leave
// a build that cannot be checked, assembled or removed.
func TestOwnerModesRefused(t *testing.T) {
	src := t.TempDir()
	for _, d := range []string{"ro", "none", "fine"} {
		os.MkdirAll(filepath.Join(src, d), 0o755)
	}
	os.WriteFile(filepath.Join(src, "fine", "a"), []byte("a"), 0o644)
	os.WriteFile(filepath.Join(src, "secret"), []byte("s"), 0o200)
	os.WriteFile(filepath.Join(src, "ro", "f"), []byte("f"), 0o444)
	os.Chmod(filepath.Join(src, "ro"), 0o555)
	os.Chmod(filepath.Join(src, "none"), 0o000)
	defer os.Chmod(filepath.Join(src, "ro"), 0o755)
	defer os.Chmod(filepath.Join(src, "none"), 0o755)
	_, err := Make(t.Context(), Options{Source: src, TempDir: t.TempDir()})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"none/ (0000)", "ro/ (0555)", "secret (0200)", "chmod -R u+rwX"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "ro/f") {
		t.Errorf("a read-only file is fine: %v", err)
	}
}
