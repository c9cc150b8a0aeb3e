package steps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"sync"

	"github.com/fleetdeploy/fleetdeploy/remote"
)

// Step is one named unit of work on one host. Its operations run in order; when
// anything later fails before the cutover, Undo runs (newest step first).
type Step struct {
	Name string // gerund, e.g. "uploading build"
	Ops  []Op
	Undo []Op
}

func (s Step) String() string { return s.Name }

// Op is one remote operation. Desc is exactly what a dry run prints and what a
// real run reports when it executes it.
type Op struct {
	Desc string
	Run  func(ctx context.Context, h remote.Host, out io.Writer) error
}

// Exec runs a command; out (when not nil) receives its output.
func Exec(c remote.Cmd) Op {
	return Op{Desc: c.String(), Run: func(ctx context.Context, h remote.Host, out io.Writer) error {
		if out != nil && c.Stdout == nil {
			c.Stdout, c.Stderr = out, out
		}
		_, err := h.Run(ctx, c)
		return err
	}}
}

// Symlink creates path -> target (failing if path exists).
func Symlink(target, path string) Op {
	return Op{Desc: fmt.Sprintf("sftp symlink %s -> %s", remote.Quote(path), remote.Quote(target)),
		Run: func(ctx context.Context, h remote.Host, _ io.Writer) error { return h.Symlink(ctx, target, path) }}
}

// Rename replaces newpath by oldpath in one atomic rename.
func Rename(oldpath, newpath string) Op {
	return Op{Desc: fmt.Sprintf("sftp posix-rename %s %s", remote.Quote(oldpath), remote.Quote(newpath)),
		Run: func(ctx context.Context, h remote.Host, _ io.Writer) error { return h.Rename(ctx, oldpath, newpath) }}
}

// RemoveIfExists removes a file or symlink; absence is fine.
func RemoveIfExists(path string) Op {
	return Op{Desc: fmt.Sprintf("sftp remove %s", remote.Quote(path)),
		Run: func(ctx context.Context, h remote.Host, _ io.Writer) error {
			err := h.Remove(ctx, path)
			if err != nil && isNotExist(err) {
				return nil
			}
			return err
		}}
}

func isNotExist(err error) bool {
	return err != nil && (errors.Is(err, fs.ErrNotExist) || strings.Contains(err.Error(), "not exist"))
}

// Together runs independent ops at once: over SFTP, one round trip for all of
// them instead of one each. Every op runs; the errors are joined.
func Together(ops ...Op) Op {
	if len(ops) == 1 {
		return ops[0]
	}
	descs := make([]string, len(ops))
	for i, op := range ops {
		descs[i] = op.Desc
	}
	return Op{Desc: "at once: " + strings.Join(descs, "; "), Run: func(ctx context.Context, h remote.Host, out io.Writer) error {
		errs := make([]error, len(ops))
		var wg sync.WaitGroup
		for i, op := range ops {
			wg.Go(func() { errs[i] = op.Run(ctx, h, out) })
		}
		wg.Wait()
		return errors.Join(errs...)
	}}
}

// RunOps executes ops in order, reporting each to before (when set).
func RunOps(ctx context.Context, h remote.Host, ops []Op, out io.Writer, before func(Op)) error {
	for _, op := range ops {
		if before != nil {
			before(op)
		}
		if err := op.Run(ctx, h, out); err != nil {
			return err
		}
	}
	return nil
}
