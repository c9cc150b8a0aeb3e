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
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var archiveTime = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

// member is one entry of a test archive.
type arEntry struct {
	name, body, link string
	kind             byte // tar type flag
	mode             int64
}

func reg(name, body string, mode int64) arEntry {
	return arEntry{name: name, body: body, kind: tar.TypeReg, mode: mode}
}
func dir(name string) arEntry { return arEntry{name: name, kind: tar.TypeDir, mode: 0o755} }
func symlink(name, to string) arEntry {
	return arEntry{name: name, link: to, kind: tar.TypeSymlink, mode: 0o777}
}

func tarBytes(t *testing.T, gz bool, entries ...arEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	w := zw
	var tw *tar.Writer
	if gz {
		tw = tar.NewWriter(w)
	} else {
		tw = tar.NewWriter(&buf)
	}
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.kind, Mode: e.mode, Linkname: e.link, Size: int64(len(e.body)), ModTime: archiveTime, Format: tar.FormatPAX}
		if e.kind != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte(e.body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if gz {
		zw.Close()
	}
	return buf.Bytes()
}

func zipBytes(t *testing.T, entries ...arEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate, Modified: archiveTime}
		mode := fs.FileMode(e.mode)
		body := e.body
		switch e.kind {
		case tar.TypeDir:
			mode |= fs.ModeDir
		case tar.TypeSymlink:
			mode |= fs.ModeSymlink
			body = e.link
		case tar.TypeFifo:
			mode |= fs.ModeNamedPipe
		}
		h.SetMode(mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(body))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func writeFile(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "artifact.bin") // the name says nothing
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func hexSum(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// appEntries is a small app, as entries and as the folder they make.
var appEntries = []arEntry{
	dir("./"), dir("./app/"), reg("./app/index.php", "<?php echo 1;", 0o644),
	reg("./bin/run", "#!/bin/sh\necho ran > ran.txt\n", 0o755), symlink("./current.php", "app/index.php"),
	{name: "./app/copy.php", link: "./app/index.php", kind: tar.TypeLink, mode: 0o644},
}

func appFolder(t *testing.T) string {
	src := t.TempDir()
	mkfile(t, src, "app/index.php", "<?php echo 1;", 0o644)
	mkfile(t, src, "app/copy.php", "<?php echo 1;", 0o644)
	mkfile(t, src, "bin/run", "#!/bin/sh\necho ran > ran.txt\n", 0o755)
	mktree(t, src, "l current.php -> app/index.php")
	return src
}

func TestArtifactFormats(t *testing.T) {
	want := mustMake(t, Options{Source: appFolder(t)}).Checksum
	var zipped []arEntry
	for _, e := range appEntries {
		if e.kind == tar.TypeLink { // zip has no hard links
			e = reg(e.name, "<?php echo 1;", 0o644)
		}
		if e.name != "./" {
			e.name = strings.TrimPrefix(e.name, "./")
			zipped = append(zipped, e)
		}
	}
	gnu := func() []byte {
		if _, err := exec.LookPath("tar"); err != nil {
			t.Skip("no tar")
		}
		out := filepath.Join(t.TempDir(), "x.tgz")
		if b, err := exec.Command("tar", "-C", appFolder(t), "-czf", out, ".").CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, b)
		}
		data, _ := os.ReadFile(out)
		return data
	}
	for name, data := range map[string]func() []byte{
		"tar":     func() []byte { return tarBytes(t, false, appEntries...) },
		"tgz":     func() []byte { return tarBytes(t, true, appEntries...) },
		"zip":     func() []byte { return zipBytes(t, zipped...) },
		"gnu tgz": gnu,
	} {
		t.Run(name, func(t *testing.T) {
			data := data()
			fx := &seams{}
			a := mustMake(t, fx.opts(Options{Artifact: writeFile(t, data), Source: "/nonexistent"}))
			if a.Checksum != want {
				t.Errorf("checksum %s, want %s (the same tree as a folder)", a.Checksum, want)
			}
			if a.Source != (Source{Kind: SourceArtifact, ArtifactSHA256: hexSum(data)}) {
				t.Errorf("source %+v", a.Source)
			}
			if fx.opens != 0 {
				t.Errorf("the unpacked files were read %d times again to hash them", fx.opens)
			}
			hdrs := entries(t, a)
			if h := hdrs["bin/run"]; h == nil || h.Mode != 0o755 || (name != "gnu tgz" && !h.ModTime.Equal(archiveTime)) {
				t.Errorf("bin/run in the payload: %+v", h)
			}
			if h := hdrs["current.php"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "app/index.php" {
				t.Errorf("current.php in the payload: %+v", h)
			}
		})
	}
}

