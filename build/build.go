// Package build makes the deployable artifact once, on the local machine: the
// source folder, a git ref of it, or an archive made elsewhere (in a scratch
// folder where the user's build commands ran, if any), and the manifest of
// that tree without the excluded paths. Payloads, the tars the hosts receive,
// are written from the tree itself, every file checked against the manifest
// as it is copied.
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
	Source   string   // local folder; with Ref, a git checkout or a folder in one. Not read with Artifact
	Commands []string // run with `sh -c` in a scratch copy of the tree, in order
	Exclude  []string // relative paths (or path.Match patterns) left out, of an artifact too
	Output   io.Writer
	TempDir  string // where the scratch copy and the payloads go; "" for os.TempDir
	CacheDir string // keeps the hashes of Source's files between builds without commands; "" for none

	// OutsideSymlinks says what to do with symlinks that lead outside the
	// build; "" means OutsideRefuse.
	OutsideSymlinks OutsideMode

	// Artifact is a local tar, tar.gz or zip (told apart by content, not by
	// name) deployed as it is instead of Source. It is read once, as a
	// stream (a zip through its central directory), and unpacked into the
	// build's temporary folder while it is hashed; that folder is the tree.
	// With Commands they run there, after the whole archive was checked.
	Artifact string
	// ArtifactSHA256 is the artifact's expected sha256 in hex; "" checks nothing.
	ArtifactSHA256 string
	// Ref builds from the tree of this git ref of the checkout holding
	// Source (`git archive`: committed files only, no untracked or ignored
	// ones), unpacked as an artifact is.
	Ref string

	// Test seams: the clock (payload and cache times) and how files of the
	// tree are opened for reading. Nil for the real ones.
	now  func() time.Time
	open func(name string) (*os.File, error)
}

// Artifact is a finished build on local disk.
type Artifact struct {
	Checksum    string // digest of the manifest: "sha256:<hex>"
	ManifestSum string // BLAKE2b-256 (hex) of the manifest, which hosts check with b2sum
	Manifest    *Manifest
	Files       int    // entries of every type
	Source      Source // what the build was made from, for markers and history
	// KeptOutside lists the symlinks shipped as they are although they lead
	// outside the build (OutsideKeep): the hosts must provide their targets.
	KeptOutside []Entry
	// CopiedOutside lists the symlinks leading outside the build whose
	// targets' content was shipped in their place (OutsideCopy).
	CopiedOutside []Entry

	dir  string
	tree string   // what the build was made from: Source, its scratch copy or an unpacked archive
	walk []walked // every entry in walk order, the order of a payload's tar
	now  func() time.Time
	open func(name string) (*os.File, error)

	mu       sync.Mutex
	payloads map[string]*Payload
}

// walked is an entry with the mtime its tar header carries.
type walked struct {
	Entry
	mtime time.Time // truncated to the second
	src   string    // the file to read when it is not in the tree (a copied outside target)
}

// Remove deletes the artifact's temporary files.
func (a *Artifact) Remove() error { return os.RemoveAll(a.dir) }

// defaultOpen opens a file of the tree to read it. O_NOFOLLOW and
// O_NONBLOCK: a file replaced by a symlink or a FIFO since it was listed
// fails below instead of being followed or blocking.
func defaultOpen(name string) (*os.File, error) {
	return os.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
}

func (o *Options) check() error {
	switch o.OutsideSymlinks {
	case "", OutsideRefuse, OutsideCopy, OutsideKeep:
	default:
		return fmt.Errorf("outside symlinks: unknown mode %q (want refuse, copy or keep)", o.OutsideSymlinks)
	}
	if o.Artifact != "" && o.Ref != "" {
		return errors.New("an artifact and a git ref cannot be combined: the artifact is the build")
	}
	if o.ArtifactSHA256 != "" {
		if o.Artifact == "" {
			return errors.New("an artifact sha256 was given without an artifact")
		}
		if b, err := hex.DecodeString(o.ArtifactSHA256); err != nil || len(b) != sha256.Size {
			return fmt.Errorf("artifact sha256 %q: want 64 hex digits", o.ArtifactSHA256)
		}
	}
	if strings.HasPrefix(o.Ref, "-") {
		return fmt.Errorf("git ref %q: a ref does not start with -", o.Ref)
	}
	return nil
}

