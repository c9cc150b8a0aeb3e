//go:build bench

package bench

// A slow link between the tools and the hosts (-link delay=10ms,rate=200mbit).
//
// The tools (fleetdeploy, rsync, ssh) run in a network namespace of their own,
// "clients", whose only way out is a TUN device. The hosts are reached in a
// second namespace, "hosts", through its own TUN device. The bench joins the
// two devices in user space: a delay line per direction reads each IP packet,
// stamps it, and writes it into the other device once the one-way delay has
// passed, in order. TCP runs end to end between the tools and the hosts' side
// of the link, so it meets the real round trip: handshakes, slow start,
// congestion window, delayed ACKs. The rate cap is tc's tbf on the egress of
// each TUN device (clients -> hosts on the clients' one, hosts -> clients on
// the hosts'), so each direction has its own cap, shared by all hosts, like the
// deploy machine's uplink.
//
// The sshd hosts of internal/sshtest listen on 127.0.0.1 of the bench's own
// namespace, where nothing but loopback reaches them: in the hosts namespace
// a relay (proxyMeter) listens on each host's address (198.19.x.y:22) and
// passes the byte stream on to that host's sshd over loopback (tens of µs).
// The relay is the one place TCP is terminated, on the hosts' side, after the
// delay and the cap.
//
// Nothing is added to the machine's own namespace (no address, route or
// qdisc): both namespaces are anonymous, held open by the bench's file
// descriptors, so the kernel removes them, their devices and their qdiscs when
// the bench closes them or dies, however it dies. Addresses come from
// 198.18.0.0/15 (RFC 2544, set aside for benchmarks) and exist only inside the
// two namespaces; the clients namespace has no route anywhere but the link.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// LinkSpec is what -link asks for.
type LinkSpec struct {
	Delay time.Duration // one way; the round trip is twice that
	Rate  int64         // bits per second in each direction; 0: no cap
}

// ParseLink reads "delay=20ms,rate=100mbit" (either part may be left out).
func ParseLink(s string) (LinkSpec, error) {
	var l LinkSpec
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "delay":
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 || d > 10*time.Second {
				return l, fmt.Errorf("-link: delay %q: want a duration from 0 to 10s, e.g. 20ms", v)
			}
			l.Delay = d
		case "rate":
			r, err := parseRate(v)
			if err != nil {
				return l, fmt.Errorf("-link: %v", err)
			}
			l.Rate = r
		default:
			return l, fmt.Errorf("-link: unknown part %q: want delay=DURATION and/or rate=RATE, e.g. delay=20ms,rate=100mbit", part)
		}
	}
	if l == (LinkSpec{}) {
		return l, fmt.Errorf("-link %q: give a delay above 0 and/or a rate, e.g. delay=20ms,rate=100mbit", s)
	}
	return l, nil
}

var rateUnits = []struct {
	suffix, unit string
	bits         float64
}{{"gbit", "Gbit/s", 1e9}, {"mbit", "Mbit/s", 1e6}, {"kbit", "kbit/s", 1e3}, {"bit", "bit/s", 1}}

// parseRate reads a rate as tc writes it: 100mbit, 1.5gbit, 512kbit (powers of 1000).
func parseRate(v string) (int64, error) {
	for _, u := range rateUnits {
		if num, ok := strings.CutSuffix(strings.ToLower(v), u.suffix); ok {
			f, err := strconv.ParseFloat(num, 64)
			if err != nil || f*u.bits < 64e3 || f*u.bits > 100e9 {
				break
			}
			return int64(f * u.bits), nil
		}
	}
	return 0, fmt.Errorf("rate %q: want 64kbit to 100gbit, written like 512kbit, 100mbit or 1gbit", v)
}

// formatRate writes bits per second for people: 200 Mbit/s.
func formatRate(bits int64) string {
	for _, u := range rateUnits {
		if float64(bits) >= u.bits {
			return strconv.FormatFloat(float64(bits)/u.bits, 'f', -1, 64) + " " + u.unit
		}
	}
	return fmt.Sprintf("%d bit/s", bits)
}

// Short is the link in a few words, for titles: "10 ms each way, 200 Mbit/s".
func (l LinkSpec) Short() string {
	var parts []string
	if l.Delay > 0 {
		parts = append(parts, fmtDelay(l.Delay)+" each way")
	}
	if l.Rate > 0 {
		parts = append(parts, formatRate(l.Rate))
	}
	return strings.Join(parts, ", ")
}

