package remote

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// This file is the client end of an SFTP session (version 3,
// draft-ietf-secsh-filexfer-02, with OpenSSH's extensions), written so that
// requests can be pipelined: many sent in one write, in the order given, each
// answered on its own channel. pkg/sftp's client keeps its packets to itself
// and waits inside some calls (ReadDir waits for the CLOSE), so requests of
// different kinds could not share a round trip through it. SFTP servers
// (OpenSSH's sftp-server, pkg/sftp's Server) take requests in the order they
// arrive, so a request sent before another is carried out before it.

// SFTP packet types.
const (
	fxpInit          = 1
	fxpVersion       = 2
	fxpOpen          = 3
	fxpClose         = 4
	fxpRead          = 5
	fxpWrite         = 6
	fxpLstat         = 7
	fxpFsetstat      = 10
	fxpOpendir       = 11
	fxpReaddir       = 12
	fxpRemove        = 13
	fxpMkdir         = 14
	fxpRmdir         = 15
	fxpStat          = 17
	fxpReadlink      = 19
	fxpSymlink       = 20
	fxpStatus        = 101
	fxpHandle        = 102
	fxpData          = 103
	fxpName          = 104
	fxpAttrs         = 105
	fxpExtended      = 200
	fxpExtendedReply = 201
)

// SSH_FXF_* open flags.
const (
	fxfRead  = 0x01
	fxfWrite = 0x02
	fxfCreat = 0x08
	fxfExcl  = 0x20
)

// SSH_FILEXFER_ATTR_* flags.
const (
	attrSize        = 0x00000001
	attrUIDGID      = 0x00000002
	attrPermissions = 0x00000004
	attrACModTime   = 0x00000008
	attrExtended    = 0x80000000
)

// SSH_FX_* status codes.
const (
	fxOK               = 0
	fxEOF              = 1
	fxNoSuchFile       = 2
	fxPermissionDenied = 3
	fxFailure          = 4
	fxOpUnsupported    = 8
)

const (
	// ioChunk is the data of one READ or WRITE: what every server takes
	// (pkg/sftp's answers no more; OpenSSH's up to 255 KiB).
	ioChunk = 32 << 10
	// inFlight bounds one file's READs or WRITEs awaiting an answer: 2 MiB,
	// the window OpenSSH grants a session channel.
	inFlight = 64
	// maxPacket bounds what the server may send in one packet (OpenSSH's
	// own limit is 256 KiB).
	maxPacket = 1 << 20
)

// statusError is an SSH_FXP_STATUS that is not SSH_FX_OK: the server
// answered, and said no.
type statusError struct {
	code uint32
	msg  string
}

func (e *statusError) Error() string {
	var name string
	switch e.code {
	case fxEOF:
		name = "SSH_FX_EOF"
	case fxNoSuchFile:
		name = "SSH_FX_NO_SUCH_FILE"
	case fxPermissionDenied:
		name = "SSH_FX_PERMISSION_DENIED"
	case fxFailure:
		name = "SSH_FX_FAILURE"
	case fxOpUnsupported:
		name = "SSH_FX_OP_UNSUPPORTED"
	default:
		name = fmt.Sprintf("SSH_FX %d", e.code)
	}
	msg := strings.ToLower(Sanitize(e.msg))
	if msg == "" {
		return name
	}
	return msg + " (" + name + ")"
}

// Is lets callers test for fs.ErrNotExist and fs.ErrPermission.
func (e *statusError) Is(target error) bool {
	switch target {
	case fs.ErrNotExist:
		return e.code == fxNoSuchFile
	case fs.ErrPermission:
		return e.code == fxPermissionDenied
	}
	return false
}

func isStatus(err error, code uint32) bool {
	var se *statusError
	return errors.As(err, &se) && se.code == code
}

// sftpReq is one request: its type, and what follows its id.
type sftpReq struct {
	typ  byte
	body []byte
}

// sftpReply is one answer: its type and what follows its id, or why none
// came (the session ended, or ctx did).
type sftpReply struct {
	typ  byte
	body []byte
	err  error
}

// sftpSession is one SFTP session on an SSH channel. Safe for concurrent use.
type sftpSession struct {
	ch ssh.Channel

	wmu sync.Mutex // one write at a time: a batch of requests goes in one

	mu      sync.Mutex
	next    uint32
	waiting map[uint32]chan sftpReply
	err     error // why the session ended; every request after fails with it
}

