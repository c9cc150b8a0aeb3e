package remote

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/fleetdeploy/fleetdeploy/internal/sshtest"
)

// delayedConn hands over what the host sends oneWay after it arrived, as a
// link with that much delay towards the client would: every time the client
// waits for the host costs oneWay more, and what it does not wait for
// (data sent unasked, pipelined requests) costs nothing more.
type delayedConn struct {
	net.Conn
	oneWay time.Duration
	chunks chan chunk
	rest   []byte
	err    error
}

type chunk struct {
	at   time.Time
	data []byte
	err  error
}

func delay(c net.Conn, oneWay time.Duration) *delayedConn {
	d := &delayedConn{Conn: c, oneWay: oneWay, chunks: make(chan chunk, 1024)}
	go func() {
		for {
			buf := make([]byte, 32<<10)
			n, err := c.Read(buf)
			d.chunks <- chunk{time.Now(), buf[:n], err}
			if err != nil {
				return
			}
		}
	}()
	return d
}

func (d *delayedConn) Read(p []byte) (int, error) {
	for len(d.rest) == 0 {
		if d.err != nil {
			return 0, d.err
		}
		c := <-d.chunks
		if wait := time.Until(c.at.Add(d.oneWay)); wait > 0 {
			<-time.After(wait)
		}
		d.rest, d.err = c.data, c.err
	}
	n := copy(p, d.rest)
	d.rest = d.rest[n:]
	return n, nil
}

// delayedDialer is a Dialer whose direct TCP connections are delayed by
// oneWay (delay); count turns the time a dial took into round trips,
// counting the TCP handshake, which is not delayed, as one.
func delayedDialer(t *testing.T, oneWay time.Duration) (d *Dialer, count func(took time.Duration) int) {
	d = NewDialer(DialerOptions{})
	t.Cleanup(func() { d.Close() })
	var mu sync.Mutex
	var connect time.Duration
	d.dialTCP = func(ctx context.Context, addr string) (net.Conn, error) {
		var nd net.Dialer
		begin := time.Now()
		c, err := nd.DialContext(ctx, "tcp", addr)
		mu.Lock()
		connect = time.Since(begin)
		mu.Unlock()
		if err != nil {
			return nil, err
		}
		return delay(c, oneWay), nil
	}
	return d, func(took time.Duration) int {
		mu.Lock()
		defer mu.Unlock()
		return 1 + int((took-connect+oneWay/2)/oneWay)
	}
}

// dialRoundTrips is Dial's budget on a known host with one key that works,
// TCP connect included (see docs on issue 18): TCP 1; SSH versions and
// KEXINITs 1 (x/crypto waits for the host's version line, sent as the
// connection opens, then sends KEXINIT; the host's comes back); ECDH 1;
// NEWKEYS and the ssh-userauth service request 1; x/crypto's "none" probe
// 1; the key's query 1 and its signature 1; the SFTP session channel 1
// (the first command's session channel opens alongside it) and its
// subsystem request 1. SFTP's version exchange is not waited for: INIT goes
// out, and the version comes back with the answers to the first requests.
// A change that adds one fails this test.
const dialRoundTrips = 9