// String is the link in full: both delays and both caps.
func (l LinkSpec) String() string {
	var parts []string
	if l.Delay > 0 {
		parts = append(parts, fmt.Sprintf("%s each way (%s round trip)", fmtDelay(l.Delay), fmtDelay(2*l.Delay)))
	}
	if l.Rate > 0 {
		parts = append(parts, formatRate(l.Rate)+" each direction")
	} else {
		parts = append(parts, "no rate cap")
	}
	return strings.Join(parts, ", ")
}

func fmtDelay(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/1e6, 'f', -1, 64) + " ms"
}

// linkMTU is the TUN devices' MTU: an Ethernet wire's, so TCP's segments,
// congestion window and slow start are those of a real link.
const linkMTU = 1500

// The TUN devices take and hand over TCP super-packets (GSO, up to 64 KiB of
// 1448-byte segments) behind a virtio-net header, as the kernel does with a
// NIC that segments in hardware (TSO): the delay lines then move tens of
// segments per syscall instead of one. Moving 64 MiB each way at 200 Mbit/s
// the bench used ~0.2 of a core this way, ~0.5 with 1500-byte packets.
const (
	tunFCsum   = 0x01 // TUN_F_CSUM, linux/if_tun.h
	tunFTSO4   = 0x02 // TUN_F_TSO4
	tunFTSO6   = 0x04 // TUN_F_TSO6
	vnetHdrLen = 10   // struct virtio_net_hdr, the default TUNSETVNETHDRSZ
	tunBuf     = vnetHdrLen + 64<<10 + 1<<10
)

const (
	tunClients = "fdb-clients"   // the tools' TUN device
	tunHosts   = "fdb-hosts"     // the hosts' TUN device
	clientIP   = "198.18.0.1"    // the tools' address
	hostsNet   = "198.19.0.0/16" // the hosts' addresses, all local in the hosts namespace
	probeAddr  = "198.19.0.1:7"  // the link check's server
)

// hostAddr is host i's address on the link's far side.
func hostAddr(i int) string {
	return fmt.Sprintf("198.19.%d.%d:22", 1+i/200, 1+i%200)
}

// tbfArgs are the tbf parameters for a rate: a bucket of 1 ms at the rate, at
// least 80 KB (a TCP super-packet and its segments' headers, which tbf would
// otherwise split into single packets), and a queue of one round trip (the
// classic bandwidth-delay-product buffer of a bottleneck router, at least
// 5 ms), past which packets are dropped.
func (l LinkSpec) tbfArgs() []string {
	burst := max(l.Rate/8/1000, 80_000)
	queue := max(2*l.Delay, 5*time.Millisecond)
	return []string{"tbf", "rate", fmt.Sprintf("%dbit", l.Rate), "burst", strconv.FormatInt(burst, 10),
		"latency", fmt.Sprintf("%dus", queue.Microseconds())}
}

// netns is a network namespace of the bench's own, held by an open file: the
// kernel removes it once that file is closed and no process or socket is left
// in it, so it cannot outlive the bench.
type netns struct{ f *os.File }

// onThread runs f on an OS thread of its own that is thrown away afterwards,
// so that f may change the thread's namespaces.
func onThread(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		errc <- f()
	}()
	return <-errc
}

func newNetns() (*netns, error) {
	var ns *netns
	err := onThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
		}
		f, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			return err
		}
		ns = &netns{f}
		return nil
	})
	return ns, err
}

// do runs f inside the namespace: sockets it opens and processes it starts
// belong there. A nil namespace is the bench's own.
func (n *netns) do(f func() error) error {
	if n == nil {
		return f()
	}
	return onThread(func() error {
		if err := unix.Setns(int(n.f.Fd()), unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("setns: %w", err)
		}
		return f()
	})
}

// Start starts cmd inside the namespace (a child inherits the network
// namespace of the thread that forks it). That thread ends right after, so a
// Pdeathsig set on cmd would fire at once: set none.
func (n *netns) Start(cmd *exec.Cmd) error { return n.do(cmd.Start) }

// Run is cmd.Run inside the namespace.
func (n *netns) Run(cmd *exec.Cmd) error {
	if err := n.Start(cmd); err != nil {
		return err
	}
	return cmd.Wait()
}

// CombinedOutput is cmd.CombinedOutput inside the namespace.
func (n *netns) CombinedOutput(cmd *exec.Cmd) ([]byte, error) {
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	err := n.Run(cmd)
	return b.Bytes(), err
}

// script runs a command inside the namespace with stdin as its input.
func (n *netns) script(stdin, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := n.CombinedOutput(cmd); err != nil {
		return fmt.Errorf("%s %s: %v: %s\n%s", name, strings.Join(args, " "), err, bytes.TrimSpace(out), stdin)
	}
	return nil
}

// Listen opens a TCP listener inside the namespace.
func (n *netns) Listen(addr string) (net.Listener, error) {
	var l net.Listener
	err := n.do(func() (err error) { l, err = net.Listen("tcp", addr); return })
	return l, err
}

