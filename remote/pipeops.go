package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"sync"
	"syscall"
	"time"
)

// flow is one Wait of a pipeline on a Client: where its requests go, and
// the context that bounds them.
type flow struct {
	c    *Client
	s    *sftpSession
	ctx  context.Context
	hard chan struct{} // closed once ctx has ended and the stop grace has passed
}

// runPipeline sends the first requests of every file operation in one
// write, in order, then lets each operation go on by itself. It returns
// once every operation has ended, or once ctx has ended and the stop grace
// has passed (commands excepted: Run bounds its own wait, and returns only
// once the command has ended or its session is closed).
func (c *Client) runPipeline(ctx context.Context, ops []*pipeOp) {
	f := &flow{c: c, s: c.sftp, ctx: ctx, hard: make(chan struct{})}
	defer f.closeHardAfter(c.stopGrace)()
	var reqs []sftpReq
	for _, op := range ops {
		reqs = append(reqs, op.first...)
	}
	var answers []chan sftpReply
	if len(reqs) > 0 {
		answers = f.s.send(reqs...)
	}
	var files, cmds sync.WaitGroup
	for _, op := range ops {
		if op.cmd {
			cmds.Go(func() { op.local(ctx, c) })
			continue
		}
		a := answers[:len(op.first)]
		answers = answers[len(op.first):]
		files.Go(func() { op.native(f, a) })
	}
	done := make(chan struct{})
	go func() {
		files.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-f.hard:
	}
	cmds.Wait()
}

// closeHardAfter closes f.hard once ctx has ended and grace has passed; the
// function it returns stops that.
func (f *flow) closeHardAfter(grace time.Duration) (stop func()) {
	var mu sync.Mutex
	var timer *time.Timer
	stopped := false
	stopCtx := context.AfterFunc(f.ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !stopped {
			timer = time.AfterFunc(grace, func() { close(f.hard) })
		}
	})
	return func() {
		stopCtx()
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		if timer != nil {
			timer.Stop()
		}
	}
}

// send sends reqs, unless ctx has ended: then no request goes out, and
// each answer is ctx's error.
func (f *flow) send(reqs ...sftpReq) []chan sftpReply {
	out, _ := f.trySend(reqs...)
	return out
}

// trySend is send, and says whether the requests went out.
func (f *flow) trySend(reqs ...sftpReq) ([]chan sftpReply, bool) {
	if err := f.ctx.Err(); err != nil {
		out := make([]chan sftpReply, len(reqs))
		for i := range out {
			out[i] = make(chan sftpReply, 1)
			out[i] <- sftpReply{err: err}
		}
		return out, false
	}
	return f.s.send(reqs...), true
}

// forget sends reqs whatever ctx says, and never waits for their answers:
// a CLOSE, the removal of a temporary file. The server carries them out
// before any request sent after them.
func (f *flow) forget(reqs ...sftpReq) { f.s.send(reqs...) }

func (f *flow) closeHandle(h string) { f.forget(handleReq(fxpClose, h)) }

// await returns the answer on c, or ctx's error once ctx has ended and the
// stop grace has passed without it.
func (f *flow) await(c chan sftpReply) sftpReply {
	select {
	case a := <-c:
		return a
	default:
	}
	select {
	case a := <-c:
		return a
	case <-f.hard:
		return sftpReply{err: f.ctx.Err()}
	}
}

