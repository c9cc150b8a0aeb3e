package build

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// unpacked records, for every path an archive put in the tree, what the
// archive said of it: the scan takes modes and times from here (the files
// on disk are written 0600 in 0700 folders, so that they can be read and
// removed whatever the archive says) and a file's sha256, computed as it
// was written, instead of reading it again.
type unpacked map[string]unpackedEntry

type unpackedEntry struct {
	dir   bool
	mode  uint32 // permission bits
	mtime time.Time
	sum   string // hex sha256, files only
	size  int64
}

// apply gives the files and folders of tree (unpacked) the archive's modes
// and times, as a scratch copy of a source folder has them, for build
// commands to run there.
func (u unpacked) apply(tree string) error {
	for rel, e := range u {
		if e.sum == "" && !e.dir {
			continue // a symlink
		}
		full := filepath.Join(tree, filepath.FromSlash(rel))
		mode := fs.FileMode(e.mode)
		if e.dir {
			mode |= 0o700
		}
		if err := os.Chmod(full, mode); err != nil {
			return err
		}
		if err := os.Chtimes(full, e.mtime, e.mtime); err != nil {
			return err
		}
	}
	return nil
}

// unpacker writes an archive's entries below a folder of its own. Every
// entry's place is checked before anything is written: its name must stay
// inside (no absolute path, no ..), every folder above it must be a folder
// the unpacker made (never a symlink or a file), and no path comes twice.
// Hard links may only name a file unpacked before; devices and FIFOs are
// refused. Symlinks are written as they are: the scan judges them.
type unpacker struct {
	ctx   context.Context // checked between entries
	dir   string
	kind  map[string]byte // what each path is: 'd', 'f' or 'l'; "" is dir itself
	meta  unpacked
	buf   []byte
	count int // entries seen
}

func (s *scanner) newUnpacker(ctx context.Context, dir string) *unpacker {
	u := &unpacker{ctx: ctx, dir: dir, kind: map[string]byte{"": 'd'}, meta: unpacked{}}
	s.unpacked = u.meta
	return u
}

func (u *unpacker) path(rel string) string { return filepath.Join(u.dir, filepath.FromSlash(rel)) }

// cleanName returns an entry's name relative to the build ("" for its root).
func cleanName(name string) (string, error) {
	switch {
	case name == "":
		return "", errors.New("an entry has no name")
	case strings.IndexByte(name, 0) >= 0:
		return "", fmt.Errorf("%q: a name with a NUL byte", name)
	case strings.HasPrefix(name, "/"):
		return "", fmt.Errorf("%s: an absolute path, outside the build", name)
	}
	var keep []string
	for p := range strings.SplitSeq(name, "/") {
		switch p {
		case "", ".":
		case "..":
			return "", fmt.Errorf("%s: goes up with .., outside the build", name)
		default:
			keep = append(keep, p)
		}
	}
	return strings.Join(keep, "/"), nil
}

// place checks where the entry name goes and makes the folders above it.
// It returns the entry's relative path; "" is the build's root.
func (u *unpacker) place(name string, kind byte, mtime time.Time) (string, error) {
	if err := u.ctx.Err(); err != nil {
		return "", err
	}
	u.count++
	rel, err := cleanName(name)
	if err != nil {
		return "", err
	}
	if rel == "" {
		if kind != 'd' {
			return "", fmt.Errorf("%s: not a folder at the build's root", name)
		}
		return "", nil
	}
	for i := 0; i < len(rel); i++ {
		if rel[i] != '/' {
			continue
		}
		parent := rel[:i]
		switch u.kind[parent] {
		case 'd':
			continue
		case 0:
			if err := os.Mkdir(u.path(parent), 0o700); err != nil {
				return "", err
			}
			u.kind[parent] = 'd'
			u.meta[parent] = unpackedEntry{dir: true, mode: 0o755, mtime: mtime}
		default:
			return "", fmt.Errorf("%s: below %s, which is not a folder", rel, parent)
		}
	}
	if k, ok := u.kind[rel]; ok && !(k == 'd' && kind == 'd') {
		return "", fmt.Errorf("%s appears twice in the archive", rel)
	}
	return rel, nil
}

func (u *unpacker) mkdir(name string, mode int64, mtime time.Time) error {
	rel, err := u.place(name, 'd', mtime)
	if err != nil || rel == "" {
		return err
	}
	if u.kind[rel] == 0 {
		if err := os.Mkdir(u.path(rel), 0o700); err != nil {
			return err
		}
		u.kind[rel] = 'd'
	}
	u.meta[rel] = unpackedEntry{dir: true, mode: uint32(mode) & 0o777, mtime: mtime}
	return nil
}

