package main

import (
	"bytes"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleetdeploy/fleet"
	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/fleetdeploy/fleetdeploy/remote"
)

// Measured rates decide; with none, the round trip guesses; the slowest
// measured host rules the fleet.
func TestWholeGzip(t *testing.T) {
	const mbit = 1e6 / 8
	for _, c := range []struct {
		name    string
		rates   []float64
		nearest time.Duration
		want    bool
	}{
		{"nothing measured, loopback", nil, 50 * time.Microsecond, false},
		{"nothing measured, LAN", nil, 300 * time.Microsecond, false},
		{"nothing measured, 50 ms away", nil, 50 * time.Millisecond, true},
		{"loopback, measured", []float64{3000e6}, 50 * time.Microsecond, false},
		{"far but fat: 1 Gbit/s each at 50 ms", []float64{1000 * mbit, 1000 * mbit}, 50 * time.Millisecond, false},
		{"100 Mbit/s shared by 4 hosts", []float64{25 * mbit, 25 * mbit, 25 * mbit, 25 * mbit}, 50 * time.Millisecond, true},
		{"a thin LAN: 100 Mbit/s at 0.3 ms", []float64{100 * mbit}, 300 * time.Microsecond, true},
		{"one slow host among fast ones", []float64{3000e6, 3000e6, 20 * mbit}, 50 * time.Microsecond, true},
		{"just above the break-even", []float64{gzipBelow * 1.01}, 50 * time.Millisecond, false},
		{"just below the break-even", []float64{gzipBelow * 0.99}, 50 * time.Microsecond, true},
	} {
		got, why := wholeGzip(c.rates, c.nearest)
		if got != c.want || why == "" {
			t.Errorf("%s: gzip %v (%q), want %v", c.name, got, why, c.want)
		}
	}
	// The break-even follows from the measured rates: about 40 MB/s.
	if gzipBelow < 35e6 || gzipBelow > 45e6 {
		t.Errorf("break-even %.0f B/s, want about 40 MB/s", gzipBelow)
	}
}

// A record is used while recent and made over a path with about today's
// round trip.
func TestUsableRate(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	rec := func(rtt time.Duration, age time.Duration) linkRate {
		return linkRate{Rate: 10e6, From: "tcp", RTT: rtt, At: now.Add(-age)}
	}
	for _, c := range []struct {
		name string
		r    linkRate
		rtt  time.Duration
		want bool
	}{
		{"same path", rec(50*time.Millisecond, time.Hour), 52 * time.Millisecond, true},
		{"loopback jitter", rec(30*time.Microsecond, time.Hour), 900 * time.Microsecond, true},
		{"the laptop moved nearer", rec(50*time.Millisecond, time.Hour), 5 * time.Millisecond, false},
		{"the laptop moved farther", rec(1*time.Millisecond, time.Hour), 40 * time.Millisecond, false},
		{"too old", rec(50*time.Millisecond, 31*24*time.Hour), 50 * time.Millisecond, false},
		{"from the future", rec(50*time.Millisecond, -2*time.Hour), 50 * time.Millisecond, false},
		{"no rate", linkRate{RTT: 50 * time.Millisecond, At: now}, 50 * time.Millisecond, false},
	} {
		if got := usableRate(c.r, c.rtt, now); got != c.want {
			t.Errorf("%s: usable %v, want %v", c.name, got, c.want)
		}
	}
}

// A rate stored is loaded back, per host as reached; a missing, garbled or
// oversized record, or no cache folder, is just no record.
func TestLinkStore(t *testing.T) {
	s := newLinkStore(fleet.Cache{Dir: t.TempDir()})
	web1 := inventory.Host{Name: "web1", Address: "10.0.0.1", Port: 22, User: "deploy"}
	other := inventory.Host{Name: "web1", Address: "10.0.0.2", Port: 22, User: "deploy"}
	if linkKey(web1) == linkKey(other) {
		t.Fatal("two addresses share a key")
	}
	if _, ok := s.load(linkKey(web1)); ok {
		t.Error("a record before any was stored")
	}
	want := linkRate{Rate: 3.1e6, From: "tcp", RTT: 50 * time.Millisecond, At: time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)}
	s.store(linkKey(web1), want)
	got, ok := s.load(linkKey(web1))
	if !ok || got != want {
		t.Errorf("loaded %+v, %v; want %+v", got, ok, want)
	}
	if _, ok := s.load(linkKey(other)); ok {
		t.Error("another host's record loaded")
	}
	if fi, err := os.Stat(s.dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("links folder: %v, %v", fi, err)
	}
	os.WriteFile(filepath.Join(s.dir, linkKey(other)+".json"), []byte("{not json"), 0o600)
	if _, ok := s.load(linkKey(other)); ok {
		t.Error("a garbled record loaded")
	}
	os.WriteFile(filepath.Join(s.dir, linkKey(other)+".json"), bytes.Repeat([]byte(" "), 5000), 0o600)
	if _, ok := s.load(linkKey(other)); ok {
		t.Error("an oversized record loaded")
	}
	none := linkStore{}
	none.store(linkKey(web1), want)
	if _, ok := none.load(linkKey(web1)); ok {
		t.Error("a record without a cache folder")
	}
}

// stepClock advances by step on every reading.
type stepClock struct {
	t    time.Time
	step time.Duration
}

func (c *stepClock) now() time.Time { c.t = c.t.Add(c.step); return c.t }

