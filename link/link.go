// Package link keeps what the links to the hosts carried, and decides from
// it whether gzip pays over them.
//
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
// duration), kept per host in the cache folder ([Store], written by a
// [Meter]). Reading it adds no round trip and no wait. The slowest host ends
// the upload, so the fleet follows the slowest measured rate. A record whose
// round trip differs much from today's was made over another path (the
// laptop moved) and is set aside ([Usable]); with no record at all, the
// delay is the only clue there is: a build goes gzipped when even the
// nearest host is slowLinkRTT away, and this run's upload is measured for
// the next.
package link

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/fleetdeploy/fleetdeploy/remote"
)

const (
	gzipRate   = 250e6 // bytes/s of build gzip.BestSpeed reads on this machine
	gunzipRate = 290e6 // bytes/s of build a host's gzip -dc writes
	gzipRatio  = 0.71  // compressed / plain, the benchmark app
)

// GzipBelow is the rate per host (bytes/s) under which a whole build is
// sent gzipped: the model's break-even, about 40 MB/s.
const GzipBelow = (1 - gzipRatio) / (1/gzipRate + 1/gunzipRate)

// slowLinkRTT is the round trip from which, with no rate measured yet, the
// hosts are guessed to be behind a slow link (a WAN, not a LAN).
const slowLinkRTT = 10 * time.Millisecond

// measuredMin is the smallest upload whose rate is recorded: smaller ones
// (a redeploy's few files) end in slow start and say little of the path.
const measuredMin = 8 << 20

// maxAge is how long a measured rate is trusted.
const maxAge = 30 * 24 * time.Hour

// WholeGzip decides whether whole builds are gzipped, from the usable rates
// measured to the hosts (bytes/s) or, with none, from the round trip to the
// nearest host; why says so for people.
func WholeGzip(rates []float64, nearest time.Duration) (gz bool, why string) {
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
	return slowest < GzipBelow, fmt.Sprintf("the last upload to the slowest host ran at %s (gzip pays below %s per host)", rateText(slowest), rateText(GzipBelow))
}

// rateText is a rate for people, in Mbit/s as links are sold.
func rateText(bps float64) string {
	return strconv.FormatFloat(bps*8/1e6, 'f', 0, 64) + " Mbit/s"
}

// Usable says whether a recorded rate still describes the path: recent,
// and made over a path with about today's round trip (rtt).
func Usable(r Rate, rtt time.Duration, now time.Time) bool {
	if r.Rate <= 0 || now.Sub(r.At) > maxAge || r.At.After(now.Add(time.Hour)) {
		return false
	}
	const slack = 2 * time.Millisecond
	return rtt <= 2*r.RTT+slack && r.RTT <= 2*rtt+slack
}

// Choose decides whether env's whole builds go gzipped, from the usable
// records of the hosts reached (conns) or, with none, from the round trip to
// the nearest; why says so for people. Reading the records costs no round
// trip.
func Choose(env *inventory.Environment, conns map[string]remote.Host, nearest time.Duration, s Store, now time.Time) (gz bool, why string) {
	var rates []float64
	for _, h := range env.Hosts {
		rtt, ok := connectRTT(conns[h.Name])
		if !ok {
			continue
		}
		if r, ok := s.Load(Key(h)); ok && Usable(r, rtt, now) {
			rates = append(rates, r.Rate)
		}
	}
	return WholeGzip(rates, nearest)
}

// connectRTT is the round trip to a reached host, when its connection
// knows it.
func connectRTT(c remote.Host) (time.Duration, bool) {
	h, ok := c.(interface{ ConnectRTT() time.Duration })
	if !ok {
		return 0, false
	}
	return h.ConnectRTT(), true
}
