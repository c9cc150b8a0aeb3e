// Package build makes the deployable artifact once, on the local machine: the
// source folder, or a scratch copy of it where the user's build commands ran,
// and the manifest of that tree without the excluded paths. Payloads, the tars
// the hosts receive, are written from the tree itself, every file checked
// against the manifest as it is copied.
package build

import (
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

	"golang.org/x/crypto/blake2b"
)

// Options says what to build.
type Options struct {
	Source   string   // local folder
	Commands []string // run with `sh -c` in a scratch copy of Source, in order
	Exclude  []string // relative paths (or path.Match patterns) left out
	Output   io.Writer
	TempDir  string // where the scratch copy and the payloads go; "" for os.TempDir
	CacheDir string // keeps the hashes of Source's files between builds without commands; "" for none
}

// Artifact is a finished build on local disk.
type Artifact struct {
	Checksum    string // digest of the manifest: "sha256:<hex>"
	ManifestSum string // BLAKE2b-256 (hex) of the manifest, which hosts check with b2sum
	Manifest    *Manifest
	Files       int // entries of every type
	dir         string
	tree        string   // what the build was made from: Source or its scratch copy
	walk        []walked // every entry in walk order, the order of a payload's tar

	mu       sync.Mutex
	payloads map[string]*Payload
}

// walked is an entry with the mtime its tar header carries.
type walked struct {
	Entry
	mtime time.Time // truncated to the second
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
	a := &Artifact{dir: dir}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(dir)
		}
	}()
	tree := o.Source
	var cache *hashCache
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
	} else if o.CacheDir != "" {
		// Not for a scratch copy: its files are new inodes every time.
		cache = loadHashCache(o.CacheDir, o.Source)
	}
	if err := a.scan(tree, o.Exclude, cache); err != nil {
		return nil, err
	}
	cache.save()
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

// scan lists the tree in sorted order, hashing every file (unless the cache
// knows it), and makes the manifest. Symlinks that would point outside the
// build are refused: they could make the host write outside its build folder.
func (a *Artifact) scan(tree string, exclude []string, cache *hashCache) error {
	buf := make([]byte, copyBuf)
	err := walkSorted(tree, func(rel string, info fs.FileInfo) error {
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
		e := Entry{Path: rel, Mode: uint32(info.Mode().Perm())}
		switch {
		case info.Mode().IsDir():
			e.Type = 'd'
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
			e.Type, e.Target, e.Mode = 'l', target, 0o777
		case info.Mode().IsRegular():
			e.Type, e.Size = 'f', info.Size()
			if sum, ok := cache.lookup(rel, info); ok {
				e.Sum = sum
				break
			}
			sum, fi, n, err := hashFile(full, buf)
			if err != nil {
				return err
			}
			if n != info.Size() {
				return fmt.Errorf("%s changed size while being hashed", rel)
			}
			e.Sum = sum
			cache.store(rel, info, fi, sum)
		default:
			return fmt.Errorf("%s is not a regular file, directory or symlink", rel)
		}
		a.walk = append(a.walk, walked{e, info.ModTime().Truncate(time.Second)})
		return nil
	})
	if err != nil {
		return fmt.Errorf("packing build: %w", err)
	}
	// Sorted by path bytes (a payload keeps walk order): a host can rebuild
	// the same bytes with `LC_ALL=C sort` from its old manifest and a delta.
	m := &Manifest{Entries: make([]Entry, len(a.walk))}
	for i, w := range a.walk {
		m.Entries[i] = w.Entry
	}
	sort.Slice(m.Entries, func(i, j int) bool { return m.Entries[i].Path < m.Entries[j].Path })
	a.tree = tree
	a.Manifest = m
	a.Files = len(m.Entries)
	data := m.Marshal()
	a.Checksum = Digest(data)
	b2 := blake2b.Sum256(data)
	a.ManifestSum = hex.EncodeToString(b2[:])
	return nil
}

// copyBuf is the size of the buffer files are read with.
const copyBuf = 128 << 10

// openFile opens a file of the tree to read it; tests count calls through it.
// O_NOFOLLOW and O_NONBLOCK: a file replaced by a symlink or a FIFO since it
// was listed fails below instead of being followed or blocking.
var openFile = func(name string) (*os.File, error) {
	return os.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
}

// errNotRegular: what openRegular found is no longer a regular file.
var errNotRegular = errors.New("not a regular file")

// openRegular opens a regular file of the tree and returns its fstat.
func openRegular(name string) (*os.File, fs.FileInfo, error) {
	f, err := openFile(name)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = errNotRegular
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

// hashFile returns the hex sha256 of a file, its fstat from before the read
// and the bytes read.
func hashFile(name string, buf []byte) (string, fs.FileInfo, int64, error) {
	f, fi, err := openRegular(name)
	if err != nil {
		return "", nil, 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(h, struct{ io.Reader }{f}, buf) // no WriteTo: buf is used
	if err != nil {
		return "", nil, 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), fi, n, nil
}

// clock is time.Now but in tests.
var clock = time.Now

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
