package build

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Entry is one path of a build: what a host needs to know to reuse it.
type Entry struct {
	Type   byte   // 'f' file, 'd' directory, 'l' symlink
	Mode   uint32 // permission bits
	Size   int64  // files only
	Sum    string // hex sha256 of a file's content
	Target string // symlinks only
	Path   string // slash-separated, relative to the build
}

// Manifest lists every path of a build in order. It is stored with each build
// on the hosts, so that a redeploy sends only what changed.
type Manifest struct {
	Entries []Entry
	byPath  map[string]int
}

// MetaManifest and MetaSums are the names under which a payload carries the
// manifest and the checksums of the files it sends; the host moves them out
// of the build before it is published. A source holding them is refused.
const (
	MetaManifest = ".fleetdeploy-manifest"
	MetaDelta    = ".fleetdeploy-manifest.delta"
	MetaSums     = ".fleetdeploy-upload.b2sum"
)

// Marshal is the manifest's stored form: one tab-separated line per entry.
func (m *Manifest) Marshal() []byte {
	var b bytes.Buffer
	for _, e := range m.Entries {
		e.line(&b)
	}
	return b.Bytes()
}

func (e Entry) line(b *bytes.Buffer) {
	switch e.Type {
	case 'f':
		fmt.Fprintf(b, "f\t%04o\t%d\t%s\t%s\n", e.Mode, e.Size, e.Sum, e.Path)
	case 'd':
		fmt.Fprintf(b, "d\t%04o\t-\t-\t%s\n", e.Mode, e.Path)
	case 'l':
		fmt.Fprintf(b, "l\t0777\t-\t%s\t%s\n", e.Target, e.Path)
	}
}

// delta is what a host needs besides its old manifest to rebuild this one:
// every entry but the files it reuses (whose lines are the same in both).
func (m *Manifest) delta(t Transfer) []byte {
	var b bytes.Buffer
	for _, e := range m.Entries {
		if e.Type == 'f' && t.Reused[e.Path] {
			continue
		}
		e.line(&b)
	}
	return b.Bytes()
}

// Digest is "sha256:<hex>" of the stored form: the build's checksum.
func (m *Manifest) Digest() string { return Digest(m.Marshal()) }

// Digest is the checksum of a stored manifest.
func Digest(data []byte) string {
	s := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(s[:])
}

// ParseManifest reads a stored manifest.
func ParseManifest(data []byte) (*Manifest, error) {
	m := &Manifest{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		f := strings.Split(sc.Text(), "\t")
		if len(f) != 5 || len(f[0]) != 1 {
			return nil, fmt.Errorf("manifest line %d: malformed", n)
		}
		mode, err := strconv.ParseUint(f[1], 8, 32)
		if err != nil {
			return nil, fmt.Errorf("manifest line %d: mode: %v", n, err)
		}
		e := Entry{Type: f[0][0], Mode: uint32(mode), Path: f[4]}
		switch e.Type {
		case 'f':
			if e.Size, err = strconv.ParseInt(f[2], 10, 64); err != nil || len(f[3]) != 64 {
				return nil, fmt.Errorf("manifest line %d: malformed file entry", n)
			}
			e.Sum = f[3]
		case 'l':
			e.Target = f[3]
		case 'd':
		default:
			return nil, fmt.Errorf("manifest line %d: unknown type %q", n, f[0])
		}
		m.Entries = append(m.Entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Manifest) index() {
	if m.byPath != nil {
		return
	}
	m.byPath = make(map[string]int, len(m.Entries))
	for i, e := range m.Entries {
		m.byPath[e.Path] = i
	}
}

// Get finds an entry by path.
func (m *Manifest) Get(path string) (Entry, bool) {
	m.index()
	i, ok := m.byPath[path]
	if !ok {
		return Entry{}, false
	}
	return m.Entries[i], true
}

// Files counts the regular files.
func (m *Manifest) Files() int {
	n := 0
	for _, e := range m.Entries {
		if e.Type == 'f' {
			n++
		}
	}
	return n
}

// Plan of a transfer to hosts whose current build has manifest old.
type Transfer struct {
	Send   map[string]bool // file paths whose content is sent
	Reused map[string]bool // file paths made from the old build
	Skip   []string        // files of the old build not to reuse (changed, removed, dirty)
	Full   bool            // nothing is reused
	// Link makes the payload carry each reused file as a hard-link entry
	// naming its own path, which the host's tar maps into the live build:
	// one link(2) per file, no per-file command line. Set by the caller (not
	// when hooks could rewrite reused files in place).
	Link bool
}

// Diff decides what to send to a host whose live build has manifest old
// (nil: none, or unreadable), where dirty lists files changed on the host
// since that build was made. Files below shared paths are never reused (a
// build holds a link there); below omit (shared directories the host already
// has, so the build's copy would not seed them) they are not even sent.
func (m *Manifest) Diff(old *Manifest, dirty, shared, omit []string) Transfer {
	t := Transfer{Send: map[string]bool{}}
	omitted := func(p string) bool { return under(p, omit) }
	if old == nil {
		t.Full = true
		for _, e := range m.Entries {
			if e.Type == 'f' && !omitted(e.Path) {
				t.Send[e.Path] = true
			}
		}
		return t
	}
	isDirty := map[string]bool{}
	for _, d := range dirty {
		isDirty[d] = true
	}
	reuse := map[string]bool{}
	for _, e := range m.Entries {
		if e.Type != 'f' || omitted(e.Path) {
			continue
		}
		o, ok := old.Get(e.Path)
		if ok && o.Type == 'f' && o.Sum == e.Sum && o.Mode == e.Mode && !isDirty[e.Path] && !under(e.Path, shared) {
			reuse[e.Path] = true
			continue
		}
		t.Send[e.Path] = true
	}
	for _, o := range old.Entries {
		if o.Type == 'f' && !reuse[o.Path] {
			t.Skip = append(t.Skip, o.Path)
		}
	}
	sort.Strings(t.Skip)
	// Reusing almost nothing, or a skip list too long for one command line:
	// a full upload is simpler and no slower.
	size := 0
	for _, s := range t.Skip {
		size += len(s) + 3
	}
	if len(reuse) == 0 || size > 64<<10 {
		return m.Diff(nil, nil, nil, omit)
	}
	t.Reused = reuse
	return t
}

// under reports whether p is one of dirs or below one.
func under(p string, dirs []string) bool {
	for _, d := range dirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}