// Make builds the artifact. The caller removes it with Remove.
func Make(ctx context.Context, o Options) (*Artifact, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if o.Artifact == "" {
		st, err := os.Stat(o.Source)
		if err != nil {
			return nil, fmt.Errorf("source: %w", err)
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("source %s is not a directory", o.Source)
		}
	}
	dir, err := os.MkdirTemp(o.TempDir, "fleetdeploy-build-")
	if err != nil {
		return nil, err
	}
	a := &Artifact{dir: dir, now: o.now, open: o.open}
	if a.now == nil {
		a.now = time.Now
	}
	if a.open == nil {
		a.open = defaultOpen
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(dir)
		}
	}()
	s := &scanner{a: a, exclude: o.Exclude, mode: o.OutsideSymlinks, linkBase: o.Source, name: o.Source}
	tree, err := s.prepare(ctx, o)
	if err != nil {
		return nil, err
	}
	var cache *hashCache
	switch {
	case len(o.Commands) > 0 && tree == o.Source:
		tree = filepath.Join(dir, "src")
		if err := copyTree(o.Source, tree); err != nil {
			return nil, fmt.Errorf("copying source: %w", err)
		}
	case len(o.Commands) > 0:
		// The commands see the archive's modes and times, and the
		// scan trusts nothing it wrote: they may change anything.
		if err := s.unpacked.apply(tree); err != nil {
			return nil, err
		}
		s.unpacked = nil
	case o.CacheDir != "" && tree == o.Source:
		// Not for a scratch copy: its files are new inodes every time.
		cache = loadHashCache(o.CacheDir, o.Source, a.now())
	}
	for _, c := range o.Commands {
		if err := runLocal(ctx, tree, c, o.Output); err != nil {
			return nil, err
		}
	}
	s.tree, s.cache = tree, cache
	if err := s.scan(); err != nil {
		return nil, err
	}
	cache.save()
	ok = true
	return a, nil
}