// startSFTP opens the SFTP subsystem on a new session channel and sends
// INIT: two round trips (the channel, the subsystem request). The VERSION
// is not waited for: requests follow INIT at once, and the answer arrives
// with theirs (every request used here is in version 3 or an extension
// that a server without it refuses with SSH_FX_OP_UNSUPPORTED).
func startSFTP(c *ssh.Client) (*sftpSession, error) {
	ch, reqs, err := c.OpenChannel("session", nil)
	if err != nil {
		return nil, err
	}
	go ssh.DiscardRequests(reqs) // keepalives on the channel: refused, as x/crypto's sessions do
	ok, err := ch.SendRequest("subsystem", true, ssh.Marshal(struct{ Name string }{"sftp"}))
	if err == nil && !ok {
		err = errors.New("the host refused the sftp subsystem")
	}
	if err != nil {
		ch.Close()
		return nil, err
	}
	go io.Copy(io.Discard, ch.Stderr()) // unread, it would stall the channel once its window filled
	s := &sftpSession{ch: ch, next: 1, waiting: map[uint32]chan sftpReply{}}
	if _, err := ch.Write([]byte{0, 0, 0, 5, fxpInit, 0, 0, 0, 3}); err != nil {
		ch.Close()
		return nil, err
	}
	go s.readLoop()
	return s, nil
}

// close ends the session without waiting for the host: requests in flight
// fail at once.
func (s *sftpSession) close() {
	s.fail(fmt.Errorf("%w: sftp session closed", ErrConnLost))
	s.ch.Close()
}

// send writes reqs in one write, in order, and returns where each answer
// will arrive. Once the session has ended, each gets its error at once.
func (s *sftpSession) send(reqs ...sftpReq) []chan sftpReply {
	out := make([]chan sftpReply, len(reqs))
	for i := range out {
		out[i] = make(chan sftpReply, 1)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		for _, c := range out {
			c <- sftpReply{err: err}
		}
		return out
	}
	size := 0
	for _, r := range reqs {
		size += 9 + len(r.body)
	}
	buf := make([]byte, 0, size)
	for i, r := range reqs {
		id := s.next
		s.next++
		s.waiting[id] = out[i]
		buf = binary.BigEndian.AppendUint32(buf, uint32(5+len(r.body)))
		buf = append(buf, r.typ)
		buf = binary.BigEndian.AppendUint32(buf, id)
		buf = append(buf, r.body...)
	}
	s.mu.Unlock()
	if _, err := s.ch.Write(buf); err != nil {
		s.fail(fmt.Errorf("%w: sending sftp requests: %v", ErrConnLost, err))
	}
	return out
}

// fail ends the session: every request waiting gets err (the first reason
// given stays).
func (s *sftpSession) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	err = s.err
	waiting := s.waiting
	s.waiting = nil
	s.mu.Unlock()
	for _, c := range waiting {
		c <- sftpReply{err: err}
	}
}

// readLoop hands each answer to its request until the session ends.
func (s *sftpSession) readLoop() {
	r := bufio.NewReaderSize(s.ch, 64<<10)
	typ, body, err := readPacket(r)
	switch {
	case err != nil:
	case typ != fxpVersion || len(body) < 4:
		err = fmt.Errorf("sftp: the host sent packet type %d, not its version", typ)
	case binary.BigEndian.Uint32(body) < 3:
		err = fmt.Errorf("sftp: the host speaks version %d, not 3", binary.BigEndian.Uint32(body))
	}
	for err == nil {
		if typ, body, err = readPacket(r); err != nil {
			break
		}
		if len(body) < 4 {
			err = fmt.Errorf("sftp: a packet of type %d without an id", typ)
			break
		}
		id := binary.BigEndian.Uint32(body)
		s.mu.Lock()
		c := s.waiting[id]
		delete(s.waiting, id)
		s.mu.Unlock()
		if c == nil {
			err = fmt.Errorf("sftp: an answer to no request (id %d)", id)
			break
		}
		c <- sftpReply{typ: typ, body: body[4:]}
	}
	if errors.Is(err, io.EOF) {
		err = errors.New("the host ended the sftp session")
	}
	s.fail(fmt.Errorf("%w: %v", ErrConnLost, err))
}

// printable reports whether b is text a shell would print: printable ASCII
// and white space.
func printable(b []byte) bool {
	for _, c := range b {
		if (c < 0x20 || c > 0x7e) && c != '\n' && c != '\r' && c != '\t' {
			return false
		}
	}
	return true
}

