package build

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// Source says what a build was made from, for the markers and the history
// the hosts keep: which commit, whether the working tree had changes, which
// artifact.
type Source struct {
	Kind           string // SourceDir, SourceGit or SourceArtifact
	Commit         string // full hash: what Ref named, or the checkout's HEAD ("" before its first commit)
	Ref            string // Options.Ref as given
	Dirty          bool   // a plain build of a checkout whose files below Source differ from HEAD (untracked ones too)
	ArtifactSHA256 string // hex sha256 of the artifact file
}

// Kinds of Source.
const (
	SourceDir      = "dir"      // a folder, not in a git checkout (or no git on this machine)
	SourceGit      = "git"      // a git checkout: its working tree, or a ref of it
	SourceArtifact = "artifact" // an archive made elsewhere
)

// String is the source in one line: "git 3f2a… (v1.2)", "git 3f2a… dirty",
// "artifact sha256:…", "dir".
func (s Source) String() string {
	switch s.Kind {
	case SourceArtifact:
		return "artifact sha256:" + s.ArtifactSHA256
	case SourceGit:
		var b strings.Builder
		b.WriteString("git")
		if s.Commit != "" {
			b.WriteString(" " + s.Commit)
		}
		if s.Ref != "" {
			b.WriteString(" (" + s.Ref + ")")
		}
		if s.Dirty {
			b.WriteString(" dirty")
		}
		return b.String()
	}
	return SourceDir
}

// git runs git in dir and returns its standard output.
func git(ctx context.Context, dir string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
	// No index refresh (status would otherwise write .git/index), stable messages.
	cmd.Env = append(os.Environ(), "GIT_OPTIONAL_LOCKS=0", "LC_ALL=C")
	var stderr bytes.Buffer
	cmd.Stderr = &limitedBuffer{b: &stderr, max: 4096}
	out, err := cmd.Output()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return nil, fmt.Errorf("git %s: %s", args[0], msg)
		}
		return nil, fmt.Errorf("git %s: %w", args[0], err)
	}
	return out, nil
}

// limitedBuffer keeps the first max bytes written.
type limitedBuffer struct {
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// gitStatus says what a plain build of the folder dir is made from: the
// checkout's HEAD, dirty if anything below dir differs from it (untracked
// files too; ignored ones are expected, they are what builds make), or a
// plain folder when dir is in no checkout or git is not installed.
func gitStatus(ctx context.Context, dir string) (Source, error) {
	if _, err := exec.LookPath("git"); err != nil {
		return Source{Kind: SourceDir}, nil
	}
	out, err := git(ctx, dir, "rev-parse", "--is-inside-work-tree")
	if ctx.Err() != nil {
		return Source{}, ctx.Err()
	}
	if err != nil || strings.TrimSpace(string(out)) != "true" {
		return Source{Kind: SourceDir}, nil
	}
	s := Source{Kind: SourceGit}
	if out, err := git(ctx, dir, "rev-parse", "--verify", "--quiet", "HEAD^{commit}"); err == nil {
		s.Commit = strings.TrimSpace(string(out))
	}
	out, err = git(ctx, dir, "status", "--porcelain", "-z", "--untracked-files=normal", "--", ".")
	if ctx.Err() != nil {
		return Source{}, ctx.Err()
	}
	// Unknown counts as dirty: a record must not claim a clean commit.
	s.Dirty = err != nil || len(out) > 0 || s.Commit == ""
	return s, nil
}

// gitExport unpacks the tree of ref (the part below dir, when dir is a
// folder inside the checkout) into u, streaming `git archive` once.
func gitExport(ctx context.Context, dir, ref string, u *unpacker) (Source, error) {
	if _, err := exec.LookPath("git"); err != nil {
		return Source{}, fmt.Errorf("building from git ref %q needs git: %w", ref, err)
	}
	out, err := git(ctx, dir, "rev-parse", "--show-toplevel", "--show-prefix")
	top, prefix, _ := strings.Cut(strings.TrimSuffix(string(out), "\n"), "\n")
	if err != nil || top == "" {
		if ctx.Err() != nil {
			return Source{}, ctx.Err()
		}
		return Source{}, fmt.Errorf("building from git ref %q: %s is not in a git checkout (%v)", ref, dir, err)
	}
	out, err = git(ctx, dir, "rev-parse", "--verify", "--quiet", ref+"^{commit}")
	if err != nil {
		if ctx.Err() != nil {
			return Source{}, ctx.Err()
		}
		return Source{}, fmt.Errorf("git ref %q: no such commit in %s", ref, dir)
	}
	commit := strings.TrimSpace(string(out))
	// From the top of the checkout: in a folder, git archive would also
	// filter the tree by that folder's path. 022, as a checkout has it: git
	// archive's default umask, 002, makes every file group-writable.
	cmd := exec.CommandContext(ctx, "git", "-c", "tar.umask=0022", "-C", top, "archive", "--format=tar", commit+":"+prefix)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var stderr bytes.Buffer
	cmd.Stderr = &limitedBuffer{b: &stderr, max: 4096}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return Source{}, err
	}
	if err := cmd.Start(); err != nil {
		return Source{}, fmt.Errorf("git archive: %w", err)
	}
	uerr := u.tar(stdout)
	if uerr == nil {
		// git pads the archive past its end marker: read it all, or git blocks.
		_, uerr = io.Copy(io.Discard, stdout)
	} else {
		cmd.Process.Kill()
	}
	werr := cmd.Wait()
	switch {
	case ctx.Err() != nil:
		return Source{}, ctx.Err()
	case werr != nil && stderr.Len() > 0 && (uerr == nil || u.count == 0):
		// git's own failure, not what it sent.
		uerr = fmt.Errorf("%w: %s", werr, strings.TrimSpace(stderr.String()))
	case werr != nil && uerr == nil:
		uerr = werr
	}
	if uerr != nil {
		return Source{}, fmt.Errorf("git archive of %s: %w", ref, uerr)
	}
	return Source{Kind: SourceGit, Commit: commit, Ref: ref}, nil
}