// pathErr says what failed: a refusal from the server names the operation
// and path (and matches fs.ErrNotExist or fs.ErrPermission as it should); a
// lost connection is ErrConnLost; ctx's error stays as it is.
func (f *flow) pathErr(op, p string, err error) error {
	switch {
	case err == nil:
		return nil
	case answered(err):
		return &fs.PathError{Op: op, Path: p, Err: err}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return f.c.connErr(err)
}

// linkErr is pathErr for the operations with two paths.
func (f *flow) linkErr(op, oldpath, newpath string, err error) error {
	if answered(err) {
		return &os.LinkError{Op: op, Old: oldpath, New: newpath, Err: err}
	}
	return f.pathErr(op, newpath, err)
}

// answered says err is the server's answer (a status, or the errno we
// read into one), not a lost connection or ctx.
func answered(err error) bool {
	var se *statusError
	var errno syscall.Errno
	return errors.As(err, &se) || errors.As(err, &errno)
}

// readOnly is err, unless it is SSH_FX_FAILURE (which tells nothing more)
// and the statvfs@openssh.com answered on vfs says the filesystem is
// read-only: then EROFS, the usual cause and the one to name.
func (f *flow) readOnly(err error, vfs chan sftpReply) error {
	if !isStatus(err, fxFailure) {
		return err
	}
	if ro, verr := f.await(vfs).statvfsReadOnly(); verr == nil && ro {
		return syscall.EROFS
	}
	return err
}

func (f *flow) lstat(p string, c chan sftpReply) (fs.FileInfo, error) {
	fi, err := f.await(c).attrs(path.Base(p))
	if err != nil {
		return nil, f.pathErr("lstat", p, err)
	}
	return fi, nil
}

// removeOp sends, in one go, REMOVE (a file or symlink), RMDIR (an empty
// folder), then LSTAT and statvfs@openssh.com of its folder, which say why
// neither worked: one round trip, whatever happens.
func removeOp(p string, done func(error)) *pipeOp {
	return &pipeOp{
		first: []sftpReq{
			pathReq(fxpRemove, p),
			pathReq(fxpRmdir, p),
			pathReq(fxpLstat, p),
			statvfsReq(path.Dir(p)),
		},
		native: func(f *flow, a []chan sftpReply) {
			rmErr := f.await(a[0]).status()
			rdErr := f.await(a[1]).status()
			fi, lerr := f.await(a[2]).attrs(path.Base(p))
			ro, _ := f.await(a[3]).statvfsReadOnly() // a server without it: nothing more to say
			done(f.removed(p, rmErr, rdErr, fi, lerr, ro))
		},
		local: func(ctx context.Context, h Host) { done(h.Remove(ctx, p)) },
		end:   done,
	}
}

// removed says what a Remove did, from the answers to its requests. A
// "not found" is believed only when LSTAT agrees (a dangling symlink that a
// read-only filesystem kept is there), and SSH_FX_FAILURE, which tells
// nothing more, is explained by the filesystem's read-only flag when set.
func (f *flow) removed(p string, rmErr, rdErr error, fi fs.FileInfo, lerr error, readOnly bool) error {
	var se *statusError
	switch {
	case rmErr == nil || rdErr == nil:
		return nil
	case !errors.As(rmErr, &se):
		return f.pathErr("remove", p, rmErr) // no answer: the connection, or ctx
	case isStatus(lerr, fxNoSuchFile):
		if errors.Is(rmErr, fs.ErrNotExist) {
			return f.pathErr("remove", p, rmErr)
		}
		return f.pathErr("remove", p, lerr)
	case lerr != nil:
		return fmt.Errorf("removing %s: %w", p, f.pathErr("lstat", p, lerr))
	}
	err := rmErr
	if fi.IsDir() {
		err = rdErr
	}
	switch {
	case readOnly && (isStatus(err, fxFailure) || isStatus(err, fxNoSuchFile)):
		return fmt.Errorf("removing %s: %w", p, syscall.EROFS)
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("removing %s: the host refused, and it is still there", p)
	}
	return f.pathErr("remove", p, err)
}

// mkdirAllOp sends MKDIR then STAT for each folder on the way to p, in one
// go: an existing folder refuses the MKDIR and its STAT says all is well.
func mkdirAllOp(p string, done func(error)) *pipeOp {
	dirs := parents(p)
	var reqs []sftpReq
	for _, d := range dirs {
		reqs = append(reqs, mkdirReq(d), pathReq(fxpStat, d))
	}
	return &pipeOp{
		first: reqs,
		native: func(f *flow, a []chan sftpReply) {
			for i, d := range dirs {
				merr := f.await(a[2*i]).status()
				fi, serr := f.await(a[2*i+1]).attrs(path.Base(d))
				switch {
				case serr == nil && fi.IsDir():
					continue
				case serr == nil:
					done(&fs.PathError{Op: "mkdir", Path: d, Err: syscall.ENOTDIR})
				case merr != nil:
					done(f.pathErr("mkdir", d, merr))
				default:
					done(f.pathErr("stat", d, serr))
				}
				return
			}
			done(nil)
		},
		local: func(ctx context.Context, h Host) { done(h.MkdirAll(ctx, p)) },
		end:   done,
	}
}

// parents lists the folders from the first below the root (or the first of
// a relative path) down to p itself.
func parents(p string) []string {
	p = path.Clean(p)
	if p == "/" || p == "." {
		return nil
	}
	var dirs []string
	for d := p; d != "/" && d != "."; d = path.Dir(d) {
		dirs = append(dirs, d)
	}
	slices.Reverse(dirs)
	return dirs
}

func readDirOp(p string, done func([]string, error)) *pipeOp {
	return &pipeOp{
		first: []sftpReq{pathReq(fxpOpendir, p)},
		native: func(f *flow, a []chan sftpReply) {
			h, err := f.await(a[0]).handle()
			if err != nil {
				done(nil, f.pathErr("opendir", p, err))
				return
			}
			names, err := f.readDir(h)
			f.closeHandle(h)
			if err != nil {
				done(nil, f.pathErr("readdir", p, err))
				return
			}
			slices.Sort(names)
			done(names, nil)
		},
		local: func(ctx context.Context, h Host) { done(h.ReadDir(ctx, p)) },
		end:   func(err error) { done(nil, err) },
	}
}

// maxReaddirs bounds the READDIRs in flight for one folder.
const maxReaddirs = 16

// readDir reads a folder's names through handle h. Two READDIRs go out at
// once, so that a folder of up to one answer's worth of names ends in one
// round trip (the second answer says the end). While answers bring names,
// more go out, up to twice as many in flight each time; answers already
// arrived are read before deciding to ask for more.
func (f *flow) readDir(h string) ([]string, error) {
	var names []string
	want := 2
	queue := f.send(handleReq(fxpReaddir, h), handleReq(fxpReaddir, h))
	for {
		a := f.await(queue[0])
		queue = queue[1:]
		list, err := a.names()
		if errors.Is(err, io.EOF) {
			return names, nil
		}
		if err != nil {
			return nil, err
		}
		for _, n := range list {
			if n != "." && n != ".." {
				names = append(names, n)
			}
		}
		if len(queue) > 0 && len(queue[0]) > 0 {
			continue // its answer is here: it may be the end
		}
		if want = min(2*want, maxReaddirs); len(queue) < want {
			more := make([]sftpReq, want-len(queue))
			for i := range more {
				more[i] = handleReq(fxpReaddir, h)
			}
			queue = append(queue, f.send(more...)...)
		}
	}
}

// readOp reads a regular file, or its tail. LSTAT and OPEN go out
// together: see Client.ReadFile for why the OPEN is for reading and
// writing.
func readOp(p string, limit int64, tail bool, done func([]byte, error)) *pipeOp {
	return &pipeOp{
		first: []sftpReq{pathReq(fxpLstat, p), openReq(p, fxfRead|fxfWrite, 0)},
		native: func(f *flow, a []chan sftpReply) {
			done(f.read(p, limit, tail, a[0], a[1]))
		},
		local: func(ctx context.Context, h Host) {
			if tail {
				done(h.ReadTail(ctx, p, limit))
			} else {
				done(h.ReadFile(ctx, p, limit))
			}
		},
		end: func(err error) { done(nil, err) },
	}
}

func (f *flow) read(p string, limit int64, tail bool, lstat, open chan sftpReply) ([]byte, error) {
	fi, lerr := f.lstat(p, lstat)
	h, oerr := f.await(open).handle()
	opened := oerr == nil
	defer func() {
		if opened {
			f.closeHandle(h)
		}
	}()
	switch {
	case lerr != nil:
		return nil, lerr
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("%s: %w (%s)", p, errNotRegular, FileKind(fi.Mode()))
	case !tail && fi.Size() > limit:
		return nil, fmt.Errorf("%s is %d bytes, over the %s limit for this file", p, fi.Size(), byteSize(limit))
	}
	off, n := int64(0), fi.Size()
	if tail {
		off = max(0, n-limit)
		n -= off
	}
	if !opened {
		if !isStatus(oerr, fxPermissionDenied) && !isStatus(oerr, fxFailure) {
			return nil, f.pathErr("open", p, oerr)
		}
		// Not writable (its mode, a read-only filesystem, a read-only
		// server): LSTAT has said it is a regular file, so open it for
		// reading alone.
		h, oerr = f.await(f.send(openReq(p, fxfRead, 0))[0]).handle()
		if oerr != nil {
			return nil, f.pathErr("open", p, oerr)
		}
		opened = true
	}
	if n == 0 {
		return []byte{}, nil
	}
	opened = false // readAt closes it
	b, err := f.readAt(h, off, n)
	if err != nil {
		return nil, f.pathErr("read", p, err)
	}
	return b, nil
}

// readAt reads n bytes from off through handle h, at most inFlight READs
// awaiting an answer, and closes h: the CLOSE goes out with the last READs,
// its answer never awaited. A file that ends early (it shrank since LSTAT)
// reads as far as it goes: servers answer a READ in full unless it meets
// the end of the file (OpenSSH's and pkg/sftp's read(2) a local file once).
func (f *flow) readAt(h string, off, n int64) ([]byte, error) {
	type part struct {
		at int64
		n  int
		c  chan sftpReply
	}
	buf := make([]byte, n)
	end := n // where the file ended, if before n
	var queue []part
	var next int64
	closed := false
	defer func() {
		if !closed {
			f.closeHandle(h)
		}
	}()
	ask := func() {
		var reqs []sftpReq
		var parts []part
		for len(queue)+len(parts) < inFlight && next < n {
			l := int(min(ioChunk, n-next))
			reqs = append(reqs, readReq(h, off+next, l))
			parts = append(parts, part{at: next, n: l})
			next += int64(l)
		}
		last := next == n
		if last {
			reqs = append(reqs, handleReq(fxpClose, h))
		}
		cs, sent := f.trySend(reqs...)
		closed = last && sent
		for i := range parts {
			parts[i].c = cs[i]
		}
		queue = append(queue, parts...)
	}
	ask()
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		data, err := f.await(p.c).data()
		switch {
		case errors.Is(err, io.EOF):
			end = min(end, p.at)
		case err != nil:
			return nil, err
		case len(data) > p.n:
			return nil, errors.New("sftp: more data than asked for")
		case len(data) > 0 && p.at >= end:
			return nil, errors.New("the file changed while it was read")
		default:
			copy(buf[p.at:], data)
			if len(data) < p.n {
				end = min(end, p.at+int64(len(data)))
			}
		}
		if !closed && end == n {
			ask()
		}
	}
	return buf[:end], nil
}

