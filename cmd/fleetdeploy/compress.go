package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/fleetdeploy/fleetdeploy/fleet"
	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/fleetdeploy/fleetdeploy/remote"
)

// Whether a whole build (a first deploy) is gzipped is chosen from what the
// links to the hosts carried, not from their delay: latency is no lack of
// bandwidth. A redeploy's delta is always gzipped (mostly tar headers).
//
// The cost model, per host, for a build of S bytes that gzips to r·S:
//
//	plain:  S / b                      (b: the rate the path to the host carries)
//	gzip:   S / G + r·S / b + S / U    (G: this machine's gzip, once per payload;
//	                                    U: the host's gunzip, counted in full)
//
// so gzip pays when b < (1−r) / (1/G + 1/U), whatever S. Measured on this
// project's machine (docs/TRANSPORT.md, *Compression*): G ≈ 250 MB/s (Go's
// gzip.BestSpeed, 200-290), U ≈ 290 MB/s (gzip -dc), r = 0.71 for the
// benchmark app (45 MB, 36 of them incompressible assets): gzip pays below
// about 40 MB/s per host, 320 Mbit/s. The hosts upload at once, so b is
// each host's share of this machine's uplink: 100 Mbit/s shared by 4 hosts
// is 3 MB/s each (gzip: 14.4 s against 19.1 s plain); loopback carries GB/s
// (plain: 0.98 s against 1.64 s). U is counted as if gunzip never overlapped
// the transfer: on a host busy serving, or many small VMs on one machine, it
// does not.
//
// b is what the last large upload to the host achieved (the kernel's
// delivery rate, TCP_INFO, read after the run: the path's rate apart from
// either end's CPU; through a jump host, payload bytes over the upload's
// duration), kept per host in the cache folder. Reading it adds no round
// trip and no wait. The slowest host ends the upload, so the fleet follows
// the slowest measured rate. A record whose round trip differs much from
// today's was made over another path (the laptop moved) and is set aside;
// with no record at all, the delay is the only clue there is: a build goes
// gzipped when even the nearest host is slowLinkRTT away, and this run's
// upload is measured for the next.
const (
	gzipRate   = 250e6 // bytes/s of build gzip.BestSpeed reads on this machine
	gunzipRate = 290e6 // bytes/s of build a host's gzip -dc writes
	gzipRatio  = 0.71  // compressed / plain, the benchmark app
)

// gzipBelow is the rate per host under which a whole build is sent gzipped
// (about 40 MB/s).
var gzipBelow = (1 - gzipRatio) / (1/gzipRate + 1/gunzipRate)

// slowLinkRTT is the round trip from which, with no rate measured yet, the
// hosts are guessed to be behind a slow link (a WAN, not a LAN).
const slowLinkRTT = 10 * time.Millisecond

// measuredMin is the smallest upload whose rate is recorded: smaller ones
// (a redeploy's few files) end in slow start and say little of the path.
const measuredMin = 8 << 20

// linkMaxAge is how long a measured rate is trusted.
const linkMaxAge = 30 * 24 * time.Hour

// wholeGzip decides whether whole builds are gzipped, from the usable rates
// measured to the hosts (bytes/s) or, with none, from the round trip to the
// nearest host; why says so for people.
func wholeGzip(rates []float64, nearest time.Duration) (gz bool, why string) {
	if len(rates) == 0 {
		if nearest >= slowLinkRTT {
			return true, fmt.Sprintf("no upload to these hosts measured yet, and the nearest is %s away", nearest.Round(time.Millisecond))
		}
		return false, "no upload to these hosts measured yet, and they are near"
	}
	slowest := math.Inf(1)
	for _, r := range rates {
		slowest = min(slowest, r)
	}
	return slowest < gzipBelow, fmt.Sprintf("the last upload to the slowest host ran at %s (gzip pays below %s per host)", rateText(slowest), rateText(gzipBelow))
}

// rateText is a rate for people, in Mbit/s as links are sold.
func rateText(bps float64) string {
	return strconv.FormatFloat(bps*8/1e6, 'f', 0, 64) + " Mbit/s"
}

// usableRate says whether a recorded rate still describes the path: recent,
// and made over a path with about today's round trip.
func usableRate(r linkRate, rtt time.Duration, now time.Time) bool {
	if r.Rate <= 0 || now.Sub(r.At) > linkMaxAge || r.At.After(now.Add(time.Hour)) {
		return false
	}
	const slack = 2 * time.Millisecond
	return rtt <= 2*r.RTT+slack && r.RTT <= 2*rtt+slack
}

// chooseCompression sets c.compress for this run's whole builds, unless
// --compress was given, from what earlier uploads to the hosts measured.
// It says so when builds go gzipped (unless quiet).
func (c *common) chooseCompression(env *inventory.Environment, f *fleet.Fleet, links linkStore, quiet bool) {
	if c.compressSet {
		return
	}
	now := c.now()
	var rates []float64
	for _, h := range env.Hosts {
		rtt, ok := connectRTT(f, h.Name)
		if !ok {
			continue
		}
		if r, ok := links.load(linkKey(h)); ok && usableRate(r, rtt, now) {
			rates = append(rates, r.Rate)
		}
	}
	gz, why := wholeGzip(rates, f.NearestRTT())
	c.compress = gz
	if gz && !quiet {
		c.out.Printf("%s: a whole build is sent gzipped (--compress=false: never)\n", why)
	}
}