// Dial opens a TCP connection from inside the namespace.
func (n *netns) Dial(addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := n.do(func() (err error) { c, err = net.DialTimeout("tcp", addr, timeout); return })
	return c, err
}

func (n *netns) Close() error { return n.f.Close() }

// openTun creates a TUN device in the calling thread's network namespace,
// gone when the file is closed. Each read or write is one IP packet (or
// super-packet) behind a virtio-net header.
func openTun(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("/dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF %s: %w", name, err)
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tunFCsum|tunFTSO4|tunFTSO6); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETOFFLOAD %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), "tun "+name), nil // non-blocking: Go's poller serves it
}

// delayLine copies packets from src to dst in order, each written delay after
// it was read. Every packet keeps its own deadline, so packets are in flight
// together and throughput stays whatever src delivers (not one packet per
// delay). A packet dst refuses is dropped, as a link would; once dst is
// closed every packet is. It returns src's error once src fails (closed: the
// link is down). Waits use nanosleep on a blocked thread: Go's timers wake up
// to 1 ms late here.
func delayLine(dst io.Writer, src io.Reader, delay time.Duration, size int) error {
	type packet struct {
		b   []byte
		due time.Time
	}
	pool := sync.Pool{New: func() any { return make([]byte, size) }}
	q := make(chan packet, 4096) // more than a round trip's worth of super-packets at any rate that fits here
	var readErr error
	go func() {
		defer close(q)
		for {
			b := pool.Get().([]byte)
			n, err := src.Read(b[:size])
			if err != nil {
				readErr = err
				return
			}
			q <- packet{b[:n], time.Now().Add(delay)}
		}
	}()
	closed := false
	for p := range q {
		if !closed {
			if wait := time.Until(p.due); wait > 0 {
				ts := unix.NsecToTimespec(wait.Nanoseconds())
				for unix.Nanosleep(&ts, &ts) == unix.EINTR {
				}
			}
			_, err := dst.Write(p.b)
			closed = errors.Is(err, os.ErrClosed)
		}
		pool.Put(p.b[:cap(p.b)])
	}
	return readErr
}

// Link is a running slow link: the two namespaces, their TUN devices and the
// delay lines between them.
type Link struct {
	Spec    LinkSpec
	Clients *netns // where the tools run
	Hosts   *netns // where the host addresses are
	tuns    []*os.File
	wg      sync.WaitGroup
}

// StartLink builds the link. It needs root (namespaces, TUN devices, tc).
func StartLink(spec LinkSpec) (l *Link, err error) {
	l = &Link{Spec: spec}
	defer func() {
		if err != nil {
			l.Close()
			l = nil
		}
	}()
	if l.Clients, err = newNetns(); err != nil {
		return nil, fmt.Errorf("a network namespace for the tools: %w", err)
	}
	if l.Hosts, err = newNetns(); err != nil {
		return nil, fmt.Errorf("a network namespace for the hosts: %w", err)
	}
	for _, side := range []struct {
		ns   *netns
		name string
	}{{l.Clients, tunClients}, {l.Hosts, tunHosts}} {
		var f *os.File
		if err := side.ns.do(func() (err error) { f, err = openTun(side.name); return }); err != nil {
			return l, err
		}
		l.tuns = append(l.tuns, f)
	}
	// The tools' side routes the hosts' addresses into its TUN; the hosts'
	// side holds all of them as local addresses (a local route on lo), and
	// answers the tools through its TUN.
	if err := l.Clients.script(fmt.Sprintf("link set lo up\naddr add %s/32 dev %s\nlink set %s mtu %d up\nroute add %s dev %s src %s\n",
		clientIP, tunClients, tunClients, linkMTU, hostsNet, tunClients, clientIP), "ip", "-batch", "-"); err != nil {
		return l, err
	}
	if err := l.Hosts.script(fmt.Sprintf("link set lo up\nlink set %s mtu %d up\nroute add local %s dev lo\nroute add %s/32 dev %s\n",
		tunHosts, linkMTU, hostsNet, clientIP, tunHosts), "ip", "-batch", "-"); err != nil {
		return l, err
	}
	if spec.Rate > 0 {
		if _, err := exec.LookPath("tc"); err != nil {
			return l, fmt.Errorf("a rate cap needs tc (Debian package iproute2): %w", err)
		}
		args := strings.Join(spec.tbfArgs(), " ")
		if err := l.Clients.script(fmt.Sprintf("qdisc add dev %s root %s\n", tunClients, args), "tc", "-batch", "-"); err != nil {
			return l, err
		}
		if err := l.Hosts.script(fmt.Sprintf("qdisc add dev %s root %s\n", tunHosts, args), "tc", "-batch", "-"); err != nil {
			return l, err
		}
	}
	for i := range 2 {
		src, dst := l.tuns[i], l.tuns[1-i]
		l.wg.Go(func() { _ = delayLine(dst, src, spec.Delay, tunBuf) })
	}
	return l, nil
}

