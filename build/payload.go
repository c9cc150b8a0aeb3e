package build

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
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

// Open returns the payload for streaming to a host.
func (p *Payload) Open() (io.ReadCloser, error) { return os.Open(p.Path) }

// Payload makes (once per distinct transfer) the tar a host with this
// transfer plan receives.
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

func transferKey(t Transfer) string {
	if t.Full {
		return "full"
	}
	send := make([]string, 0, len(t.Send))
	for p := range t.Send {
		send = append(send, p)
	}
	sort.Strings(send)
	h := sha256.New()
	fmt.Fprintf(h, "%q|%q", send, t.Skip)
	return hex.EncodeToString(h.Sum(nil))
}

// writePayload copies from the full archive every directory and symlink and
// the files to send, then appends the checksums and the manifest.
func (a *Artifact) writePayload(p *Payload, t Transfer) error {
	in, err := os.Open(a.Archive)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(p.Path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	var w io.Writer = out
	var zw *gzip.Writer
	if p.Gzip {
		zw, _ = gzip.NewWriterLevel(out, gzip.BestSpeed)
		w = zw
	}
	tr, tw := tar.NewReader(in), tar.NewWriter(w)
	var sums strings.Builder
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		name := strings.TrimSuffix(h.Name, "/")
		if h.Typeflag == tar.TypeReg && !t.Send[name] {
			continue
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeReg {
			// The host checks what it received with b2sum: BLAKE2b is ~3x
			// faster than sha256sum there, and every byte sent is hashed.
			b2, _ := blake2b.New256(nil)
			n, err := io.Copy(io.MultiWriter(tw, b2), tr)
			if err != nil {
				return err
			}
			fmt.Fprintf(&sums, "%x  %s\n", b2.Sum(nil), name)
			p.Sent++
			p.SentBytes += n
		}
	}
	now := time.Now().Truncate(time.Second)
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