func readPacket(r *bufio.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n < 1 || n > maxPacket {
		if text := hdr[:]; printable(text) {
			// The login shell of the host runs sftp-server and printed
			// something first: the classic "is your shell clean?".
			// The rest of its line, from what already came (a read could wait forever).
			more, _ := r.Peek(min(r.Buffered(), 120))
			if i := bytes.IndexByte(more, '\n'); i >= 0 {
				more = more[:i]
			}
			return 0, nil, fmt.Errorf("sftp: the host sent text before SFTP began (%q): the login shell prints something even when not interactive (~/.bashrc, ~/.profile, /etc/bash.bashrc?); make it print only for interactive shells", Sanitize(strings.TrimSpace(string(text)+string(more))))
		}
		return 0, nil, fmt.Errorf("sftp: a packet of %d bytes", n)
	}
	body := make([]byte, n-1)
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return hdr[4], body, nil
}

// Requests.

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

func pathReq(typ byte, p string) sftpReq { return sftpReq{typ, appendString(nil, p)} }

func handleReq(typ byte, h string) sftpReq { return sftpReq{typ, appendString(nil, h)} }

// openReq opens p with SSH_FXF_* flags; perm, when not 0, is the mode
// of a file it creates.
func openReq(p string, flags uint32, perm fs.FileMode) sftpReq {
	b := appendString(nil, p)
	b = binary.BigEndian.AppendUint32(b, flags)
	if perm == 0 {
		return sftpReq{fxpOpen, binary.BigEndian.AppendUint32(b, 0)}
	}
	b = binary.BigEndian.AppendUint32(b, attrPermissions)
	return sftpReq{fxpOpen, binary.BigEndian.AppendUint32(b, posixMode(perm))}
}

func readReq(h string, off int64, n int) sftpReq {
	b := appendString(nil, h)
	b = binary.BigEndian.AppendUint64(b, uint64(off))
	return sftpReq{fxpRead, binary.BigEndian.AppendUint32(b, uint32(n))}
}

func writeReq(h string, off int64, data []byte) sftpReq {
	b := make([]byte, 0, 16+len(h)+len(data))
	b = appendString(b, h)
	b = binary.BigEndian.AppendUint64(b, uint64(off))
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	return sftpReq{fxpWrite, append(b, data...)}
}

func chmodReq(h string, perm fs.FileMode) sftpReq {
	b := appendString(nil, h)
	b = binary.BigEndian.AppendUint32(b, attrPermissions)
	return sftpReq{fxpFsetstat, binary.BigEndian.AppendUint32(b, posixMode(perm))}
}

// symlinkReq makes p -> target. OpenSSH takes SSH_FXP_SYMLINK's two paths
// in the reverse of the draft's order, target first; pkg/sftp's server
// does the same.
func symlinkReq(target, p string) sftpReq {
	return sftpReq{fxpSymlink, appendString(appendString(nil, target), p)}
}

func mkdirReq(p string) sftpReq {
	return sftpReq{fxpMkdir, binary.BigEndian.AppendUint32(appendString(nil, p), 0)}
}

func extendedReq(name string, args ...string) sftpReq {
	b := appendString(nil, name)
	for _, a := range args {
		b = appendString(b, a)
	}
	return sftpReq{fxpExtended, b}
}

// statvfsReq asks statvfs@openssh.com of p: its read-only flag explains
// SSH_FX_FAILURE. A server without the extension answers
// SSH_FX_OP_UNSUPPORTED, and nothing more is said.
func statvfsReq(p string) sftpReq { return extendedReq("statvfs@openssh.com", p) }

// Answers.

// reader takes an answer apart; a short answer is an error, once.
type reader struct {
	b   []byte
	err error
}

