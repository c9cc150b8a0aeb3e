// Package rtt counts the round trips a client waits for on a connection:
// it delays everything the server sends by a fixed time, as a link that
// far away would, and counts the reads that had to wait that long for it.
// Work on either side does not count unless it lasts as long as the
// delay, and requests sent together (pipelined, or on several channels at
// once) count once: what is counted is the round trips of wall time a
// real link would add.
package rtt

import (
	"net"
	"sync"
	"time"
)

// Link is a delay line for the connections it wraps, and their count.
type Link struct {
	OneWay time.Duration // added to everything the server sends

	mu    sync.Mutex
	waits int
	at    []time.Time
}

// Waits is how many times a client read waited for the server so far, over
// every connection of the link.
func (l *Link) Waits() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.waits
}

// WaitTimes is, for each wait counted so far, about when the client sent
// what it waited for (the answer's arrival less OneWay: the host's work
// is small beside the delay): a test lays them beside what the client was
// doing then, to say which step each round trip is spent on.
func (l *Link) WaitTimes() []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]time.Time(nil), l.at...)
}

// Reset sets the count back to zero.
func (l *Link) Reset() {
	l.mu.Lock()
	l.waits = 0
	l.at = nil
	l.mu.Unlock()
}

// Wrap delays what c receives and counts the waits.
func (l *Link) Wrap(c net.Conn) net.Conn {
	d := &conn{Conn: c, link: l, chunks: make(chan chunk, 4096)}
	go d.pump()
	return d
}

type chunk struct {
	at   time.Time
	data []byte
	err  error
}

type conn struct {
	net.Conn
	link   *Link
	chunks chan chunk
	rest   []byte
	err    error
}

// pump reads what the server sends as it arrives, stamped.
func (d *conn) pump() {
	for {
		buf := make([]byte, 32<<10)
		n, err := d.Conn.Read(buf)
		d.chunks <- chunk{time.Now(), buf[:n], err}
		if err != nil {
			return
		}
	}
}

// Read hands over what arrived once it is OneWay old; a read that waited
// (for data not there yet, or not old enough) about OneWay or more counts
// as a round trip.
func (d *conn) Read(p []byte) (int, error) {
	start := time.Now()
	for len(d.rest) == 0 {
		if d.err != nil {
			return 0, d.err
		}
		c := <-d.chunks
		if wait := time.Until(c.at.Add(d.link.OneWay)); wait > 0 {
			<-time.After(wait)
		}
		d.rest, d.err = c.data, c.err
	}
	if time.Since(start) >= d.link.OneWay*9/10 {
		d.link.mu.Lock()
		d.link.waits++
		d.link.at = append(d.link.at, time.Now().Add(-d.link.OneWay))
		d.link.mu.Unlock()
	}
	n := copy(p, d.rest)
	d.rest = d.rest[n:]
	return n, nil
}
