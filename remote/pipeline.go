package remote

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sync"
)

// Pipeline sends many requests to one host in as few round trips as they
// allow: a host 50 ms away costs 50 ms per wait, and requests sent together
// are answered together. Add requests, then Wait once; each request's
// outcome is then in the Result it returned.
//
// Order: Wait sends the first request of every file operation in the order
// they were added, in one write, without waiting between them. An SFTP
// server carries requests out in the order they arrive, so a Symlink added
// before a Readlink of the same path is done before it: a lock taken and the
// state read under it cost one exchange. An operation of several requests
// (ReadDir, ReadFile, ReadTail, Append, WriteFile) sends its next ones as
// soon as the answers they depend on arrive, independently of the others;
// no order holds between those later requests and other operations'.
//
// Round trips on a Client (each measured by TestPipelineRoundTrips):
// Symlink, Readlink, Lstat, Remove, Rename, MkdirAll: 1. ReadDir: 2 for a
// folder of up to one READDIR's worth of names (OpenSSH sends 100,
// pkg/sftp's server 128), 3 for up to six times that. ReadFile and
// ReadTail of a regular file: 2 (1 for an empty one, or one refused), one
// more for a file the login user cannot write (see Client.ReadFile); a
// large file takes more (2 MiB in flight: 17 MiB took 4 or 5). Append: 2, one more when the file does
// not end with a newline. WriteFile: 3. A pipeline takes as many as its
// longest operation; a command (Do) adds none when it is brief.
//
// A Pipeline is for one Wait; it is not safe for concurrent use (a Host is).
type Pipeline struct {
	h      Host
	ops    []*pipeOp
	waited bool
}

// NewPipeline starts a pipeline of requests to h. A Client sends them as
// described on Pipeline; any other Host (a test's fake) carries them out
// one after the other, in the order added, through its own methods.
func NewPipeline(h Host) *Pipeline { return &Pipeline{h: h} }

// pipeliner is a Host that sends a pipeline's requests itself.
type pipeliner interface {
	runPipeline(ctx context.Context, ops []*pipeOp)
}

// pipeOp is one operation of a pipeline: for a Client, its first requests
// and how it goes on once they are answered; for any Host, how to do it
// through the Host's own methods.
type pipeOp struct {
	first  []sftpReq
	native func(f *flow, first []chan sftpReply)
	local  func(ctx context.Context, h Host)
	end    func(err error) // ends the op with err unless it has its outcome
	cmd    bool            // a command: sent on a channel of its own, not ordered with file requests
}

// Result is the outcome of one request of a Pipeline, known once Wait has
// returned.
type Result[T any] struct {
	mu   sync.Mutex
	v    T
	err  error
	done bool
}

var (
	errNotWaited = errors.New("remote: pipeline result read before Wait")
	errNoOutcome = errors.New("remote: pipeline operation ended without an outcome")
)

// Get returns the request's value and error.
func (r *Result[T]) Get() (T, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.done {
		var zero T
		return zero, errNotWaited
	}
	return r.v, r.err
}

// Err returns the request's error.
func (r *Result[T]) Err() error {
	_, err := r.Get()
	return err
}

// set records the outcome, unless one is recorded already (an operation
// still at work when Wait gave up on it is ignored from then on).
func (r *Result[T]) set(v T, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.done {
		r.v, r.err, r.done = v, err, true
	}
}

func (r *Result[T]) setErr(err error) {
	var zero T
	r.set(zero, err)
}

func (p *Pipeline) add(op *pipeOp) {
	if p.waited {
		op.end(errors.New("remote: request added to a pipeline after its Wait"))
		return
	}
	p.ops = append(p.ops, op)
}

// Len is how many operations the pipeline holds.
func (p *Pipeline) Len() int { return len(p.ops) }

// Wait sends the requests and waits for every answer. It returns nil when
// each operation ended with its own outcome (an error among them is in its
// Result), and ctx's error when ctx ended first: then no operation sends a
// new request, the requests already sent are waited for up to the stop
// grace (Config.StopGrace), and each operation that did not end in time has
// ctx's error as its outcome. A lost connection is ErrConnLost in the
// Results of the operations it cut short.
func (p *Pipeline) Wait(ctx context.Context) error {
	if p.waited {
		return errors.New("remote: pipeline waited for twice")
	}
	p.waited = true
	if err := ctx.Err(); err != nil {
		for _, op := range p.ops {
			op.end(err)
		}
		return err
	}
	if n, ok := p.h.(pipeliner); ok {
		n.runPipeline(ctx, p.ops)
	} else {
		for _, op := range p.ops {
			if err := ctx.Err(); err != nil {
				op.end(err)
				continue
			}
			op.local(ctx, p.h)
		}
	}
	err := ctx.Err()
	for _, op := range p.ops {
		if err != nil {
			op.end(err) // an operation abandoned when the grace ran out
		} else {
			op.end(errNoOutcome) // never: each one ends before Wait does
		}
	}
	return err
}

// Lstat describes path, not following a final symlink; fs.ErrNotExist when
// absent.
func (p *Pipeline) Lstat(path string) *Result[fs.FileInfo] {
	r := &Result[fs.FileInfo]{}
	p.add(&pipeOp{
		first:  []sftpReq{pathReq(fxpLstat, path)},
		native: func(f *flow, a []chan sftpReply) { r.set(f.lstat(path, a[0])) },
		local:  func(ctx context.Context, h Host) { r.set(h.Lstat(ctx, path)) },
		end:    r.setErr,
	})
	return r
}