func TestArtifactWithCommands(t *testing.T) {
	a := mustMake(t, Options{Artifact: writeFile(t, tarBytes(t, true, appEntries...)), Commands: []string{"./bin/run"}})
	if e, ok := a.Manifest.Get("ran.txt"); !ok || e.Sum != sha("ran\n") {
		t.Errorf("the build command did not run in the unpacked archive: %+v", e)
	}
	if e, _ := a.Manifest.Get("bin/run"); e.Mode != 0o755 {
		t.Errorf("bin/run mode %o", e.Mode)
	}
}

// failMake runs Make on an artifact, expecting an error containing want,
// and checks that nothing is left in the temporary folder.
func failMake(t *testing.T, o Options, want string) {
	t.Helper()
	o.TempDir = t.TempDir()
	_, err := Make(t.Context(), o)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("got %v, want %q", err, want)
	}
	if left, _ := os.ReadDir(o.TempDir); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
}

func TestArtifactTruncatedOrCorrupt(t *testing.T) {
	big := reg("big.bin", strings.Repeat("0123456789abcdef", 4096), 0o644)
	plain := tarBytes(t, false, reg("a.txt", "a", 0o644), big)
	gz := tarBytes(t, true, reg("a.txt", "a", 0o644), big)
	zp := zipBytes(t, reg("a.txt", "a", 0o644), big)
	flip := func(data []byte, at int) []byte {
		c := bytes.Clone(data)
		c[at] ^= 0xff
		return c
	}
	for name, c := range map[string]struct {
		data []byte
		want string
	}{
		"tar mid-file":           {plain[:3000], "truncated or corrupt: big.bin: unexpected EOF"},
		"tar at an entry's end":  {plain[:512*2], "truncated: it ends without the end-of-archive marker"},
		"tar bad header":         {flip(plain, 100), "not a tar, tar.gz or zip archive"},
		"tar bad second header":  {flip(plain, 1024+148), "truncated or corrupt: archive/tar: invalid tar header"},
		"tgz cut":                {gz[:len(gz)/2], "truncated or corrupt: big.bin: unexpected EOF"},
		"tgz without its footer": {gz[:len(gz)-4], "corrupt gzip: unexpected EOF"},
		"tgz bad crc":            {flip(gz, len(gz)-6), "corrupt gzip: gzip: invalid checksum"},
		"tgz bad data":           {flip(gz, len(gz)/2), "truncated or corrupt: "},
		"zip cut":                {zp[:len(zp)-30], "truncated or corrupt zip"},
		"zip bad data":           {flip(zp, 200), "truncated or corrupt: big.bin: "},
		"empty file":             {nil, "an empty file, not an archive"},
		"text file":              {[]byte(strings.Repeat("hello world\n", 100)), "not a tar, tar.gz or zip archive"},
		"xz":                     {[]byte("\xfd7zXZ\x00\x00\x04rest"), "xz compression is not supported"},
		"only folders":           {tarBytes(t, false, dir("a/"), dir("a/b/")), "the build is empty"},
	} {
		t.Run(name, func(t *testing.T) {
			failMake(t, Options{Artifact: writeFile(t, c.data)}, c.want)
		})
	}
}

