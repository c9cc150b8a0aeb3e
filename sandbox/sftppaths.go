package sandbox

import (
	"encoding/binary"
	"io"
	"strings"
)

// SFTP packet types and extensions whose requests carry paths (draft-ietf-secsh-filexfer-02
// and OpenSSH's PROTOCOL).
const (
	fxpOpen     = 3
	fxpLstat    = 7
	fxpSetstat  = 9
	fxpOpendir  = 11
	fxpRemove   = 13
	fxpMkdir    = 14
	fxpRmdir    = 15
	fxpRealpath = 16
	fxpStat     = 17
	fxpRename   = 18
	fxpReadlink = 19
	fxpSymlink  = 20
	fxpExtended = 200

	// maxPacket is pkg/sftp's own limit; longer packets pass through for it to refuse.
	maxPacket = 256 * 1024
)

// sftpPaths rewrites the SFTP requests a client sends so that relative paths
// are relative to dir, as under OpenSSH, whose sftp-server runs in the user's
// home directory.
//
// pkg/sftp's Server resolves relative paths against the test process's
// working directory. Its WithServerWorkingDirectory option fixes that but also
// joins the working directory onto the target of SSH_FXP_SYMLINK, so a
// relative link such as latest -> builds/42 would come out absolute, unlike
// OpenSSH, which stores the target verbatim. This filter makes every path
// argument absolute except symlink targets, which it leaves alone, and lets
// every other byte through unchanged.
type sftpPaths struct {
	r    io.Reader
	dir  string
	buf  []byte // bytes ready to hand out (a header or a rewritten packet)
	pass uint32 // bytes of the current packet still to copy through from r
}

func (p *sftpPaths) Read(b []byte) (int, error) {
	for len(p.buf) == 0 && p.pass == 0 {
		if err := p.next(); err != nil {
			return 0, err
		}
	}
	if len(p.buf) > 0 {
		n := copy(b, p.buf)
		p.buf = p.buf[n:]
		return n, nil
	}
	if uint32(len(b)) > p.pass {
		b = b[:p.pass]
	}
	n, err := p.r.Read(b)
	p.pass -= uint32(n)
	if err == io.EOF && p.pass > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// next reads the next packet's header and either buffers a rewritten packet
// or arranges for the packet to be copied through.
func (p *sftpPaths) next() error {
	var hdr [5]byte
	if _, err := io.ReadFull(p.r, hdr[:4]); err != nil {
		return err // io.EOF between packets is a clean end
	}
	length := binary.BigEndian.Uint32(hdr[:4])
	if length == 0 {
		p.buf = hdr[:4] // let pkg/sftp refuse it
		return nil
	}
	if _, err := io.ReadFull(p.r, hdr[4:]); err != nil {
		return noEOF(err)
	}
	typ := hdr[4]
	if !carriesPaths(typ) || length > maxPacket {
		p.buf = hdr[:]
		p.pass = length - 1
		return nil
	}
	body := make([]byte, length-1)
	if _, err := io.ReadFull(p.r, body); err != nil {
		return noEOF(err)
	}
	body = absolutize(typ, body, p.dir)
	p.buf = make([]byte, 5, 5+len(body))
	binary.BigEndian.PutUint32(p.buf, uint32(len(body)+1))
	p.buf[4] = typ
	p.buf = append(p.buf, body...)
	return nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func carriesPaths(typ byte) bool {
	switch typ {
	case fxpOpen, fxpLstat, fxpSetstat, fxpOpendir, fxpRemove, fxpMkdir, fxpRmdir,
		fxpRealpath, fxpStat, fxpRename, fxpReadlink, fxpSymlink, fxpExtended:
		return true
	}
	return false
}

// absolutize returns body (a request after its type byte) with its relative
// path arguments joined onto dir. A body it cannot parse is returned as is,
// for pkg/sftp to answer as it would.
func absolutize(typ byte, body []byte, dir string) []byte {
	if len(body) < 4 {
		return body
	}
	out := append([]byte(nil), body[:4]...) // request id
	rest := body[4:]

	// paths[i] says whether the i-th string after the id is a path to rewrite.
	var paths []bool
	switch typ {
	case fxpRename:
		paths = []bool{true, true}
	case fxpSymlink:
		// OpenSSH's order: target first, then the link (the draft has them
		// the other way round). The target is stored verbatim.
		paths = []bool{false, true}
	case fxpExtended:
		name, r, ok := sftpString(rest)
		if !ok {
			return body
		}
		out = appendSFTPString(out, name)
		rest = r
		switch name {
		case "posix-rename@openssh.com", "hardlink@openssh.com":
			paths = []bool{true, true}
		case "statvfs@openssh.com":
			paths = []bool{true}
		default:
			return body
		}
	default:
		paths = []bool{true}
	}

	for _, isPath := range paths {
		s, r, ok := sftpString(rest)
		if !ok {
			return body
		}
		if isPath && !strings.HasPrefix(s, "/") {
			if s == "" {
				s = dir
			} else {
				// No cleaning: the kernel resolves "..", symlinks and a
				// trailing slash exactly as it would for OpenSSH.
				s = dir + "/" + s
			}
		}
		out = appendSFTPString(out, s)
		rest = r
	}
	return append(out, rest...)
}

// sftpString splits an SFTP string (uint32 length, bytes) off the front of b.
func sftpString(b []byte) (s string, rest []byte, ok bool) {
	if len(b) < 4 {
		return "", b, false
	}
	n := binary.BigEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4) {
		return "", b, false
	}
	return string(b[4 : 4+n]), b[4+n:], true
}

func appendSFTPString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}