// appendOp sends LSTAT, an OPEN of an existing file and an OPEN that
// creates it (O_EXCL: never through a symlink) together; one of the OPENs
// works. See Client.AppendFile.
func appendOp(p string, data []byte, done func(error)) *pipeOp {
	return &pipeOp{
		first: []sftpReq{
			pathReq(fxpLstat, p),
			openReq(p, fxfRead|fxfWrite, 0),
			openReq(p, fxfRead|fxfWrite|fxfCreat|fxfExcl, 0o644),
		},
		native: func(f *flow, a []chan sftpReply) { done(f.append(p, data, a)) },
		local:  func(ctx context.Context, h Host) { done(h.AppendFile(ctx, p, data)) },
		end:    done,
	}
}

func (f *flow) append(p string, data []byte, a []chan sftpReply) error {
	fi, lerr := f.await(a[0]).attrs(path.Base(p))
	h1, err1 := f.await(a[1]).handle()
	h2, err2 := f.await(a[2]).handle()
	closeBut := func(keep string) {
		if err1 == nil && h1 != keep {
			f.closeHandle(h1)
		}
		if err2 == nil && h2 != keep {
			f.closeHandle(h2)
		}
	}
	var h string
	var size int64
	switch {
	case lerr == nil && !fi.Mode().IsRegular():
		closeBut("")
		return fmt.Errorf("%s: %w (%s)", p, errNotRegular, FileKind(fi.Mode()))
	case err1 == nil && lerr == nil:
		h, size = h1, fi.Size()
	case err1 == nil:
		closeBut("")
		return f.pathErr("lstat", p, lerr) // it came between the LSTAT and the OPEN
	case err2 == nil:
		h = h2 // made just now
	case !errors.Is(err1, fs.ErrNotExist):
		closeBut("")
		return f.pathErr("open", p, err1)
	default:
		closeBut("")
		return f.pathErr("open", p, err2)
	}
	closeBut(h)
	if size == 0 {
		a := f.send(writeReq(h, 0, data), handleReq(fxpClose, h))
		err := f.await(a[0]).status()
		if cerr := f.await(a[1]).status(); err == nil {
			err = cerr
		}
		return f.pathErr("write", p, err)
	}
	// The record goes at the end as LSTAT measured it, and the last byte
	// already there is read at the same time: when it is not a newline, the
	// record is written again one byte further, after one.
	a = f.send(readReq(h, size-1, 1), writeReq(h, size, data))
	last, rerr := f.await(a[0]).data()
	werr := f.await(a[1]).status()
	if werr == nil && rerr == nil && len(last) == 1 && last[0] == '\n' {
		f.closeHandle(h)
		return nil
	}
	if werr == nil && rerr == nil && len(last) == 1 {
		a = f.send(writeReq(h, size, append([]byte{'\n'}, data...)), handleReq(fxpClose, h))
		werr = f.await(a[0]).status()
		if cerr := f.await(a[1]).status(); werr == nil {
			werr = cerr
		}
		return f.pathErr("write", p, werr)
	}
	f.closeHandle(h)
	if werr != nil {
		return f.pathErr("write", p, werr)
	}
	if rerr == nil || errors.Is(rerr, io.EOF) {
		rerr = errors.New("it shrank while being appended to")
	}
	return f.pathErr("read", p, rerr)
}