func TestArtifactEscapingEntries(t *testing.T) {
	ok := reg("ok.txt", "ok", 0o644)
	for _, c := range []struct {
		name    string
		entries []arEntry
		want    string
		noZip   bool
	}{
		{"absolute", []arEntry{ok, reg("/tmp/evil", "x", 0o644)}, "/tmp/evil: an absolute path, outside the build", false},
		{"dot dot", []arEntry{ok, reg("a/../../evil", "x", 0o644)}, "a/../../evil: goes up with .., outside the build", false},
		{"dot dot folder", []arEntry{ok, dir("../up/")}, "../up/: goes up with ..", false},
		{"symlink out", []arEntry{ok, symlink("l", "../../etc/passwd")}, "1 symlink leads outside the build", false},
		{"symlink chain out", []arEntry{ok, dir("s/"), symlink("s/x", ".."), symlink("esc", "s/x/../etc")}, "esc -> s/x/../etc", false},
		{"file through a symlink", []arEntry{ok, symlink("l", "/tmp"), reg("l/evil", "x", 0o644)}, "l/evil: below l, which is not a folder", false},
		{"file below a file", []arEntry{ok, reg("f/x", "x", 0o644), reg("f/x/y", "x", 0o644)}, "f/x/y: below f/x, which is not a folder", false},
		{"duplicate", []arEntry{ok, reg("ok.txt", "again", 0o644)}, "ok.txt appears twice in the archive", false},
		{"file then symlink", []arEntry{ok, symlink("ok.txt", "/etc/passwd")}, "ok.txt appears twice", false},
		{"hard link out", []arEntry{ok, {name: "h", link: "../outside", kind: tar.TypeLink}}, "h: a hard link to ../outside: goes up with ..", true},
		{"hard link absolute", []arEntry{ok, {name: "h", link: "/etc/passwd", kind: tar.TypeLink}}, "h: a hard link to /etc/passwd: an absolute path", true},
		{"hard link to a later file", []arEntry{{name: "h", link: "ok.txt", kind: tar.TypeLink}, ok}, "h: a hard link to ok.txt, which is not a file of the archive before it", true},
		{"hard link to a symlink", []arEntry{ok, symlink("l", "ok.txt"), {name: "h", link: "l", kind: tar.TypeLink}}, "which is not a file", true},
		{"fifo", []arEntry{ok, {name: "p", kind: tar.TypeFifo, mode: 0o644}}, "p is a", false},
		{"device", []arEntry{ok, {name: "dev", kind: tar.TypeChar, mode: 0o644}}, "dev is a device or a FIFO", true},
		{"reserved name", []arEntry{ok, reg(MetaManifest, "x", 0o644)}, "this name is reserved", false},
	} {
		for _, format := range []string{"tar", "tgz", "zip"} {
			if format == "zip" && c.noZip {
				continue
			}
			t.Run(c.name+"/"+format, func(t *testing.T) {
				var data []byte
				switch format {
				case "zip":
					data = zipBytes(t, c.entries...)
				default:
					data = tarBytes(t, format == "tgz", c.entries...)
				}
				base := t.TempDir()
				art := filepath.Join(base, "in", "deep", "artifact")
				os.MkdirAll(filepath.Dir(art), 0o755)
				os.WriteFile(art, data, 0o644)
				failMake(t, Options{Artifact: art}, c.want)
				for _, p := range []string{"evil", "in/evil", "in/deep/evil", "outside", "up"} {
					if _, err := os.Lstat(filepath.Join(base, p)); err == nil {
						t.Errorf("%s was written outside the build", p)
					}
				}
			})
		}
	}
	data := zipBytes(t, ok, reg(`..\evil`, "x", 0o644))
	failMake(t, Options{Artifact: writeFile(t, data)}, `..\evil: a name with a backslash`)
}

func TestArtifactSHA256(t *testing.T) {
	for _, gz := range []bool{false, true} {
		data := tarBytes(t, gz, appEntries...)
		good, file := hexSum(data), writeFile(t, data)
		a := mustMake(t, Options{Artifact: file, ArtifactSHA256: strings.ToUpper(good)})
		if a.Source.ArtifactSHA256 != good {
			t.Errorf("recorded %s, want %s", a.Source.ArtifactSHA256, good)
		}
		bad := hexSum([]byte("other"))
		failMake(t, Options{Artifact: file, ArtifactSHA256: bad}, "artifact "+file+": sha256 is "+good+", expected "+bad)
		// A download cut short: the sums tell, the unpacking too.
		cut := writeFile(t, data[:len(data)/2])
		failMake(t, Options{Artifact: cut, ArtifactSHA256: good}, "expected "+good+" (and it does not unpack: ")
	}
	zdata := zipBytes(t, reg("a", "a", 0o644))
	failMake(t, Options{Artifact: writeFile(t, zdata), ArtifactSHA256: hexSum(nil)}, "sha256 is "+hexSum(zdata)+", expected "+hexSum(nil))
	for _, bad := range []string{"abc", strings.Repeat("g", 64)} {
		_, err := Make(t.Context(), Options{Artifact: "x", ArtifactSHA256: bad})
		if err == nil || !strings.Contains(err.Error(), "want 64 hex digits") {
			t.Errorf("sha256 %q: %v", bad, err)
		}
	}
	if _, err := Make(t.Context(), Options{Source: t.TempDir(), ArtifactSHA256: hexSum(nil)}); err == nil {
		t.Error("a sha256 without an artifact was accepted")
	}
	if _, err := Make(t.Context(), Options{Artifact: "x", Ref: "main"}); err == nil {
		t.Error("an artifact with a ref was accepted")
	}
	var pe *fs.PathError
	if _, err := Make(t.Context(), Options{Artifact: filepath.Join(t.TempDir(), "missing")}); err == nil || errors.As(err, &pe) && pe.Op == "" {
		t.Errorf("missing artifact: %v", err)
	}
}

