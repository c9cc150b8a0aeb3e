package remote

import (
	"net"
	"sync"
)

// Holder is a Host that can hold back its next request and send it later, so
// that requests to many hosts leave together: the cutover holds every host's
// rename, then releases them all in one tight loop.
type Holder interface {
	// HoldNext holds back the last byte of the next packet written to the
	// connection. held is closed once a byte is held; release sends it (and
	// is safe to call more than once, or when nothing was held). Until then
	// the host cannot decrypt the packet, so it has not seen the request; a
	// write of anything else first sends the held byte, keeping the stream in
	// order.
	HoldNext() (held <-chan struct{}, release func() error)
}

var _ Holder = (*Client)(nil)

// HoldNext implements Holder: all the work of a request (encryption,
// queueing, the write of all but one byte) is done before the release, which
// then costs one 1-byte write per host.
func (c *Client) HoldNext() (<-chan struct{}, func() error) {
	return c.hold.arm()
}

// holdConn is the connection under SSH: it can hold back the last byte of
// one write. x/crypto/ssh writes each packet with one Write (a bufio flush),
// so the byte held is the last of the packet's MAC.
type holdConn struct {
	net.Conn
	mu    sync.Mutex
	armed chan struct{} // closed when a byte is held; nil when not armed
	held  []byte        // the byte held back, or nil
}

func (h *holdConn) arm() (<-chan struct{}, func() error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch := make(chan struct{})
	h.armed = ch
	return ch, func() error {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.armed == ch {
			h.armed = nil // nothing written yet: hold nothing
		}
		return h.flush()
	}
}

// flush sends the byte held, if any. h.mu is held.
func (h *holdConn) flush() error {
	if h.held == nil {
		return nil
	}
	b := h.held
	h.held = nil
	_, err := h.Conn.Write(b)
	if err != nil {
		h.Conn.Close() // the request's fate is unknown: end it as a lost connection
	}
	return err
}

func (h *holdConn) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.flush(); err != nil {
		return 0, err
	}
	if h.armed == nil || len(p) == 0 {
		return h.Conn.Write(p)
	}
	n, err := h.Conn.Write(p[:len(p)-1])
	if err != nil {
		return n, err
	}
	h.held = []byte{p[len(p)-1]}
	close(h.armed)
	h.armed = nil
	return len(p), nil
}