// writeOp writes a temporary file beside p, then renames it over p:
// OPEN; WRITEs, FSETSTAT and CLOSE; posix-rename.
func writeOp(p string, data []byte, perm fs.FileMode, done func(error)) *pipeOp {
	tmp := path.Join(path.Dir(p), fmt.Sprintf(".%s.tmp-%d", path.Base(p), time.Now().UnixNano()))
	return &pipeOp{
		first: []sftpReq{openReq(tmp, fxfWrite|fxfCreat|fxfExcl, perm)},
		native: func(f *flow, a []chan sftpReply) {
			h, err := f.await(a[0]).handle()
			if err != nil {
				done(f.pathErr("open", tmp, err))
				return
			}
			err = f.pathErr("write", tmp, f.writeAt(h, data, perm))
			if err == nil {
				err = f.linkErr("rename", tmp, p, f.await(f.send(extendedReq("posix-rename@openssh.com", tmp, p))[0]).status())
			}
			if err != nil {
				f.forget(pathReq(fxpRemove, tmp))
			}
			done(err)
		},
		local: func(ctx context.Context, h Host) { done(h.WriteFile(ctx, p, data, perm)) },
		end:   done,
	}
}

// writeAt writes data through handle h from offset 0, at most inFlight
// WRITEs awaiting an answer, sets its mode, and closes it, waiting for
// every answer (the CLOSE goes with the last WRITEs).
func (f *flow) writeAt(h string, data []byte, perm fs.FileMode) error {
	closed := false
	defer func() {
		if !closed {
			f.closeHandle(h)
		}
	}()
	var queue []chan sftpReply
	next := 0
	first := true
	for {
		var reqs []sftpReq
		for len(queue)+len(reqs) < inFlight && next < len(data) {
			l := min(ioChunk, len(data)-next)
			reqs = append(reqs, writeReq(h, int64(next), data[next:next+l]))
			next += l
		}
		if first {
			reqs = append(reqs, chmodReq(h, perm))
			first = false
		}
		last := next == len(data) && !closed
		if last {
			reqs = append(reqs, handleReq(fxpClose, h))
		}
		if len(reqs) > 0 {
			cs, sent := f.trySend(reqs...)
			closed = closed || (last && sent)
			queue = append(queue, cs...)
		}
		if len(queue) == 0 {
			return nil
		}
		err := f.await(queue[0]).status()
		queue = queue[1:]
		if err != nil {
			return err
		}
	}
}