func TestArtifactOutsideLinks(t *testing.T) {
	outside := t.TempDir()
	mkfile(t, outside, "lib.js", "lib", 0o644)
	data := tarBytes(t, false, reg("index.php", "x", 0o644), symlink("abs", filepath.Join(outside, "lib.js")), symlink("rel", "../lib.js"))
	file := writeFile(t, data)
	failMake(t, Options{Artifact: file}, "2 symlinks lead outside the build")
	kept := mustMake(t, Options{Artifact: file, OutsideSymlinks: OutsideKeep})
	if len(kept.KeptOutside) != 2 {
		t.Errorf("kept %+v", kept.KeptOutside)
	}
	// An archive has no local folder: only absolute targets can be copied.
	failMake(t, Options{Artifact: file, OutsideSymlinks: OutsideCopy}, "symlink rel -> ../lib.js: an archive's relative link that leaves it has nothing local to copy")
	file = writeFile(t, tarBytes(t, false, reg("index.php", "x", 0o644), symlink("abs", filepath.Join(outside, "lib.js"))))
	copied := mustMake(t, Options{Artifact: file, OutsideSymlinks: OutsideCopy})
	if e, _ := copied.Manifest.Get("abs"); e.Type != 'f' || e.Sum != sha("lib") {
		t.Errorf("abs: %+v", e)
	}
}

// A zip made on Windows carries no Unix modes: files get 0644, folders 0755.
func TestZipFromWindows(t *testing.T) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, name := range []string{"app/", "app/index.php"} {
		h := &zip.FileHeader{Name: name, CreatorVersion: 0<<8 | 20, ExternalAttrs: 0x20} // FAT, archive bit
		if strings.HasSuffix(name, "/") {
			h.ExternalAttrs = 0x10
		}
		w, err := zw.CreateRaw(h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(nil)
	}
	zw.Close()
	a := mustMake(t, Options{Artifact: writeFile(t, buf.Bytes())})
	for p, want := range map[string]uint32{"app": 0o755, "app/index.php": 0o644} {
		if e, _ := a.Manifest.Get(p); e.Mode != want {
			t.Errorf("%s: mode %o, want %o", p, e.Mode, want)
		}
	}
}

func TestArtifactCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := Make(ctx, Options{Artifact: writeFile(t, tarBytes(t, true, appEntries...))})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v", err)
	}
}

// FuzzUnpackTar feeds arbitrary tar streams to the unpacker: whatever it
// accepts or refuses, nothing appears outside its folder, and what it
// made inside is only folders, files and symlinks.
func FuzzUnpackTar(f *testing.F) {
	seeds := [][]arEntry{
		appEntries,
		{symlink("l", "/tmp"), reg("l/x", "x", 0o644)},
		{reg("a/../../x", "x", 0o644)},
		{reg("f", "x", 0o644), {name: "h", link: "f", kind: tar.TypeLink}, {name: "p", kind: tar.TypeFifo}},
	}
	for _, s := range seeds {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, e := range s {
			h := &tar.Header{Name: e.name, Typeflag: e.kind, Mode: e.mode, Linkname: e.link, ModTime: archiveTime, Format: tar.FormatGNU}
			if e.kind == tar.TypeReg {
				h.Size = int64(len(e.body))
			}
			tw.WriteHeader(h)
			tw.Write([]byte(e.body))
		}
		tw.Close()
		f.Add(buf.Bytes())
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		base := t.TempDir()
		dir := filepath.Join(base, "tree")
		s := &scanner{a: &Artifact{}}
		u := s.newUnpacker(t.Context(), dir)
		u.tar(bytes.NewReader(data))
		if left, _ := os.ReadDir(base); len(left) > 1 || len(left) == 1 && left[0].Name() != "tree" {
			t.Fatalf("written beside the tree: %v", left)
		}
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if m := d.Type(); m&^(fs.ModeDir|fs.ModeSymlink) != 0 {
				t.Errorf("%s: made a %v", p, m)
			}
			return nil
		})
	})
}

// A sparse file's holes cost the archive nothing: 1 GiB of them would be
// written out in full. GNU tar makes both forms.
func TestArtifactSparseRefused(t *testing.T) {
	if _, err := exec.LookPath("tar"); err != nil {
		t.Skip("no tar")
	}
	src := t.TempDir()
	f, err := os.Create(filepath.Join(src, "holes"))
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(1 << 30)
	f.WriteAt([]byte("end"), 1<<30-3)
	f.Close()
	for _, format := range []string{"gnu", "pax"} {
		out := filepath.Join(t.TempDir(), "sparse.tar")
		if b, err := exec.Command("tar", "-C", src, "--format="+format, "-cSf", out, "holes").CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, b)
		}
		if st, _ := os.Stat(out); st.Size() > 1<<20 {
			t.Fatalf("%s: the archive is %d bytes: not sparse", format, st.Size())
		}
		failMake(t, Options{Artifact: out}, "holes is a sparse file: not supported")
	}
}