// TestDialRoundTrips counts the round trips Dial (and the reads after it)
// wait for, by delaying what the host sends by 100 ms and counting the
// delays in the time taken.
func TestDialRoundTrips(t *testing.T) {
	t.Parallel()
	f := sshtest.Start(t, 1)
	h := f.Hosts[0]
	// Long enough that the CPU time of a handshake (tens of ms under -race
	// on a busy machine) rounds away, while one more round trip cannot.
	const oneWay = 200 * time.Millisecond
	d, count := delayedDialer(t, oneWay)
	begin := time.Now()
	c, err := d.Dial(t.Context(), Config{Name: h.Name, Addr: h.Name, User: f.User, Identity: f.Identity, KnownHosts: f.KnownHosts})
	took := time.Since(begin)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := count(took)
	t.Logf("Dial: %d round trips (%v with %v added to each)", got, took.Round(time.Millisecond), oneWay)
	if got > dialRoundTrips {
		t.Errorf("Dial took %d round trips, budget %d", got, dialRoundTrips)
	}

	// Reads: Lstat and Open together, then the reads; the close is not
	// waited for. Remove: REMOVE, RMDIR, LSTAT and statvfs together.
	h.Exec(t, `mkdir -p "$ROOT" && head -c 3000 /dev/zero > "$ROOT/f"`)
	for _, tc := range []struct {
		name string
		op   func() error
		want int
	}{
		{"ReadFile", func() error { _, err := c.ReadFile(t.Context(), h.Root+"/f", 0); return err }, 2},
		{"ReadTail", func() error { _, err := c.ReadTail(t.Context(), h.Root+"/f", 100); return err }, 2},
		{"Remove", func() error { return c.Remove(t.Context(), h.Root+"/f") }, 1},
	} {
		begin := time.Now()
		if err := tc.op(); err != nil {
			t.Fatal(err)
		}
		took := time.Since(begin)
		if got := int((took + oneWay/2) / oneWay); got > tc.want {
			t.Errorf("%s took %d round trips (%v), budget %d", tc.name, got, took.Round(time.Millisecond), tc.want)
		}
	}
}

// bastionRoundTrips are the round trips of reaching hosts through one
// bastion, the link to it the slow one (a laptop 50 ms from the cloud
// region, the bastion next to the hosts): the bastion's own Dial (its
// SFTP channel aside: no SFTP on a jump host) and, through its connection,
// the host's direct-tcpip channel 1 and the host's own handshake as on a
// direct link (TCP excepted: the bastion makes that connection, next to
// the host). Hosts dialled at once share the bastion's connection and wait
// for the same round trips.
const (
	bastionFirstRoundTrips = 7 + 1 + 8 // the bastion (TCP, SSH 6), the channel, the host (SSH 6, SFTP 2)
	bastionNextRoundTrips  = 1 + 8     // the bastion already connected
)

// TestBastionRoundTrips counts the round trips of hosts reached through a
// real OpenSSH bastion whose link is delayed: connecting three hosts at once
// costs what one costs, and a host dialled once the bastion is connected
// costs the channel and its own handshake.
func TestBastionRoundTrips(t *testing.T) {
	t.Parallel()
	f := sshtest.StartWith(t, 3, sshtest.Options{Bastions: 1})
	// Longer than TestDialRoundTrips' delay: the bastion's handshake, the
	// channel and the hosts' handshakes come one after the other, and their
	// CPU time adds up (some 100 ms here) where a shorter delay would round
	// it into one round trip more.
	const oneWay = 400 * time.Millisecond
	d, count := delayedDialer(t, oneWay)
	b := f.Bastions[0]
	cfg := func(h *sshtest.Host) Config {
		return Config{Name: h.Name, Addr: h.Name, User: f.User, Identity: f.Identity, KnownHosts: f.KnownHosts,
			Jumps: []Config{{Name: "bastion", Addr: b.Name, User: f.User, Identity: f.Identity, KnownHosts: f.KnownHosts}}}
	}
	begin := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		wg.Go(func() {
			c, err := d.Dial(t.Context(), cfg(f.Hosts[i]))
			if err == nil {
				t.Cleanup(func() { c.Close() })
			}
			errs[i] = err
		})
	}
	wg.Wait()
	took := time.Since(begin)
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got := count(took)
	t.Logf("two hosts behind a bastion, at once: %d round trips (%v with %v added to each)", got, took.Round(time.Millisecond), oneWay)
	if got > bastionFirstRoundTrips {
		t.Errorf("%d round trips, budget %d", got, bastionFirstRoundTrips)
	}

	begin = time.Now()
	c, err := d.Dial(t.Context(), cfg(f.Hosts[2]))
	took = time.Since(begin)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got = int((took + oneWay/2) / oneWay)
	t.Logf("one more host, the bastion connected: %d round trips (%v)", got, took.Round(time.Millisecond))
	if got > bastionNextRoundTrips {
		t.Errorf("%d round trips, budget %d", got, bastionNextRoundTrips)
	}
}