func (u *unpacker) file(name string, mode int64, mtime time.Time, r io.Reader) error {
	rel, err := u.place(name, 'f', mtime)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(u.path(rel), os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if u.buf == nil {
		u.buf = make([]byte, copyBuf)
	}
	h := sha256.New()
	n, err := io.CopyBuffer(struct{ io.Writer }{f}, io.TeeReader(&archiveReader{r}, h), u.buf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	var re *readError
	if errors.As(err, &re) {
		return fmt.Errorf("truncated or corrupt: %s: %w", rel, re.err)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	u.kind[rel] = 'f'
	u.meta[rel] = unpackedEntry{mode: uint32(mode) & 0o777, mtime: mtime, sum: hex.EncodeToString(h.Sum(nil)), size: n}
	return nil
}

func (u *unpacker) symlink(name, target string, mtime time.Time) error {
	rel, err := u.place(name, 'l', mtime)
	if err != nil {
		return err
	}
	if target == "" || strings.IndexByte(target, 0) >= 0 {
		return fmt.Errorf("%s: a symlink to %q", rel, target)
	}
	if err := os.Symlink(target, u.path(rel)); err != nil {
		return err
	}
	u.kind[rel] = 'l'
	u.meta[rel] = unpackedEntry{mode: 0o777, mtime: mtime}
	return nil
}

// hardlink makes name another path of a file unpacked before: a hard link
// to anything else (outside the build, a folder, a symlink) is refused.
func (u *unpacker) hardlink(name, target string, mtime time.Time) error {
	rel, err := u.place(name, 'f', mtime)
	if err != nil {
		return err
	}
	to, err := cleanName(target)
	if err != nil {
		return fmt.Errorf("%s: a hard link to %w", rel, err)
	}
	if u.kind[to] != 'f' {
		return fmt.Errorf("%s: a hard link to %s, which is not a file of the archive before it", rel, target)
	}
	if err := os.Link(u.path(to), u.path(rel)); err != nil {
		return err
	}
	u.kind[rel] = 'f'
	u.meta[rel] = u.meta[to]
	return nil
}

// archiveReader tells the archive's read errors from the local disk's write errors.
type archiveReader struct{ r io.Reader }

type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

func (a *archiveReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if err != nil && err != io.EOF {
		err = &readError{err}
	}
	return n, err
}

// eofWatch notes when the archive's stream ended where the tar reader
// wanted more: a tar cut at an entry's end has no end marker, which the tar
// reader alone does not report.
type eofWatch struct {
	r   io.Reader
	hit bool
}

func (w *eofWatch) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if n == 0 && err == io.EOF && len(p) > 0 {
		w.hit = true
	}
	return n, err
}

// tar unpacks a tar stream, which must end with its end marker.
func (u *unpacker) tar(r io.Reader) error {
	if err := os.Mkdir(u.dir, 0o700); err != nil {
		return err
	}
	w := &eofWatch{r: r}
	tr := tar.NewReader(w)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			if w.hit {
				return errors.New("truncated: it ends without the end-of-archive marker")
			}
			return nil
		}
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) { // names are checked below
			if u.count == 0 && errors.Is(err, tar.ErrHeader) {
				return errors.New("not a tar, tar.gz or zip archive")
			}
			return fmt.Errorf("truncated or corrupt: %w", err)
		}
		mtime := h.ModTime.Truncate(time.Second)
		if sparse(h) {
			// Holes cost nothing in the archive: a few bytes can stand for
			// terabytes of zeros to write. Builds do not need them.
			return fmt.Errorf("%s is a sparse file: not supported (make the archive without --sparse)", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeXGlobalHeader: // git archive's commit id
			continue
		case tar.TypeReg, tar.TypeCont:
			err = u.file(h.Name, h.Mode, mtime, tr)
		case tar.TypeDir:
			err = u.mkdir(h.Name, h.Mode, mtime)
		case tar.TypeSymlink:
			err = u.symlink(h.Name, h.Linkname, mtime)
		case tar.TypeLink:
			err = u.hardlink(h.Name, h.Linkname, mtime)
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			err = fmt.Errorf("%s is a device or a FIFO: a build holds files, folders and symlinks only", h.Name)
		default:
			err = fmt.Errorf("%s: tar entry type %q is not supported", h.Name, h.Typeflag)
		}
		if err != nil {
			return err
		}
	}
}

// Creator systems of a zip entry, which say how to read its mode.
const (
	zipUnix  = 3
	zipMacOS = 19
)