// Readlink returns a symlink's target.
func (p *Pipeline) Readlink(path string) *Result[string] {
	r := &Result[string]{}
	p.add(&pipeOp{
		first: []sftpReq{pathReq(fxpReadlink, path)},
		native: func(f *flow, a []chan sftpReply) {
			names, err := f.await(a[0]).names()
			if err == nil && len(names) != 1 {
				err = fmt.Errorf("sftp: %d names where a link's target was due", len(names))
			}
			if err != nil {
				r.setErr(f.pathErr("readlink", path, err))
				return
			}
			r.set(names[0], nil)
		},
		local: func(ctx context.Context, h Host) { r.set(h.Readlink(ctx, path)) },
		end:   r.setErr,
	})
	return r
}

// Symlink creates path pointing to target; it fails if path exists.
func (p *Pipeline) Symlink(target, path string) *Result[struct{}] {
	r := &Result[struct{}]{}
	p.add(symlinkOp(target, path, r.setErr))
	return r
}

// symlinkOp sends SYMLINK and statvfs@openssh.com of its folder together:
// OpenSSH says only SSH_FX_FAILURE for a read-only filesystem (and for a
// path that exists), and the filesystem's flag tells which.
func symlinkOp(target, p string, done func(error)) *pipeOp {
	return &pipeOp{
		first: []sftpReq{symlinkReq(target, p), statvfsReq(path.Dir(p))},
		native: func(f *flow, a []chan sftpReply) {
			done(f.linkErr("symlink", target, p, f.readOnly(f.await(a[0]).status(), a[1])))
		},
		local: func(ctx context.Context, h Host) { done(h.Symlink(ctx, target, p)) },
		end:   done,
	}
}

// Rename replaces newpath with oldpath in one rename(2)
// (posix-rename@openssh.com).
func (p *Pipeline) Rename(oldpath, newpath string) *Result[struct{}] {
	r := &Result[struct{}]{}
	p.add(renameOp(oldpath, newpath, r.setErr))
	return r
}

func renameOp(oldpath, newpath string, done func(error)) *pipeOp {
	return &pipeOp{
		first: []sftpReq{extendedReq("posix-rename@openssh.com", oldpath, newpath), statvfsReq(path.Dir(newpath))},
		native: func(f *flow, a []chan sftpReply) {
			done(f.linkErr("rename", oldpath, newpath, f.readOnly(f.await(a[0]).status(), a[1])))
		},
		local: func(ctx context.Context, h Host) { done(h.Rename(ctx, oldpath, newpath)) },
		end:   done,
	}
}

// Remove removes a file, symlink or empty directory, and says what
// happened (see Client.Remove).
func (p *Pipeline) Remove(path string) *Result[struct{}] {
	r := &Result[struct{}]{}
	p.add(removeOp(path, r.setErr))
	return r
}

// MkdirAll creates a directory and its parents.
func (p *Pipeline) MkdirAll(path string) *Result[struct{}] {
	r := &Result[struct{}]{}
	p.add(mkdirAllOp(path, r.setErr))
	return r
}

// ReadDir returns the names in a directory, sorted; fs.ErrNotExist when
// absent.
func (p *Pipeline) ReadDir(path string) *Result[[]string] {
	r := &Result[[]string]{}
	p.add(readDirOp(path, r.set))
	return r
}

// ReadFile returns a regular file's contents, at most max bytes (a larger
// file is an error; 0 means MaxReadFile); fs.ErrNotExist when absent. See
// Client.ReadFile for what it refuses.
func (p *Pipeline) ReadFile(path string, max int64) *Result[[]byte] {
	if max <= 0 {
		max = MaxReadFile
	}
	r := &Result[[]byte]{}
	p.add(readOp(path, max, false, r.set))
	return r
}

// ReadTail returns the last max bytes of a regular file (all of it when
// shorter); fs.ErrNotExist when absent.
func (p *Pipeline) ReadTail(path string, max int64) *Result[[]byte] {
	r := &Result[[]byte]{}
	p.add(readOp(path, max, true, r.set))
	return r
}

// Append appends data to path, creating it (0644) when absent; see
// Client.AppendFile.
func (p *Pipeline) Append(path string, data []byte) *Result[struct{}] {
	r := &Result[struct{}]{}
	p.add(appendOp(path, data, r.setErr))
	return r
}

// WriteFile replaces path atomically: a fresh temporary file, then a rename.
func (p *Pipeline) WriteFile(path string, data []byte, perm fs.FileMode) *Result[struct{}] {
	r := &Result[struct{}]{}
	p.add(writeOp(path, data, perm, r.setErr))
	return r
}

// Do adds c, as remote.Do would send it; its value is a command's standard
// output. A command (MethodRun) runs on a session channel of its own,
// started when Wait starts, and is not ordered with the file requests: a
// Client does not wait for them before starting it, nor for it before
// sending them.
func (p *Pipeline) Do(c Call) *Result[[]byte] {
	r := &Result[[]byte]{}
	done := r.setErr
	switch c.Method {
	case MethodRun:
		p.add(&pipeOp{
			cmd:   true,
			local: func(ctx context.Context, h Host) { r.set(h.Run(ctx, c.Cmd)) },
			end:   r.setErr,
		})
	case MethodSymlink:
		p.add(symlinkOp(c.Arg, c.Path, done))
	case MethodRename:
		p.add(renameOp(c.Path, c.Arg, done))
	case MethodRemove:
		p.add(removeOp(c.Path, done))
	case MethodAppend:
		p.add(appendOp(c.Path, []byte(c.Arg), done))
	case MethodWrite:
		p.add(writeOp(c.Path, []byte(c.Arg), 0o644, done))
	default:
		r.setErr(fmt.Errorf("unknown request %q", c.Method))
	}
	return r
}
