package remote

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// tcpInfo is the kernel's TCP_INFO of conn, when conn is a TCP connection.
func tcpInfo(conn net.Conn) (*unix.TCPInfo, bool) {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return nil, false
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return nil, false
	}
	var info *unix.TCPInfo
	var ierr error
	if err := raw.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil || ierr != nil {
		return nil, false
	}
	return info, true
}

// kernelRTT is the smallest round trip the kernel has seen on conn (TCP_INFO's
// min_rtt): the network's, whatever the load on either end.
func kernelRTT(conn net.Conn) (time.Duration, bool) {
	info, ok := tcpInfo(conn)
	if !ok || info.Min_rtt == 0 || info.Min_rtt == ^uint32(0) {
		return 0, false
	}
	return time.Duration(info.Min_rtt) * time.Microsecond, true
}

// kernelDeliveryRate is the goodput the kernel last measured on conn
// (TCP_INFO's delivery_rate, bytes per second): after a bulk upload, the
// rate the path delivered it at, which later small exchanges do not lower.
func kernelDeliveryRate(conn net.Conn) (float64, bool) {
	info, ok := tcpInfo(conn)
	if !ok || info.Delivery_rate == 0 {
		return 0, false
	}
	return float64(info.Delivery_rate), true
}
