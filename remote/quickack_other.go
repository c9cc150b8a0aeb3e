//go:build !linux

package remote

import "net"

// ackAtOnce has no per-socket control here (TCP_QUICKACK is Linux's): the
// first session on an OpenSSH host may wait for a delayed ACK. See the Linux
// version.
func ackAtOnce(conn net.Conn) (net.Conn, func()) { return conn, func() {} }
