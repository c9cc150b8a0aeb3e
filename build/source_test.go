package build

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// gitRepo makes a checkout with two commits (the first tagged v1), a
// .gitignore, and returns it with the commits' hashes.
func gitRepo(t *testing.T) (repo, v1, head string) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	repo = t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", repo, "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run("init", "-q")
	mkfile(t, repo, "index.php", "v1", 0o644)
	mkfile(t, repo, "app/lib.php", "lib v1", 0o644)
	mkfile(t, repo, "bin/run", "#!/bin/sh\n", 0o755)
	mkfile(t, repo, ".gitignore", "vendor/\n*.log\n", 0o644)
	mktree(t, repo, "l app/link -> ../index.php")
	run("add", "-A")
	run("commit", "-qm", "one")
	run("tag", "v1")
	v1 = run("rev-parse", "HEAD")
	mkfile(t, repo, "index.php", "v2", 0o644)
	run("commit", "-qam", "two")
	head = run("rev-parse", "HEAD")
	return repo, v1, head
}

func TestGitRef(t *testing.T) {
	repo, v1, _ := gitRepo(t)
	// Not committed: none of these may ship with --ref.
	mkfile(t, repo, "index.php", "dirty", 0o644)
	mkfile(t, repo, "untracked.php", "u", 0o644)
	mkfile(t, repo, "vendor/pkg/x.php", "ignored", 0o644)
	mkfile(t, repo, "debug.log", "ignored", 0o644)
	a := mustMake(t, Options{Source: repo, Ref: "v1"})
	if a.Source != (Source{Kind: SourceGit, Commit: v1, Ref: "v1"}) {
		t.Errorf("source %+v, want commit %s", a.Source, v1)
	}
	var paths []string
	for _, e := range a.Manifest.Entries {
		paths = append(paths, e.Path)
	}
	if got := strings.Join(paths, " "); got != ".gitignore app app/lib.php app/link bin bin/run index.php" {
		t.Errorf("paths %q", got)
	}
	if e, _ := a.Manifest.Get("index.php"); e.Sum != sha("v1") {
		t.Error("index.php is not v1's")
	}
	if e, _ := a.Manifest.Get("bin/run"); e.Mode != 0o755 {
		t.Errorf("bin/run mode %o", e.Mode)
	}
	if e, _ := a.Manifest.Get("app/lib.php"); e.Mode != 0o644 {
		t.Errorf("app/lib.php mode %o, want 644 (not git archive's group-writable default)", e.Mode)
	}
	if e, _ := a.Manifest.Get("app/link"); e.Type != 'l' || e.Target != "../index.php" {
		t.Errorf("app/link %+v", e)
	}
	// A folder inside the checkout: the ref's tree below it.
	sub := mustMake(t, Options{Source: filepath.Join(repo, "app"), Ref: v1[:10], Commands: []string{"test -f lib.php && touch built"}, OutsideSymlinks: OutsideKeep})
	if _, ok := sub.Manifest.Get("built"); !ok || sub.Source.Commit != v1 || sub.Files != 3 {
		t.Errorf("subfolder: source %+v, %d entries", sub.Source, sub.Files)
	}
	if len(sub.KeptOutside) != 1 || sub.KeptOutside[0].Path != "link" {
		t.Errorf("app/link leaves app/: kept %+v", sub.KeptOutside)
	}
}

func TestGitRefErrors(t *testing.T) {
	repo, _, _ := gitRepo(t)
	for _, c := range []struct {
		source, ref, want string
	}{
		{repo, "v9", `git ref "v9": no such commit in ` + repo},
		{repo, "--output=/tmp/x", "a ref does not start with -"},
		{t.TempDir(), "v1", "is not in a git checkout"},
	} {
		if _, err := Make(t.Context(), Options{Source: c.source, Ref: c.ref}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s at %s: %v, want %q", c.ref, c.source, err, c.want)
		}
	}
	t.Setenv("PATH", t.TempDir())
	if _, err := Make(t.Context(), Options{Source: repo, Ref: "v1"}); err == nil || !strings.Contains(err.Error(), `building from git ref "v1" needs git`) {
		t.Errorf("without git: %v", err)
	}
	if a := mustMake(t, Options{Source: repo}); a.Source != (Source{Kind: SourceDir}) {
		t.Errorf("plain build without git: %+v", a.Source)
	}
}

func TestGitWorkingTree(t *testing.T) {
	repo, _, head := gitRepo(t)
	clean := mustMake(t, Options{Source: repo})
	if clean.Source != (Source{Kind: SourceGit, Commit: head}) {
		t.Errorf("clean checkout: %+v", clean.Source)
	}
	mkfile(t, repo, "vendor/pkg/x.php", "ignored", 0o644)
	if a := mustMake(t, Options{Source: repo}); a.Source.Dirty {
		t.Error("ignored files made the tree dirty")
	}
	for name, change := range map[string]func(){
		"untracked": func() { mkfile(t, repo, "new.php", "n", 0o644) },
		"modified":  func() { mkfile(t, repo, "app/lib.php", "changed", 0o644) },
	} {
		change()
		a := mustMake(t, Options{Source: repo})
		if a.Source != (Source{Kind: SourceGit, Commit: head, Dirty: true}) {
			t.Errorf("%s: %+v", name, a.Source)
		}
		if got := a.Source.String(); got != "git "+head+" dirty" {
			t.Errorf("%s: %q", name, got)
		}
	}
	// Changes outside the folder built do not count.
	if a := mustMake(t, Options{Source: filepath.Join(repo, "bin")}); a.Source.Dirty {
		t.Error("changes outside the source folder made it dirty")
	}
	plain := t.TempDir()
	mkfile(t, plain, "index.html", "x", 0o644)
	if a := mustMake(t, Options{Source: plain}); a.Source != (Source{Kind: SourceDir}) {
		t.Errorf("not a checkout: %+v", a.Source)
	}
}
