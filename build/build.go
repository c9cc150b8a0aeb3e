// Package build makes the deployable artifact once, on the local machine: a
// scratch copy of the source, the user's build commands run in it, and a tar
// stream of the result without the excluded paths, with a checksum of its content.
package build

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Options says what to build.
type Options struct {
	Source   string   // local folder
	Commands []string // run with `sh -c` in a scratch copy of Source, in order
	Exclude  []string // relative paths (or path.Match patterns) left out
	Output   io.Writer
	TempDir  string // where the scratch copy and the archive go; "" for os.TempDir
}

// Artifact is a finished build on local disk.
type Artifact struct {
	Archive  string // path of the full tar, without metadata members
	Checksum string // digest of the manifest: "sha256:<hex>"
	Manifest *Manifest
	Files    int // entries of every type
	dir      string

	mu       sync.Mutex
	payloads map[string]*Payload
}

// Remove deletes the artifact's temporary files.
func (a *Artifact) Remove() error { return os.RemoveAll(a.dir) }

// Make builds the artifact. The caller removes it with Remove.
func Make(ctx context.Context, o Options) (*Artifact, error) {
	st, err := os.Stat(o.Source)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("source %s is not a directory", o.Source)
	}
	dir, err := os.MkdirTemp(o.TempDir, "fleetdeploy-build-")
	if err != nil {
		return nil, err
	}
	a := &Artifact{dir: dir, Archive: filepath.Join(dir, "build.tar")}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(dir)
		}
	}()
	tree := o.Source
	if len(o.Commands) > 0 {
		tree = filepath.Join(dir, "src")
		if err := copyTree(o.Source, tree); err != nil {
			return nil, fmt.Errorf("copying source: %w", err)
		}
		for _, c := range o.Commands {
			if err := runLocal(ctx, tree, c, o.Output); err != nil {
				return nil, err
			}
		}
	}
	if err := a.pack(tree, o.Exclude); err != nil {
		return nil, err
	}
	ok = true
	return a, nil
}

func runLocal(ctx context.Context, dir, command string, out io.Writer) error {
	cmd := exec.CommandContext(ctx, "sh", "-c", command)
	cmd.Dir = dir
	// Its own process group, so that Ctrl-C stops what the command started too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	var tailBuf strings.Builder
	w := io.Writer(&limitWriter{b: &tailBuf, max: 8192})
	if out != nil {
		w = io.MultiWriter(out, w)
	}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("build command %q: %v: %s", command, err, strings.TrimSpace(tailBuf.String()))
	}
	return nil
}

type limitWriter struct {
	b   *strings.Builder
	max int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room > 0 {
		if len(p) > room {
			l.b.Write(p[:room])
		} else {
			l.b.Write(p)
		}
	}
	return len(p), nil
}

// excluded reports whether rel (slash-separated) or one of its parents matches an exclude entry.
func excluded(rel string, exclude []string) bool {
	for _, e := range exclude {
		for p := rel; p != "."; p = path.Dir(p) {
			if m, _ := path.Match(e, p); m || p == e {
				return true
			}
		}
	}
	return false
}

