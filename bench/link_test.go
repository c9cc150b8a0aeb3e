//go:build bench

package bench

import (
	"encoding/binary"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Checks of -link: go test -tags bench -run 'TestParseLink|TestDelayLine|TestLink' ./bench
// (TestLinkEndToEnd needs root).

func TestParseLink(t *testing.T) {
	for _, c := range []struct {
		in          string
		want        LinkSpec
		text, short string
	}{
		{"delay=20ms,rate=100mbit", LinkSpec{20 * time.Millisecond, 100e6}, "20 ms each way (40 ms round trip), 100 Mbit/s each direction", "20 ms each way, 100 Mbit/s"},
		{"rate=1.5gbit", LinkSpec{0, 1.5e9}, "1.5 Gbit/s each direction", "1.5 Gbit/s"},
		{" delay=250us ", LinkSpec{250 * time.Microsecond, 0}, "0.25 ms each way (0.5 ms round trip), no rate cap", "0.25 ms each way"},
		{"rate=512kbit,delay=1s", LinkSpec{time.Second, 512e3}, "1000 ms each way (2000 ms round trip), 512 kbit/s each direction", "1000 ms each way, 512 kbit/s"},
	} {
		got, err := ParseLink(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseLink(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
			continue
		}
		if got.String() != c.text {
			t.Errorf("%q reads %q, want %q", c.in, got.String(), c.text)
		}
		if got.Short() != c.short {
			t.Errorf("%q reads %q in short, want %q", c.in, got.Short(), c.short)
		}
	}
	for _, bad := range []string{"", "delay=0", "delay=-1ms", "delay=20", "rate=100", "rate=100mbps", "rate=10bit", "speed=1gbit", "delay"} {
		if l, err := ParseLink(bad); err == nil {
			t.Errorf("ParseLink(%q) = %+v, want an error", bad, l)
		}
	}
	if got := strings.Join(LinkSpec{10 * time.Millisecond, 200e6}.tbfArgs(), " "); got != "tbf rate 200000000bit burst 80000 latency 20000us" {
		t.Errorf("tbf arguments %q", got)
	}
}

// seqpacketPair is a connected pair of sockets that keep packet boundaries,
// as a TUN device does.
func seqpacketPair(t *testing.T) (*os.File, *os.File) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "b")
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestDelayLine(t *testing.T) {
	const (
		delay = 30 * time.Millisecond
		n     = 3000
		size  = 1000
	)
	in, lineIn := seqpacketPair(t)
	lineOut, out := seqpacketPair(t)
	done := make(chan error, 1)
	go func() { done <- delayLine(lineOut, lineIn, delay, 1500) }()
	base := time.Now()
	go func() {
		p := make([]byte, size)
		for i := range n {
			binary.BigEndian.PutUint32(p, uint32(i))
			binary.BigEndian.PutUint64(p[4:], uint64(time.Since(base)))
			if _, err := in.Write(p); err != nil {
				return
			}
		}
		in.Close() // the line's source ends: delayLine returns once all is written
	}()
	p := make([]byte, 1500)
	var first time.Duration
	for i := range n {
		m, err := out.Read(p)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		at := time.Since(base)
		if m != size {
			t.Fatalf("packet %d: %d bytes, want %d", i, m, size)
		}
		if seq := binary.BigEndian.Uint32(p); seq != uint32(i) {
			t.Fatalf("packet number %d arrived in place %d: out of order", seq, i)
		}
		sent := time.Duration(binary.BigEndian.Uint64(p[4:]))
		if at-sent < delay {
			t.Fatalf("packet %d took %v, less than the delay %v", i, at-sent, delay)
		}
		if i == 0 {
			first = at - sent
		}
	}
	took := time.Since(base)
	if err := <-done; err != io.EOF {
		t.Errorf("delayLine returned %v, want io.EOF once its source closed", err)
	}
	// In flight together: all packets take about one delay, not n of them.
	if took > 30*delay {
		t.Errorf("%d packets took %v through a %v delay line: packets are not in flight together", n, took, delay)
	}
	t.Logf("first packet %v, %d packets %v", first, n, took)
}

// TestLinkEndToEnd builds a real link (root only): the round trip and the
// rate are what was asked for, the tools' namespace reaches nothing but the
// link, and both meters count a stream relayed to a loopback server.
func TestLinkEndToEnd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces, TUN devices, tc")
	}
	spec := LinkSpec{Delay: 5 * time.Millisecond, Rate: 50e6}
	l, err := StartLink(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	c, err := l.Check(4 << 20)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(c)
	if c.RTT < 2*spec.Delay || c.RTTLo < 2*spec.Delay || c.RTT > 2*spec.Delay+20*time.Millisecond {
		t.Errorf("round trip %v (min %v), want %v", c.RTT, c.RTTLo, 2*spec.Delay)
	}
	for _, r := range []float64{c.UpMbit, c.DownMbit} {
		if r > 50*1.05 || r < 50*0.4 {
			t.Errorf("goodput %.1f Mbit/s through a 50 Mbit/s cap (up %.1f, down %.1f)", r, c.UpMbit, c.DownMbit)
		}
	}

	out, err := l.Clients.CombinedOutput(exec.Command("ip", "-o", "route", "show", "table", "main"))
	if err != nil {
		t.Fatal(err)
	}
	if routes := strings.TrimSpace(string(out)); strings.Count(routes, "\n") != 0 || !strings.HasPrefix(routes, hostsNet+" dev "+tunClients) {
		t.Errorf("the tools' namespace routes:\n%s\nwant only %s via %s", routes, hostsNet, tunClients)
	}

	// A "host" on the bench's loopback, reached through the relay.
	srv, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		for {
			c, err := srv.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	if _, err := l.Clients.Dial(srv.Addr().String(), time.Second); err == nil {
		t.Errorf("the tools' namespace reached %s on the bench's loopback, around the link", srv.Addr())
	}
	relay, err := newProxyMeter([]string{srv.Addr().String()}, func(i int) (net.Listener, error) { return l.Hosts.Listen(hostAddr(i)) }, "relay")
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	if got := relay.Addr(0); got != "198.19.1.1:22" {
		t.Errorf("host 0 listens on %s", got)
	}
	nm, err := newNftMeter("fdbenchtest", []string{relay.Addr(0)}, nftPlace{l.Hosts, "input"}, nftPlace{l.Clients, "input"})
	if err != nil {
		t.Fatal(err)
	}
	defer nm.Close()
	conn, err := l.Clients.Dial(relay.Addr(0), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	const size = 1 << 20
	go func() { _, _ = conn.Write(make([]byte, size)) }()
	if _, err := io.ReadFull(conn, make([]byte, size)); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	pt, _ := relay.Read()
	nt, err := nm.Read()
	if err != nil {
		t.Fatal(err)
	}
	if pt[0].Up != size || pt[0].Down != size {
		t.Errorf("relay counted %+v, want %d each way", pt[0], size)
	}
	// IP bytes: the payload plus 40-52 bytes of headers per 1448-byte segment, and the ACKs.
	for _, v := range []int64{nt[0].Up, nt[0].Down} {
		if v < size || v > size*11/10 {
			t.Errorf("nft counted %+v, want a little over %d each way", nt[0], size)
		}
	}
}