// sparse reports whether a tar entry is a sparse file, in GNU's old or PAX form.
func sparse(h *tar.Header) bool {
	if h.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// maxLinkTarget bounds a zip symlink's target, read from its content.
const maxLinkTarget = 4096

// zip unpacks a zip archive; its reader checks every file's CRC-32.
func (u *unpacker) zip(zr *zip.Reader) error {
	if err := os.Mkdir(u.dir, 0o700); err != nil {
		return err
	}
	for _, f := range zr.File {
		if strings.ContainsRune(f.Name, '\\') {
			return fmt.Errorf("%s: a name with a backslash (made on Windows?)", f.Name)
		}
		mtime := f.Modified
		if mtime.IsZero() {
			mtime = f.ModTime()
		}
		mtime = mtime.Truncate(time.Second)
		m := f.Mode()
		if creator := f.CreatorVersion >> 8; creator != zipUnix && creator != zipMacOS {
			// Made on Windows (FAT or NTFS attributes): Mode says 0666 or
			// 0777, which no host should get. What a checkout has instead.
			m = m&^fs.ModePerm | 0o644
			if m.IsDir() {
				m |= 0o111
			}
		}
		var err error
		switch {
		case m.IsDir():
			err = u.mkdir(f.Name, int64(m.Perm()), mtime)
		case m&fs.ModeSymlink != 0:
			var target []byte
			if target, err = readZip(f, maxLinkTarget); err == nil {
				err = u.symlink(f.Name, string(target), mtime)
			}
		case m.IsRegular():
			err = u.zipFile(f, m, mtime)
		default:
			err = fmt.Errorf("%s is a %v: a build holds files, folders and symlinks only", f.Name, m.Type())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (u *unpacker) zipFile(f *zip.File, m fs.FileMode, mtime time.Time) error {
	rc, err := f.Open()
	if err != nil {
		return fmt.Errorf("%s: %w", f.Name, err)
	}
	defer rc.Close()
	return u.file(f.Name, int64(m.Perm()), mtime, rc)
}

func readZip(f *zip.File, limit int64) ([]byte, error) {
	rc, err := f.Open()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err == nil && int64(len(data)) > limit {
		err = errors.New("symlink target too long")
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name, err)
	}
	return data, nil
}

// sniff tells an archive's format from its first bytes, never its name.
func sniff(head []byte) (string, error) {
	switch {
	case len(head) == 0:
		return "", errors.New("an empty file, not an archive")
	case len(head) >= 262 && string(head[257:262]) == "ustar":
		return "tar", nil
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return "gzip", nil
	case bytes.HasPrefix(head, []byte("PK\x03\x04")), bytes.HasPrefix(head, []byte("PK\x05\x06")):
		return "zip", nil
	case bytes.HasPrefix(head, []byte("BZh")):
		return "", errors.New("bzip2 compression is not supported: use tar, tar.gz or zip")
	case bytes.HasPrefix(head, []byte("\xfd7zXZ\x00")):
		return "", errors.New("xz compression is not supported: use tar, tar.gz or zip")
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return "", errors.New("zstd compression is not supported: use tar, tar.gz or zip")
	}
	return "tar", nil // an old tar without the ustar magic, or no archive: the tar reader tells
}

// unpackFile unpacks the archive file into u, reading it once, and returns
// its sha256 (hex), which must be want when want is set. Nothing of the
// archive is trusted until all of it was read: a truncated or corrupt one
// fails here.
func unpackFile(file, want string, u *unpacker) (sum string, err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("artifact %s: %w", file, err)
		}
	}()
	want = strings.ToLower(want)
	f, err := os.Open(file)
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return "", pe.Err // the message names the file already
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", errors.New("not a regular file")
	}
	head := make([]byte, 512)
	n, err := f.ReadAt(head, 0)
	if err != nil && err != io.EOF {
		return "", err
	}
	kind, err := sniff(head[:n])
	if err != nil {
		return "", err
	}
	h := sha256.New()
	mismatch := func(got string) error {
		return fmt.Errorf("sha256 is %s, expected %s", got, want)
	}
	if kind == "zip" {
		// A zip is read through its central directory, at its end: hash
		// it first, so that a wrong file is refused before it is opened.
		if _, err := io.Copy(h, io.NewSectionReader(f, 0, st.Size())); err != nil {
			return "", err
		}
		sum = hex.EncodeToString(h.Sum(nil))
		if want != "" && sum != want {
			return "", mismatch(sum)
		}
		zr, err := zip.NewReader(f, st.Size())
		if err != nil && !errors.Is(err, zip.ErrInsecurePath) { // names are checked when unpacking
			return "", fmt.Errorf("truncated or corrupt zip: %w", err)
		}
		return sum, u.zip(zr)
	}
	raw := io.TeeReader(f, h)
	err = unpackStream(raw, kind == "gzip", u)
	// The whole file counts, whatever follows the archive's end.
	if _, cerr := io.Copy(io.Discard, raw); err == nil && cerr != nil {
		err = cerr
	}
	sum = hex.EncodeToString(h.Sum(nil))
	switch {
	case want != "" && sum != want && err != nil:
		return "", fmt.Errorf("%w (and it does not unpack: %v)", mismatch(sum), err)
	case want != "" && sum != want:
		return "", mismatch(sum)
	}
	return sum, err
}

// unpackStream unpacks a tar or tar.gz stream; a gzip stream is read to its
// end, so that its checksum and length are checked.
func unpackStream(r io.Reader, gz bool, u *unpacker) error {
	if !gz {
		return u.tar(r)
	}
	zr, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("corrupt gzip: %w", err)
	}
	if err := u.tar(zr); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return fmt.Errorf("corrupt gzip: %w", err)
	}
	return nil
}
