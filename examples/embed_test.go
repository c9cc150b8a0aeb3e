package examples

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// tree reads every file under dir, keyed by slash-separated relative path.
func tree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)], err = os.ReadFile(p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestWriteAppVersion(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "v2", "app") // created if missing
	if err := WriteApp(dir, "v2"); err != nil {
		t.Fatal(err)
	}
	source := tree(t, "app")
	got := tree(t, dir)
	if len(got) != len(source) {
		t.Fatalf("wrote %d files, the app has %d", len(got), len(source))
	}
	versioned := VersionedFiles()
	for name, data := range got {
		if bytes.Contains(data, []byte("v1")) {
			t.Errorf("%s still contains v1: a page could mix versions unseen", name)
		}
		if slices.Contains(versioned, name) {
			if !bytes.Contains(data, []byte("v2")) {
				t.Errorf("%s does not carry v2", name)
			}
			if want := bytes.ReplaceAll(source[name], []byte("v1"), []byte("v2")); !bytes.Equal(data, want) {
				t.Errorf("%s: changed beyond the version:\n%s", name, data)
			}
		} else if !bytes.Equal(data, source[name]) {
			t.Errorf("%s is not versioned but differs from the source", name)
		}
	}
}

func TestWriteAppSourceVersionIsIdentity(t *testing.T) {
	dir := t.TempDir()
	if err := WriteApp(dir, "v1"); err != nil {
		t.Fatal(err)
	}
	source, got := tree(t, "app"), tree(t, dir)
	for name, data := range source {
		if !bytes.Equal(got[name], data) {
			t.Errorf("%s differs from the embedded source", name)
		}
	}
}

func TestWriteAppModes(t *testing.T) {
	dir := t.TempDir()
	if err := WriteApp(dir, "v3"); err != nil {
		t.Fatal(err)
	}
	// Writing again over an earlier copy must work and keep the modes.
	if err := WriteApp(dir, "v4"); err != nil {
		t.Fatal(err)
	}
	checkModes(t, dir)
}

func checkModes(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := os.FileMode(0o644)
		if d.IsDir() {
			want = 0o755 | fs.ModeDir
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestVersionedFilesAreComplete(t *testing.T) {
	source := tree(t, "app")
	versioned := VersionedFiles()
	if len(versioned) == 0 {
		t.Fatal("no versioned files")
	}
	for _, name := range versioned {
		if !bytes.Contains(source[name], []byte("v1")) {
			t.Errorf("%s is listed as versioned but does not carry v1", name)
		}
	}
	for name, data := range source {
		if bytes.Contains(data, []byte("v1")) && !slices.Contains(versioned, name) {
			t.Errorf("%s carries v1 but is not in VERSIONED_FILES", name)
		}
	}
}

func TestAppShape(t *testing.T) {
	source := tree(t, "app")
	if len(source) >= 15 {
		t.Errorf("the example app has %d files; keep it small", len(source))
	}
	for _, name := range []string{"public/index.php", "public/health.php", ".env.example", "storage/sessions/.gitkeep"} {
		if _, ok := source[name]; !ok {
			t.Errorf("missing %s", name)
		}
	}
	// .env is shared per host, never part of a build.
	if _, ok := source[".env"]; ok {
		t.Error("the app ships a .env")
	}
	// The embedded copy is what WriteApp uses; it must match the checkout.
	embedded := 0
	if err := fs.WalkDir(app, "app", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			embedded++
			if _, ok := source[strings.TrimPrefix(p, "app/")]; !ok {
				t.Errorf("embedded %s not in the checkout", p)
			}
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if embedded != len(source) {
		t.Errorf("embedded %d files, checkout has %d", embedded, len(source))
	}
}

func TestWriteAppRejectsBadVersions(t *testing.T) {
	for _, v := range []string{"", "v'2", "v 2", "../v2", "v2\n", "-v2"} {
		if err := WriteApp(t.TempDir(), v); err == nil {
			t.Errorf("WriteApp accepted version %q", v)
		}
	}
}
