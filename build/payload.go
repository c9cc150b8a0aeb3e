package build

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/blake2b"
)

// Payload is what one host receives: a tar of the build's directories and
// symlinks, the files it lacks, their checksums and the manifest.
type Payload struct {
	Path      string
	Size      int64 // bytes of the tar
	Sent      int   // files whose content is in it
	SentBytes int64
	Skip      []string // files of the host's live build not to reuse
	Reuse     bool     // the host assembles the rest from its live build
	Gzip      bool     // compressed
}

// ChangedError is a file of the source that changed between Make and
// Payload: the build must be made again.
type ChangedError struct{ Path string }

func (e *ChangedError) Error() string {
	return e.Path + " changed since the build was made: run again (if a process keeps writing there, exclude that path)"
}

// Open returns the payload for streaming to a host.
func (p *Payload) Open() (io.ReadCloser, error) { return os.Open(p.Path) }

// Payload makes (once per distinct transfer) the tar a host with this
// transfer plan receives. It fails if a file to send changed since Make.
func (a *Artifact) Payload(t Transfer, gz bool) (*Payload, error) {
	key := fmt.Sprintf("%s|%v", transferKey(t), gz)
	a.mu.Lock()
	defer a.mu.Unlock()
	if p, ok := a.payloads[key]; ok {
		return p, nil
	}
	if a.payloads == nil {
		a.payloads = map[string]*Payload{}
	}
	p := &Payload{Path: filepath.Join(a.dir, fmt.Sprintf("payload-%d.tar", len(a.payloads))), Skip: t.Skip, Reuse: !t.Full, Gzip: gz}
	if err := a.writePayload(p, t); err != nil {
		return nil, err
	}
	a.payloads[key] = p
	return p, nil
}

// member is a file a payload carries for fleetdeploy itself.
type member struct {
	name string
	data []byte
}

// manifestMember is the whole manifest for a full upload, else the delta the
// host merges with its old manifest (and checks against the digest).
func manifestMember(m *Manifest, t Transfer) member {
	if t.Full {
		return member{MetaManifest, m.Marshal()}
	}
	return member{MetaDelta, m.delta(t)}
}

// transferKey names what a payload holds: transfers with the same key share
// one payload. A full transfer's files differ too with the shared folders a
// host already has (their seeds are left out).
func transferKey(t Transfer) string {
	send := make([]string, 0, len(t.Send))
	for p := range t.Send {
		send = append(send, p)
	}
	sort.Strings(send)
	h := sha256.New()
	fmt.Fprintf(h, "%v|%q|%q|%v", t.Full, send, t.Skip, t.Link)
	return hex.EncodeToString(h.Sum(nil))
}

// writePayload writes every directory and symlink and the files to send,
// in walk order, from the tree the build was made from, then the checksums
// and the manifest. A partial payload is removed.
func (a *Artifact) writePayload(p *Payload, t Transfer) (err error) {
	out, err := os.OpenFile(p.Path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		out.Close()
		if err != nil {
			os.Remove(p.Path)
		}
	}()
	var w io.Writer = out
	var zw *gzip.Writer
	if p.Gzip {
		zw, _ = gzip.NewWriterLevel(out, gzip.BestSpeed)
		w = zw
	}
	tw := tar.NewWriter(w)
	buf := make([]byte, copyBuf)
	var sums strings.Builder
	for _, e := range a.walk {
		reused := e.Type == 'f' && !t.Send[e.Path]
		if reused && !(t.Link && t.Reused[e.Path]) {
			continue
		}
		h := &tar.Header{Name: e.Path, ModTime: e.mtime, Mode: int64(e.Mode), Format: tar.FormatPAX}
		switch {
		case e.Type == 'd':
			h.Typeflag, h.Name = tar.TypeDir, e.Path+"/"
		case e.Type == 'l':
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.Target
		case reused:
			h.Typeflag, h.Linkname = tar.TypeLink, e.Path
		case e.Type == 'f':
			h.Typeflag, h.Size = tar.TypeReg, e.Size
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if e.Type == 'f' && !reused {
			b2, err := a.copyFile(tw, e, buf)
			if err != nil {
				return err
			}
			fmt.Fprintf(&sums, "%x  %s\n", b2, e.Path)
			p.Sent++
			p.SentBytes += e.Size
		}
	}
	now := a.now().Truncate(time.Second)
	for _, meta := range []member{{MetaSums, []byte(sums.String())}, manifestMember(a.Manifest, t)} {
		if err := tw.WriteHeader(&tar.Header{Name: meta.name, Mode: 0o600, Size: int64(len(meta.data)), ModTime: now, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return err
		}
		if _, err := tw.Write(meta.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return err
		}
	}
	st, err := out.Stat()
	if err != nil {
		return err
	}
	p.Size = st.Size()
	return out.Close()
}

// copyFile copies the file of entry e from the tree (or from the local file
// an outside link led to) to w and returns its BLAKE2b-256. The source
// folder is the user's working tree: a file that no longer matches the
// manifest (size or sha256) fails the payload.
func (a *Artifact) copyFile(w io.Writer, e walked, buf []byte) ([]byte, error) {
	changed := func() error { return &ChangedError{Path: e.Path} }
	name := e.src
	if name == "" {
		name = filepath.Join(a.tree, filepath.FromSlash(e.Path))
	}
	f, fi, err := openRegular(a.open, name)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNotRegular) || errors.Is(err, syscall.ELOOP) || errors.Is(err, syscall.ENOTDIR) {
		return nil, changed()
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi.Size() != e.Size {
		return nil, changed()
	}
	// The host checks what it received with b2sum: BLAKE2b is ~3x faster
	// than sha256sum there, and every byte sent is hashed.
	sha := sha256.New()
	b2, _ := blake2b.New256(nil)
	n, err := io.CopyBuffer(io.MultiWriter(w, sha, b2), io.LimitReader(f, e.Size), buf)
	if err != nil {
		return nil, err
	}
	if n != e.Size || hex.EncodeToString(sha.Sum(nil)) != e.Sum {
		return nil, changed()
	}
	return b2.Sum(nil), nil
}