// The meter records a large upload read to its end, at the kernel's rate
// where the host has one and at bytes over time otherwise; a small or
// unfinished upload leaves the earlier record alone.
func TestUploadMeterRecords(t *testing.T) {
	env := &inventory.Environment{Hosts: []inventory.Host{
		{Name: "big", Address: "a"}, {Name: "small", Address: "b"}, {Name: "cut", Address: "c"}, {Name: "tcp", Address: "d"},
	}}
	links := newLinkStore(fleet.Cache{Dir: t.TempDir()})
	old := linkRate{Rate: 1, From: "tcp", At: time.Unix(1, 0).UTC()}
	for _, h := range env.Hosts {
		links.store(linkKey(h), old)
	}
	clock := &stepClock{t: time.Unix(1000, 0), step: 10 * time.Millisecond}
	m := newUploadMeter(clock.now)
	send := func(host string, size int64, whole bool) {
		open := m.wrap(host, func() (io.ReadCloser, error) {
			return io.NopCloser(io.LimitReader(zeros{}, size)), nil
		})
		rc, err := open()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		buf := make([]byte, 1<<20)
		for {
			if _, err := rc.Read(buf); err != nil || !whole {
				break
			}
		}
	}
	send("big", 10<<20, true)  // 11 reads of 1 MiB (the last one EOF), 10 ms apart
	send("small", 1<<20, true) // a redeploy's delta
	send("cut", 10<<20, false) // a failed upload
	send("tcp", 10<<20, true)
	m.record(env, map[string]remote.Host{"tcp": rateHost{rate: 5e6}}, links)
	got, _ := links.load(linkKey(env.Hosts[0]))
	if want := float64(10<<20) / 0.1; got.From != "stream" || got.Rate < want*0.99 || got.Rate > want*1.01 {
		t.Errorf("big: %+v, want %.0f B/s from the stream", got, want)
	}
	for _, h := range []int{1, 2} {
		if got, _ := links.load(linkKey(env.Hosts[h])); got != old {
			t.Errorf("%s: %+v, want the old record kept", env.Hosts[h].Name, got)
		}
	}
	if got, _ := links.load(linkKey(env.Hosts[3])); got.From != "tcp" || got.Rate != 5e6 || got.RTT != 40*time.Millisecond {
		t.Errorf("tcp: %+v, want the kernel's 5 MB/s and the round trip", got)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// rateHost is a host whose connection knows its delivery rate.
type rateHost struct {
	remote.Host
	rate float64
}

func (h rateHost) DeliveryRate() (float64, bool) { return h.rate, true }
func (h rateHost) ConnectRTT() time.Duration     { return 40 * time.Millisecond }

// On real hosts: a slow link on record gzips a first deploy, --compress=false
// still sends it plain, and the upload's own rate replaces the record.
func TestCompressionFollowsTheLinkAndTheFlagWins(t *testing.T) {
	forEachBackend(t, 2, func(t *testing.T, f *testFleet) {
		f.provision(t)
		src := writeApp(t, "v1")
		big := make([]byte, 9<<20) // incompressible: every host's upload is large enough to measure
		rand.Read(big)
		if err := os.WriteFile(filepath.Join(src, "asset.bin"), big, 0o644); err != nil {
			t.Fatal(err)
		}
		inv := f.writeInventory(t, inventoryOpts{source: src})
		env, err := inventory.LoadEnvironment(inv, "test")
		if err != nil {
			t.Fatal(err)
		}
		cache := t.TempDir()
		links := newLinkStore(fleet.Cache{Dir: cache})
		slow := linkRate{Rate: 1e6, From: "tcp", At: time.Now()} // 8 Mbit/s, over loopback's round trip
		for _, h := range env.Hosts {
			links.store(linkKey(h), slow)
		}
		gzipped := func(args ...string) (bool, result) {
			var out, errb bytes.Buffer
			full := append([]string{"fleetdeploy", "--json", "--connect-timeout", "5s", "--cache-dir", cache}, args...)
			r := result{runWith(t.Context(), full, &out, &errb, time.Now), out.String(), errb.String()}
			if r.code != 0 {
				t.Fatalf("%v: %s", args, r)
			}
			planned := ofType(events(t, r.stdout), "planned")
			if len(planned) != 1 {
				t.Fatalf("%v: %d planned events\n%s", args, len(planned), r)
			}
			n := 0
			for _, h := range planned[0]["hosts"].([]any) {
				if h.(map[string]any)["gzip"] == true {
					n++
				}
			}
			if n != 0 && n != len(env.Hosts) {
				t.Fatalf("%v: %d hosts of %d gzipped", args, n, len(env.Hosts))
			}
			return n > 0, r
		}
		if gz, r := gzipped("plan", "test", "-i", inv); !gz {
			t.Errorf("plan with a slow link on record: plain\n%s", r)
		}
		if gz, r := gzipped("--compress=false", "plan", "test", "-i", inv); gz {
			t.Errorf("plan --compress=false: gzipped\n%s", r)
		}
		gz, r := gzipped("--compress=false", "up", "test", "-i", inv)
		if gz || strings.Contains(r.stdout, "sent gzipped") {
			t.Errorf("up --compress=false: gzipped\n%s", r)
		}
		for _, h := range env.Hosts {
			got, ok := links.load(linkKey(h))
			if !ok || got.From != "tcp" || got.Rate <= gzipBelow || !got.At.After(slow.At) {
				t.Errorf("%s after a loopback upload: %+v, want a fresh rate from the kernel, above %.0f B/s", h.Name, got, gzipBelow)
			}
		}
	})
}