// TC describes the qdiscs, for the record.
func (l *Link) TC() string {
	if l.Spec.Rate == 0 {
		return "no rate cap (no qdisc added)"
	}
	return fmt.Sprintf("`tc qdisc add dev TUN root %s` on each TUN device", strings.Join(l.Spec.tbfArgs(), " "))
}

// Close takes the link down: the delay lines end, and the kernel removes the
// devices and namespaces once the relays' sockets are closed too.
func (l *Link) Close() error {
	var errs []error
	for _, f := range l.tuns {
		errs = append(errs, f.Close())
	}
	l.wg.Wait()
	for _, ns := range []*netns{l.Clients, l.Hosts} {
		if ns != nil {
			errs = append(errs, ns.Close())
		}
	}
	return errors.Join(errs...)
}

// LinkCheck is what Check measured.
type LinkCheck struct {
	Connect           time.Duration // TCP connect
	RTT, RTTLo, RTTHi time.Duration // 1-byte echoes: median, min, max
	Bytes             int           // moved each way
	UpMbit, DownMbit  float64       // one TCP stream's goodput, slow start included
	echoes            int
}

func (c LinkCheck) String() string {
	return fmt.Sprintf("measured over the link: TCP connect %.1f ms, round trip %.1f ms (median of %d 1-byte echoes, %.1f–%.1f); one TCP stream moving %s: %.0f Mbit/s up, %.0f Mbit/s down (slow start included)",
		ms64(c.Connect), ms64(c.RTT), c.echoes, ms64(c.RTTLo), ms64(c.RTTHi), bytesH(int64(c.Bytes)), c.UpMbit, c.DownMbit)
}

func ms64(d time.Duration) float64 { return float64(d) / 1e6 }

// Check measures the link as the tools will see it, against a probe server
// on the hosts' side: TCP round trips (connect, then 1-byte echoes) and one
// TCP stream's goodput each way moving n bytes (slow start included).
func (l *Link) Check(n int) (LinkCheck, error) {
	var lc LinkCheck
	ln, err := l.Hosts.Listen(probeAddr)
	if err != nil {
		return lc, err
	}
	defer ln.Close()
	go serveProbe(ln, n)
	start := time.Now()
	c, err := l.Clients.Dial(probeAddr, 10*time.Second)
	if err != nil {
		return lc, err
	}
	lc.Connect = time.Since(start)
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(time.Minute)); err != nil {
		return lc, err
	}
	// step sends one command (and data) and waits for want bytes back.
	step := func(cmd byte, data []byte, want int) (time.Duration, error) {
		t0 := time.Now()
		if _, err := c.Write(append([]byte{cmd}, data...)); err != nil {
			return 0, err
		}
		_, err := io.ReadFull(c, make([]byte, want))
		return time.Since(t0), err
	}
	var rtts []time.Duration
	for range 9 {
		d, err := step('e', nil, 1)
		if err != nil {
			return lc, err
		}
		rtts = append(rtts, d)
	}
	slices.Sort(rtts)
	lc.RTT, lc.RTTLo, lc.RTTHi, lc.echoes = rtts[len(rtts)/2], rtts[0], rtts[len(rtts)-1], len(rtts)
	mbit := func(d time.Duration) float64 { return float64(n) * 8 / d.Seconds() / 1e6 }
	up, err := step('u', make([]byte, n), 1) // the server answers once it has all
	if err != nil {
		return lc, err
	}
	down, err := step('d', nil, n)
	if err != nil {
		return lc, err
	}
	lc.Bytes, lc.UpMbit, lc.DownMbit = n, mbit(up), mbit(down)
	return lc, nil
}

// serveProbe answers the link check: 'e' echoes one byte, 'u' reads n bytes
// and answers one byte, 'd' sends n bytes.
func serveProbe(ln net.Listener, n int) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(time.Minute))
			cmd := make([]byte, 1)
			for {
				if _, err := io.ReadFull(c, cmd); err != nil {
					return
				}
				var err error
				switch cmd[0] {
				case 'e':
					_, err = c.Write(cmd)
				case 'u':
					if _, err = io.CopyN(io.Discard, c, int64(n)); err == nil {
						_, err = c.Write(cmd)
					}
				case 'd':
					_, err = c.Write(make([]byte, n))
				default:
					return
				}
				if err != nil {
					return
				}
			}
		}()
	}
}