func (r *reader) u32() uint32 {
	if len(r.b) < 4 {
		r.short()
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *reader) u64() uint64 {
	if len(r.b) < 8 {
		r.short()
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *reader) str() string {
	n := r.u32()
	if uint32(len(r.b)) < n {
		r.short()
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *reader) short() {
	if r.err == nil {
		r.err = errors.New("sftp: an answer cut short")
	}
	r.b = nil
}

// status is an answer that should be SSH_FXP_STATUS: nil for SSH_FX_OK.
func (a sftpReply) status() error {
	if a.err != nil {
		return a.err
	}
	if a.typ != fxpStatus {
		return fmt.Errorf("sftp: packet type %d where a status was due", a.typ)
	}
	return a.statusErr()
}

func (a sftpReply) statusErr() error {
	r := reader{b: a.body}
	code := r.u32()
	msg := r.str()
	if r.err != nil && code == 0 {
		return r.err
	}
	if code == fxOK {
		return nil
	}
	return &statusError{code: code, msg: msg}
}

// expect is an answer of type typ, else its error.
func (a sftpReply) expect(typ byte) (*reader, error) {
	if a.err != nil {
		return nil, a.err
	}
	switch a.typ {
	case typ:
		return &reader{b: a.body}, nil
	case fxpStatus:
		if err := a.statusErr(); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("sftp: packet type %d where %d was due", a.typ, typ)
}

func (a sftpReply) handle() (string, error) {
	r, err := a.expect(fxpHandle)
	if err != nil {
		return "", err
	}
	h := r.str()
	return h, r.err
}

// data is a READ's answer; io.EOF past the end of the file.
func (a sftpReply) data() ([]byte, error) {
	r, err := a.expect(fxpData)
	if isStatus(err, fxEOF) {
		return nil, io.EOF
	}
	if err != nil {
		return nil, err
	}
	n := r.u32()
	if uint32(len(r.b)) < n {
		return nil, errors.New("sftp: data cut short")
	}
	return r.b[:n], r.err
}

// attrs is an LSTAT's or STAT's answer, as a FileInfo named name.
func (a sftpReply) attrs(name string) (fs.FileInfo, error) {
	r, err := a.expect(fxpAttrs)
	if err != nil {
		return nil, err
	}
	fi := r.attrs(name)
	return fi, r.err
}

// names is a READDIR's answer (io.EOF at the end of the folder) or a
// READLINK's.
func (a sftpReply) names() ([]string, error) {
	r, err := a.expect(fxpName)
	if isStatus(err, fxEOF) {
		return nil, io.EOF
	}
	if err != nil {
		return nil, err
	}
	n := r.u32()
	var names []string
	for i := uint32(0); i < n && r.err == nil; i++ {
		names = append(names, r.str())
		r.str() // longname
		r.attrs("")
	}
	return names, r.err
}

// statvfsReadOnly is a statvfs@openssh.com answer's ST_RDONLY flag.
func (a sftpReply) statvfsReadOnly() (bool, error) {
	r, err := a.expect(fxpExtendedReply)
	if err != nil {
		return false, err
	}
	for range 9 { // bsize frsize blocks bfree bavail files ffree favail fsid
		r.u64()
	}
	flag := r.u64()
	return flag&stRdonly != 0, r.err
}

// stRdonly is ST_RDONLY in statvfs@openssh.com's flags.
const stRdonly = 0x1

func (r *reader) attrs(name string) *fileInfo {
	fi := &fileInfo{name: name}
	flags := r.u32()
	if flags&attrSize != 0 {
		fi.size = int64(r.u64())
	}
	if flags&attrUIDGID != 0 {
		r.u32()
		r.u32()
	}
	if flags&attrPermissions != 0 {
		fi.mode = fileMode(r.u32())
	}
	if flags&attrACModTime != 0 {
		r.u32() // atime
		fi.mtime = time.Unix(int64(r.u32()), 0)
	}
	if flags&attrExtended != 0 {
		for n := r.u32(); n > 0 && r.err == nil; n-- {
			r.str()
			r.str()
		}
	}
	return fi
}

// fileInfo is what LSTAT says of a file.
type fileInfo struct {
	name  string
	size  int64
	mode  fs.FileMode
	mtime time.Time
}

func (f *fileInfo) Name() string       { return f.name }
func (f *fileInfo) Size() int64        { return f.size }
func (f *fileInfo) Mode() fs.FileMode  { return f.mode }
func (f *fileInfo) ModTime() time.Time { return f.mtime }
func (f *fileInfo) IsDir() bool        { return f.mode.IsDir() }
func (f *fileInfo) Sys() any           { return nil }

// POSIX file type and mode bits, as SFTP carries them.
const (
	sIFMT   = 0o170000
	sIFSOCK = 0o140000
	sIFLNK  = 0o120000
	sIFREG  = 0o100000
	sIFBLK  = 0o060000
	sIFDIR  = 0o040000
	sIFCHR  = 0o020000
	sIFIFO  = 0o010000
	sISUID  = 0o4000
	sISGID  = 0o2000
	sISVTX  = 0o1000
)

func fileMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	switch m & sIFMT {
	case sIFSOCK:
		mode |= fs.ModeSocket
	case sIFLNK:
		mode |= fs.ModeSymlink
	case sIFBLK:
		mode |= fs.ModeDevice
	case sIFDIR:
		mode |= fs.ModeDir
	case sIFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case sIFIFO:
		mode |= fs.ModeNamedPipe
	}
	if m&sISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if m&sISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if m&sISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

// posixMode is the permission bits of m as chmod(2) takes them.
func posixMode(m fs.FileMode) uint32 {
	p := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		p |= sISUID
	}
	if m&fs.ModeSetgid != 0 {
		p |= sISGID
	}
	if m&fs.ModeSticky != 0 {
		p |= sISVTX
	}
	return p
}
