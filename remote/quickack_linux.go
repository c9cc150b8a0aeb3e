package remote

import (
	"net"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// ackAtOnce makes the client acknowledge what it receives at once, instead
// of after Linux's delayed-ACK timer (40 ms at least), until done is called.
//
// sshd leaves Nagle's algorithm on for sessions without a terminal, so when it
// writes two small messages in a row it holds the second until the first is
// acknowledged. Right after authentication OpenSSH sends its host keys
// (hostkeys-00@openssh.com), then the answer to the client's first channel
// open: the client, waiting for that answer, has nothing to send that would
// carry the acknowledgement, and every connection stalled 40 ms there
// (tcpdump: a pure ACK 40.3 ms after the host-keys packet, the channel's
// confirmation right behind it). TCP_QUICKACK is not sticky, so it is set
// again after every read. Dial calls done once SFTP is open: no later
// exchange was seen to stall, and extra pure ACKs would only add work to the
// client in the cutover.
func ackAtOnce(conn net.Conn) (c net.Conn, done func()) {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return conn, func() {}
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return conn, func() {}
	}
	q := &quickAckConn{Conn: conn, raw: raw}
	q.on.Store(true)
	return q, func() { q.on.Store(false) }
}

type quickAckConn struct {
	net.Conn
	raw syscall.RawConn
	on  atomic.Bool
}

func (c *quickAckConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.on.Load() {
		c.raw.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_QUICKACK, 1) })
	}
	return n, err
}