// pack writes the tree into a tar with owner-less entries, in sorted order, and
// records its manifest. Symlinks that would point outside the build are refused:
// they could make the host write outside its build folder.
func (a *Artifact) pack(tree string, exclude []string) error {
	f, err := os.OpenFile(a.Archive, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	m := &Manifest{}
	err = walkSorted(tree, func(rel string, info fs.FileInfo) error {
		if excluded(rel, exclude) {
			if info.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.ContainsAny(rel, "\t\n\r") {
			return fmt.Errorf("%q: file names with tabs or newlines are not supported", rel)
		}
		if rel == MetaManifest || rel == MetaSums {
			return fmt.Errorf("%s: this name is reserved by fleetdeploy", rel)
		}
		full := filepath.Join(tree, filepath.FromSlash(rel))
		perm := uint32(info.Mode().Perm())
		hdr := &tar.Header{Name: rel, ModTime: info.ModTime().Truncate(time.Second), Mode: int64(perm), Format: tar.FormatPAX}
		e := Entry{Path: rel, Mode: perm}
		switch {
		case info.Mode().IsDir():
			hdr.Typeflag, hdr.Name, e.Type = tar.TypeDir, rel+"/", 'd'
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(full)
			if err != nil {
				return err
			}
			if escapes(rel, target) {
				return fmt.Errorf("%s is a symlink to %s, outside the build: refusing to ship it", rel, target)
			}
			if strings.ContainsAny(target, "\t\n\r") {
				return fmt.Errorf("%q: symlink targets with tabs or newlines are not supported", rel)
			}
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, target, 0o777
			e.Type, e.Target, e.Mode = 'l', target, 0o777
		case info.Mode().IsRegular():
			hdr.Typeflag, hdr.Size, e.Type, e.Size = tar.TypeReg, info.Size(), 'f', info.Size()
		default:
			return fmt.Errorf("%s is not a regular file, directory or symlink", rel)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if e.Type == 'f' {
			src, err := os.Open(full)
			if err != nil {
				return err
			}
			h := sha256.New()
			n, err := io.Copy(io.MultiWriter(tw, h), src)
			src.Close()
			if err != nil {
				return err
			}
			if n != info.Size() {
				return fmt.Errorf("%s changed size while being packed", rel)
			}
			e.Sum = hex.EncodeToString(h.Sum(nil))
		}
		m.Entries = append(m.Entries, e)
		return nil
	})
	if err != nil {
		return fmt.Errorf("packing build: %w", err)
	}
	if err := tw.Close(); err != nil {
		return err
	}
	// Sorted by path bytes (the tar keeps walk order): a host can rebuild the
	// same bytes with `LC_ALL=C sort` from its old manifest and a delta.
	sort.Slice(m.Entries, func(i, j int) bool { return m.Entries[i].Path < m.Entries[j].Path })
	a.Manifest = m
	a.Files = len(m.Entries)
	a.Checksum = m.Digest()
	return f.Close()
}

// escapes reports whether a symlink at rel with this target resolves outside the tree.
func escapes(rel, target string) bool {
	if path.IsAbs(target) || target == "" {
		return true
	}
	p := path.Join(path.Dir(rel), target)
	return p == ".." || strings.HasPrefix(p, "../")
}

// walkSorted calls fn for every entry below root (not root itself) in lexical
// order of slash-separated relative paths; fn may return filepath.SkipDir for a directory.
func walkSorted(root string, fn func(rel string, info fs.FileInfo) error) error {
	var walk func(dir, rel string) error
	walk = func(dir, rel string) error {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		names := make([]string, len(entries))
		for i, e := range entries {
			names[i] = e.Name()
		}
		sort.Strings(names)
		for _, n := range names {
			full := filepath.Join(dir, n)
			r := n
			if rel != "" {
				r = rel + "/" + n
			}
			info, err := os.Lstat(full)
			if err != nil {
				return err
			}
			err = fn(r, info)
			if errors.Is(err, filepath.SkipDir) {
				continue
			}
			if err != nil {
				return err
			}
			if info.IsDir() {
				if err := walk(full, r); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(root, "")
}

// copyTree copies src into dst (created), keeping modes and symlinks.
func copyTree(src, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	return walkSorted(src, func(rel string, info fs.FileInfo) error {
		from := filepath.Join(src, filepath.FromSlash(rel))
		to := filepath.Join(dst, filepath.FromSlash(rel))
		switch {
		case info.IsDir():
			return os.Mkdir(to, info.Mode().Perm()|0o700)
		case info.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(from)
			if err != nil {
				return err
			}
			return os.Symlink(t, to)
		case info.Mode().IsRegular():
			in, err := os.Open(from)
			if err != nil {
				return err
			}
			defer in.Close()
			out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, info.Mode().Perm())
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, in); err != nil {
				out.Close()
				return err
			}
			if err := out.Close(); err != nil {
				return err
			}
			return os.Chtimes(to, info.ModTime(), info.ModTime())
		}
		return nil // sockets and devices are not copied; pack refuses them in a source without build commands
	})
}