// prepare makes the tree to build from, and says what it is: the source
// folder itself, or an archive or a git ref unpacked into the artifact's
// folder.
func (s *scanner) prepare(ctx context.Context, o Options) (tree string, err error) {
	a := s.a
	switch {
	case o.Artifact != "":
		// An archive's relative links have no local folder to be resolved from.
		s.linkBase, s.name = "", o.Artifact
		tree = filepath.Join(a.dir, "src")
		sum, err := unpackFile(o.Artifact, o.ArtifactSHA256, s.newUnpacker(ctx, tree))
		a.Source = Source{Kind: SourceArtifact, ArtifactSHA256: sum}
		return tree, err
	case o.Ref != "":
		tree = filepath.Join(a.dir, "src")
		a.Source, err = gitExport(ctx, o.Source, o.Ref, s.newUnpacker(ctx, tree))
		return tree, err
	}
	a.Source, err = gitStatus(ctx, o.Source)
	return o.Source, err
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

// versionControl are the names of version-control metadata, at any depth
// (a checkout, a submodule's .git file, a package installed from source):
// never part of a build made from a folder, as `git archive` would leave
// them out. A web server serving the build would otherwise serve the
// project's whole history. Build commands still see them (the scratch copy
// has them): only the build leaves them out.
var versionControl = map[string]bool{".git": true, ".hg": true, ".svn": true}

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

// scanner lists a tree and makes the artifact's manifest.
type scanner struct {
	a        *Artifact
	tree     string
	name     string // what the user calls the tree, for messages
	exclude  []string
	mode     OutsideMode
	linkBase string // the local folder the tree's relative links leave from; "" for an archive
	cache    *hashCache
	unpacked unpacked // what an archive's entries were, when the tree is that archive unpacked
}

// item is an entry being scanned, with what Lstat said of it.
type item struct {
	walked
	info fs.FileInfo
}

// scan lists the tree in sorted order, judges its symlinks, hashes every
// file (unless the cache or the unpacking knows it), and makes the manifest.
// Symlinks leading outside the build are refused, copied or kept as
// s.mode says: one the hosts follow could make them write outside the build.
func (s *scanner) scan() error {
	items, err := s.list()
	if err != nil {
		return fmt.Errorf("packing build: %w", err)
	}
	if items, err = s.outside(items); err != nil {
		return fmt.Errorf("packing build: %w", err)
	}
	if err := s.hash(items); err != nil {
		return fmt.Errorf("packing build: %w", err)
	}
	a := s.a
	a.walk = make([]walked, len(items))
	for i, it := range items {
		a.walk[i] = it.walked
	}
	// Sorted by path bytes (a payload keeps walk order): a host can rebuild
	// the same bytes with `LC_ALL=C sort` from its old manifest and a delta.
	m := &Manifest{Entries: make([]Entry, len(a.walk))}
	for i, w := range a.walk {
		m.Entries[i] = w.Entry
	}
	sort.Slice(m.Entries, func(i, j int) bool { return m.Entries[i].Path < m.Entries[j].Path })
	a.tree = s.tree
	a.Manifest = m
	a.Files = len(m.Entries)
	data := m.Marshal()
	a.Checksum = Digest(data)
	b2 := blake2b.Sum256(data)
	a.ManifestSum = hex.EncodeToString(b2[:])
	return nil
}

// list walks the tree, leaving out excluded paths, and checks every name.
// An empty build is refused: deploying it would empty every host's app.
func (s *scanner) list() ([]item, error) {
	var items []item
	content := false
	err := walkSorted(s.tree, func(rel string, info fs.FileInfo) error {
		if excluded(rel, s.exclude) || versionControl[path.Base(rel)] {
			if info.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		it, err := s.entry(rel, info, filepath.Join(s.tree, filepath.FromSlash(rel)))
		if err != nil {
			return err
		}
		content = content || it.Type != 'd'
		items = append(items, it)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !content {
		return nil, fmt.Errorf("the build is empty: no files in %s after excludes", s.name)
	}
	if err := ownerModes(items); err != nil {
		return nil, err
	}
	return items, nil
}

// ownerModes refuses, all in one error, folders the owner cannot read, write
// and enter, and files the owner cannot read: on the hosts, fleetdeploy
// (the owner there) must read every file to check it and write every
// folder to assemble and remove the build. A read-only build is made by
// taking group and other write bits away, not the owner's.
func ownerModes(items []item) error {
	var bad []string
	for _, it := range items {
		switch {
		case it.Type == 'd' && it.Mode&0o700 != 0o700:
			bad = append(bad, fmt.Sprintf("%s/ (%04o)", it.Path, it.Mode))
		case it.Type == 'f' && it.Mode&0o400 == 0:
			bad = append(bad, fmt.Sprintf("%s (%04o)", it.Path, it.Mode))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	more := ""
	if len(bad) > 20 {
		bad, more = bad[:20], fmt.Sprintf(" and %d more", len(bad)-20)
	}
	return fmt.Errorf("fleetdeploy must read every file and write every folder of a build as its owner on the hosts (to check, assemble and remove it), and these do not let the owner: %s%s; give the owner rw on them (chmod -R u+rwX; in the build commands if they make them), and take group and other bits away instead to keep the build read-only for others",
		strings.Join(bad, ", "), more)
}

// entry describes the path rel of the build, listed with info at full.
func (s *scanner) entry(rel string, info fs.FileInfo, full string) (item, error) {
	if strings.ContainsAny(rel, "\t\n\r") {
		return item{}, fmt.Errorf("%q: file names with tabs or newlines are not supported", rel)
	}
	if rel == MetaManifest || rel == MetaSums {
		return item{}, fmt.Errorf("%s: this name is reserved by fleetdeploy", rel)
	}
	it := item{walked{Entry: Entry{Path: rel, Mode: uint32(info.Mode().Perm())}, mtime: info.ModTime().Truncate(time.Second)}, info}
	switch {
	case info.Mode().IsDir():
		it.Type = 'd'
	case info.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(full)
		if err != nil {
			return item{}, err
		}
		if strings.ContainsAny(target, "\t\n\r") {
			return item{}, fmt.Errorf("%q: symlink targets with tabs or newlines are not supported", rel)
		}
		it.Type, it.Target, it.Mode = 'l', target, 0o777
	case info.Mode().IsRegular():
		it.Type, it.Size = 'f', info.Size()
	default:
		return item{}, fmt.Errorf("%s is not a regular file, directory or symlink", rel)
	}
	if u, ok := s.unpacked[rel]; ok {
		it.mtime = u.mtime
		if it.Type != 'l' {
			it.Mode = u.mode
		}
	}
	return it, nil
}

// hash finds the sha256 of every file: from the cache, from the unpacking
// that wrote it, or by reading it.
func (s *scanner) hash(items []item) error {
	buf := make([]byte, copyBuf)
	for i := range items {
		it := &items[i]
		if it.Type != 'f' {
			continue
		}
		if u, ok := s.unpacked[it.Path]; ok && it.src == "" && u.sum != "" && u.size == it.Size {
			it.Sum = u.sum
			continue
		}
		if sum, ok := s.cache.lookup(it.Path, it.info); ok {
			it.Sum = sum
			continue
		}
		full := it.src
		if full == "" {
			full = filepath.Join(s.tree, filepath.FromSlash(it.Path))
		}
		sum, fi, n, err := hashFile(s.a.open, full, buf)
		if err != nil {
			return err
		}
		if n != it.Size {
			return fmt.Errorf("%s changed size while being hashed", it.Path)
		}
		it.Sum = sum
		s.cache.store(it.Path, it.info, fi, sum)
	}
	return nil
}

// copyBuf is the size of the buffer files are read with.
const copyBuf = 128 << 10

// errNotRegular: what openRegular found is no longer a regular file.
var errNotRegular = errors.New("not a regular file")

// openRegular opens a regular file with open and returns its fstat.
func openRegular(open func(string) (*os.File, error), name string) (*os.File, fs.FileInfo, error) {
	f, err := open(name)
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
func hashFile(open func(string) (*os.File, error), name string, buf []byte) (string, fs.FileInfo, int64, error) {
	f, fi, err := openRegular(open, name)
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