// connectRTT is the round trip to a reached host.
func connectRTT(f *fleet.Fleet, host string) (time.Duration, bool) {
	h, ok := f.Conns[host].(interface{ ConnectRTT() time.Duration })
	if !ok {
		return 0, false
	}
	return h.ConnectRTT(), true
}

// linkRate is what one large upload showed of the path to a host.
type linkRate struct {
	Rate float64       `json:"rate"`   // bytes per second
	From string        `json:"from"`   // "tcp": the kernel's delivery rate; "stream": payload bytes over the upload's duration
	RTT  time.Duration `json:"rtt_ns"` // the round trip to the host then
	At   time.Time     `json:"at"`
}

// linkStore keeps one linkRate per host in the cache folder (links/).
// Failing to read or write it is no error: it only guides a choice.
type linkStore struct{ dir string } // "": nowhere

func newLinkStore(cache fleet.Cache) linkStore {
	base := cache.Base()
	if base == "" {
		return linkStore{}
	}
	return linkStore{dir: filepath.Join(base, "links")}
}

// linkKey names a host by how it is reached, so that two inventories'
// "web1" do not share a record.
func linkKey(h inventory.Host) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%d\x00%s", h.User, h.Address, h.Port, h.Jump))
	return hex.EncodeToString(sum[:16])
}

func (s linkStore) load(key string) (linkRate, bool) {
	var r linkRate
	if s.dir == "" {
		return r, false
	}
	data, err := os.ReadFile(filepath.Join(s.dir, key+".json"))
	if err != nil || len(data) > 4096 || json.Unmarshal(data, &r) != nil {
		return linkRate{}, false
	}
	return r, true
}

func (s linkStore) store(key string, r linkRate) {
	if s.dir == "" || os.MkdirAll(s.dir, 0o700) != nil {
		return
	}
	data, err := json.Marshal(r)
	if err != nil {
		return
	}
	p := filepath.Join(s.dir, key+".json")
	tmp := fmt.Sprintf("%s.tmp-%d", p, os.Getpid())
	if os.WriteFile(tmp, data, 0o600) == nil {
		if os.Rename(tmp, p) != nil {
			os.Remove(tmp)
		}
	}
}

// uploadMeter times each host's payload as it is read to be sent.
type uploadMeter struct {
	mu    sync.Mutex
	hosts map[string]*upload
	now   func() time.Time
}

// upload is one host's payload as sent so far.
type upload struct {
	bytes       int64
	first, last time.Time
	done        bool // read to its end
}

func newUploadMeter(now func() time.Time) *uploadMeter {
	return &uploadMeter{hosts: map[string]*upload{}, now: now}
}

// wrap times what is read from host's payload.
func (m *uploadMeter) wrap(host string, open func() (io.ReadCloser, error)) func() (io.ReadCloser, error) {
	if m == nil || open == nil {
		return nil
	}
	return func() (io.ReadCloser, error) {
		rc, err := open()
		if err != nil {
			return nil, err
		}
		m.mu.Lock()
		u := m.hosts[host]
		if u == nil {
			u = &upload{}
			m.hosts[host] = u
		}
		u.done = false
		m.mu.Unlock()
		return &timedReader{ReadCloser: rc, m: m, u: u}, nil
	}
}

type timedReader struct {
	io.ReadCloser
	m *uploadMeter
	u *upload
}

func (r *timedReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	t := r.m.now()
	r.m.mu.Lock()
	if r.u.first.IsZero() {
		r.u.first = t
	}
	r.u.bytes += int64(n)
	r.u.last = t
	if err == io.EOF {
		r.u.done = true
	}
	r.m.mu.Unlock()
	return n, err
}

// record keeps, for each host whose payload was sent whole and was large
// enough to say something, the rate the path to it carried: the kernel's
// delivery rate when known, else the payload's bytes over its duration.
func (m *uploadMeter) record(env *inventory.Environment, conns map[string]remote.Host, links linkStore) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, h := range env.Hosts {
		u := m.hosts[h.Name]
		if u == nil || !u.done || u.bytes < measuredMin {
			continue
		}
		r := linkRate{At: u.last}
		if c, ok := conns[h.Name].(interface{ DeliveryRate() (float64, bool) }); ok {
			if rate, ok := c.DeliveryRate(); ok {
				r.Rate, r.From = rate, "tcp"
			}
		}
		if r.From == "" {
			d := u.last.Sub(u.first)
			if d <= 0 {
				continue
			}
			r.Rate, r.From = float64(u.bytes)/d.Seconds(), "stream"
		}
		if c, ok := conns[h.Name].(interface{ ConnectRTT() time.Duration }); ok {
			r.RTT = c.ConnectRTT()
		}
		links.store(linkKey(h), r)
	}
}
