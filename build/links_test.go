package build

import (
	"archive/tar"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// mktree makes a tree from lines "d path", "f path" or "l path -> target".
func mktree(t testing.TB, root string, spec ...string) {
	t.Helper()
	for _, line := range spec {
		kind, rest, _ := strings.Cut(line, " ")
		p := filepath.Join(root, filepath.FromSlash(rest))
		var err error
		switch kind {
		case "d":
			err = os.MkdirAll(p, 0o755)
		case "f":
			if err = os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
				err = os.WriteFile(p, []byte(rest), 0o644)
			}
		case "l":
			name, target, _ := strings.Cut(rest, " -> ")
			p = filepath.Join(root, filepath.FromSlash(name))
			if err = os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
				err = os.Symlink(target, p)
			}
		default:
			t.Fatalf("bad spec line %q", line)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// outsideOf lists the symlinks of tree that lead outside it, as judged by Make.
func outsideOf(t *testing.T, tree string) []string {
	t.Helper()
	_, err := Make(t.Context(), Options{Source: tree})
	var oe *OutsideError
	if err == nil {
		return nil
	}
	if !errors.As(err, &oe) {
		t.Fatalf("Make: %v", err)
	}
	var out []string
	for _, l := range oe.Links {
		out = append(out, l.Path)
	}
	return out
}

// issue13Tree is the escape of issue 13: 15 nested folders, each with a
// link x to the build's root, then a link through the deepest x and 16 ..
func issue13Tree(t *testing.T) string {
	src := t.TempDir()
	mkfile(t, src, "index.php", "x", 0o644)
	dir := ""
	for k := 1; k <= 15; k++ {
		dir += "s/"
		mktree(t, src, "l "+dir+"x -> "+strings.Repeat("../", k))
	}
	mktree(t, src, "l esc -> "+dir+"x/"+strings.Repeat("../", 16)+"etc/passwd")
	return src
}

func TestIssue13ChainEscapeRefused(t *testing.T) {
	src := issue13Tree(t)
	// What the text alone hides: the kernel takes esc out of the tree.
	if real, err := filepath.EvalSymlinks(filepath.Join(src, "esc")); err == nil && strings.HasPrefix(real, src+"/") {
		t.Fatalf("the test's link does not leave the tree: %s", real)
	}
	if got := outsideOf(t, src); !slices.Equal(got, []string{"esc"}) {
		t.Errorf("outside links %q, want only esc (every s/.../x leads to the root)", got)
	}
}

func TestLinkResolution(t *testing.T) {
	for _, c := range []struct {
		name    string
		spec    []string
		outside []string
	}{
		{"inside, up and down", []string{"f a/b/c", "l a/up -> ../a/b/c", "l top -> a/b/../b/c"}, nil},
		{"absolute", []string{"f a", "l abs -> /etc/passwd", "l root -> /"}, []string{"abs", "root"}},
		{"text up", []string{"f a/x", "l a/l -> ../../outside"}, []string{"a/l"}},
		{"empty target is refused by the kernel, not shipped", []string{"f a"}, nil},
		{"through an escaping link", []string{"f a", "l out -> ..", "l via -> out/x", "l via2 -> via"}, []string{"out", "via", "via2"}},
		{"back in through the parent", []string{"f a", "l round -> ../" + "ROOT" + "/a"}, []string{"round"}},
		{"link to a folder, then up", []string{"f d/e/f/g", "l deep -> d/e/f", "l up -> deep/../../../a", "l out -> deep/../../../.."}, []string{"out"}},
		{"text stays inside but the chain leaves", []string{"f a/b/c", "l a/b/l -> ../..", "l e -> a/b/l/.."}, []string{"e"}},
		{"text leaves but the chain stays", []string{"f d/e/f/g", "l deep -> d/e/f", "l ok -> deep/../../../a"}, nil},
		{"dangling inside", []string{"f a", "l d -> missing/file", "l d2 -> d/x"}, nil},
		{"dangling then up and out", []string{"f a", "l m -> missing/../../x", "l m2 -> a/b/../../../x"}, []string{"m", "m2"}},
		{"loop inside", []string{"f a", "l l1 -> l2", "l l2 -> l1", "l self -> self/x"}, nil},
		{"loop then out", []string{"f a", "l l1 -> l2", "l l2 -> l1", "l o -> l1/../../x"}, []string{"o"}},
		{"dot and slashes", []string{"f a/b", "l x -> ./a//b/.", "l y -> a/./../../"}, []string{"y"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := t.TempDir()
			spec := slices.Clone(c.spec)
			for i := range spec {
				spec[i] = strings.ReplaceAll(spec[i], "ROOT", filepath.Base(src))
			}
			mktree(t, src, spec...)
			if got := outsideOf(t, src); !slices.Equal(got, c.outside) {
				t.Errorf("outside %q, want %q", got, c.outside)
			}
		})
	}
}

func TestOutsideErrorListsAll(t *testing.T) {
	src := t.TempDir()
	mktree(t, src, "f index.php", "l z/last -> /usr/share/last", "l a/first -> ../../first", "l m -> /etc")
	_, err := Make(t.Context(), Options{Source: src})
	want := "3 symlinks lead outside the build (outside_symlinks: copy ships what they lead to, keep ships them as they are):\n" +
		"  a/first -> ../../first\n  m -> /etc\n  z/last -> /usr/share/last"
	if err == nil || !strings.HasSuffix(err.Error(), want) {
		t.Errorf("got %v\nwant ...%s", err, want)
	}
}

func TestOutsideKeep(t *testing.T) {
	src := t.TempDir()
	mktree(t, src, "f index.php", "l js/jquery -> /usr/share/javascript/jquery", "l in -> index.php")
	a := mustMake(t, Options{Source: src, OutsideSymlinks: OutsideKeep})
	if len(a.KeptOutside) != 1 || a.KeptOutside[0].Path != "js/jquery" || a.KeptOutside[0].Target != "/usr/share/javascript/jquery" {
		t.Errorf("kept outside: %+v", a.KeptOutside)
	}
	got := entries(t, a)
	if h := got["js/jquery"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "/usr/share/javascript/jquery" {
		t.Errorf("kept link in the payload: %+v", h)
	}
}

func TestOutsideCopy(t *testing.T) {
	outside := t.TempDir()
	mktree(t, outside, "f lib/jquery.js", "f lib/sub/x.css", "l lib/min.js -> jquery.js", "l lib/up -> ../other", "f other/o.txt", "f single.txt")
	src := t.TempDir()
	mktree(t, src, "f index.php",
		"l js/lib -> "+filepath.Join(outside, "lib"), // absolute, a folder
		"l one -> "+filepath.Join(outside, "single.txt"),
		"l rel -> ../"+filepath.Base(outside)+"/single.txt", // relative, from the source folder
		"l in -> index.php")
	for _, commands := range [][]string{nil, {"true"}} {
		a := mustMake(t, Options{Source: src, OutsideSymlinks: OutsideCopy, Commands: commands})
		got := map[string]Entry{}
		for _, e := range a.Manifest.Entries {
			got[e.Path] = e
		}
		for p, want := range map[string]string{
			"js/lib/jquery.js": "lib/jquery.js", "js/lib/min.js": "lib/jquery.js", "js/lib/sub/x.css": "lib/sub/x.css",
			"js/lib/up/o.txt": "other/o.txt", "one": "single.txt", "rel": "single.txt",
		} {
			if e := got[p]; e.Type != 'f' || e.Sum != sha(want) {
				t.Errorf("commands %q: %s: %+v, want a copy of %s", commands, p, e, want)
			}
		}
		for _, p := range []string{"js/lib", "js/lib/sub", "js/lib/up"} {
			if got[p].Type != 'd' {
				t.Errorf("%s: %+v, want a folder", p, got[p])
			}
		}
		if got["in"].Type != 'l' || len(a.CopiedOutside) != 3 {
			t.Errorf("inside link %+v, copied %+v", got["in"], a.CopiedOutside)
		}
		// The payload reads the copies from where they are, checked.
		hdrs := entries(t, a)
		if h := hdrs["js/lib/min.js"]; h == nil || h.Typeflag != tar.TypeReg || h.Size != int64(len("lib/jquery.js")) {
			t.Errorf("payload member: %+v", h)
		}
	}
	a := mustMake(t, Options{Source: src, OutsideSymlinks: OutsideCopy})
	mkfile(t, outside, "single.txt", "changed", 0o644)
	var ce *ChangedError
	if _, err := a.Payload(a.Manifest.Diff(nil, nil, nil, nil), false); !errors.As(err, &ce) {
		t.Errorf("payload after a copied target changed: %v", err)
	}
}

func TestOutsideCopyRefusals(t *testing.T) {
	for _, c := range []struct {
		spec         []string // of a folder outside the source
		target, want string   // "OUT" is that folder
	}{
		{nil, "OUT/missing", "no such file"},
		{[]string{"l dir/dangling -> nothing"}, "OUT/dir", "x/dangling cannot be copied"},
		{[]string{"f loop/f", "l loop/back -> .."}, "OUT/loop", "x/back/loop leads back to a folder that contains it: a loop"},
		{[]string{"l a -> b", "l b -> a"}, "OUT/a", "too many links"},
		{nil, "/dev/null", "not a regular file or folder"},
		{nil, "..", "x/src/x leads back to a folder that contains it: a loop"}, // the folder holding the source
	} {
		outside, src := t.TempDir(), filepath.Join(t.TempDir(), "src")
		mktree(t, outside, c.spec...)
		target := strings.ReplaceAll(c.target, "OUT", outside)
		mktree(t, src, "f index.php", "l x -> "+target)
		_, err := Make(t.Context(), Options{Source: src, OutsideSymlinks: OutsideCopy})
		if err == nil || !strings.Contains(err.Error(), "x -> "+target) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("copy of %s: %v, want %q", target, err, c.want)
		}
	}
}

func TestEmptyBuildRefused(t *testing.T) {
	for name, spec := range map[string][]string{
		"nothing":       nil,
		"only excluded": {"f .git/HEAD", "f tests/a"},
		"only folders":  {"d a/b", "d c"},
	} {
		src := t.TempDir()
		mktree(t, src, spec...)
		_, err := Make(t.Context(), Options{Source: src, Exclude: []string{".git", "tests"}})
		if err == nil || !strings.Contains(err.Error(), "the build is empty: no files in "+src+" after excludes") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestParentMustBeFolder(t *testing.T) {
	items := []item{{walked: walked{Entry: Entry{Type: 'l', Path: "a", Target: "/etc"}}}, {walked: walked{Entry: Entry{Type: 'f', Path: "a/passwd"}}}}
	if _, err := outsideLinks(items); err == nil || !strings.Contains(err.Error(), "a/passwd: its folder a is not a folder of the build") {
		t.Errorf("got %v", err)
	}
}

func TestThroughSymlink(t *testing.T) {
	m := manifest(Entry{Type: 'd', Path: "a"}, Entry{Type: 'l', Path: "a/l", Target: "x"}, Entry{Type: 'l', Path: "top", Target: "a"})
	for p, want := range map[string]string{"a/l/storage": "a/l", "a/l": "a/l", "top/l/x": "top", "a/x": "", "b": ""} {
		got, ok := m.ThroughSymlink(p)
		if got != want || ok != (want != "") {
			t.Errorf("%s: %q %v, want %q", p, got, ok, want)
		}
	}
}
