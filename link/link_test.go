package link

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

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
		{"just above the break-even", []float64{GzipBelow * 1.01}, 50 * time.Millisecond, false},
		{"just below the break-even", []float64{GzipBelow * 0.99}, 50 * time.Microsecond, true},
	} {
		got, why := WholeGzip(c.rates, c.nearest)
		if got != c.want || why == "" {
			t.Errorf("%s: gzip %v (%q), want %v", c.name, got, why, c.want)
		}
	}
	// The break-even follows from the measured rates: about 40 MB/s.
	if GzipBelow < 35e6 || GzipBelow > 45e6 {
		t.Errorf("break-even %.0f B/s, want about 40 MB/s", GzipBelow)
	}
}

// A record is used while recent and made over a path with about today's
// round trip.
func TestUsableRate(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	rec := func(rtt time.Duration, age time.Duration) Rate {
		return Rate{Rate: 10e6, From: "tcp", RTT: rtt, At: now.Add(-age)}
	}
	for _, c := range []struct {
		name string
		r    Rate
		rtt  time.Duration
		want bool
	}{
		{"same path", rec(50*time.Millisecond, time.Hour), 52 * time.Millisecond, true},
		{"loopback jitter", rec(30*time.Microsecond, time.Hour), 900 * time.Microsecond, true},
		{"the laptop moved nearer", rec(50*time.Millisecond, time.Hour), 5 * time.Millisecond, false},
		{"the laptop moved farther", rec(1*time.Millisecond, time.Hour), 40 * time.Millisecond, false},
		{"too old", rec(50*time.Millisecond, 31*24*time.Hour), 50 * time.Millisecond, false},
		{"from the future", rec(50*time.Millisecond, -2*time.Hour), 50 * time.Millisecond, false},
		{"no rate", Rate{RTT: 50 * time.Millisecond, At: now}, 50 * time.Millisecond, false},
	} {
		if got := Usable(c.r, c.rtt, now); got != c.want {
			t.Errorf("%s: usable %v, want %v", c.name, got, c.want)
		}
	}
}

// Choose follows the usable records of the hosts reached, and the nearest
// round trip when there are none.
func TestChoose(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	env := &inventory.Environment{Hosts: []inventory.Host{
		{Name: "near", Address: "a"}, {Name: "slow", Address: "b"}, {Name: "down", Address: "c"},
	}}
	fast := Rate{Rate: 1e9, From: "tcp", RTT: 40 * time.Millisecond, At: now.Add(-time.Hour)}
	slow := Rate{Rate: 1e6, From: "tcp", RTT: 40 * time.Millisecond, At: now.Add(-time.Hour)}
	for _, c := range []struct {
		name    string
		records map[string]Rate
		conns   map[string]remote.Host
		nearest time.Duration
		want    bool
	}{
		{"nothing on record, near", nil, map[string]remote.Host{"near": rateHost{}}, time.Millisecond, false},
		{"nothing on record, far", nil, map[string]remote.Host{"near": rateHost{}}, 50 * time.Millisecond, true},
		{"all fast", map[string]Rate{"near": fast, "slow": fast}, map[string]remote.Host{"near": rateHost{}, "slow": rateHost{}}, 50 * time.Millisecond, false},
		{"one slow", map[string]Rate{"near": fast, "slow": slow}, map[string]remote.Host{"near": rateHost{}, "slow": rateHost{}}, time.Millisecond, true},
		{"the slow one not reached", map[string]Rate{"near": fast, "down": slow}, map[string]remote.Host{"near": rateHost{}}, time.Millisecond, false},
		{"no round trip known: its record unused", map[string]Rate{"slow": slow}, map[string]remote.Host{"slow": struct{ remote.Host }{}}, time.Millisecond, false},
		{"an old record set aside", map[string]Rate{"slow": {Rate: 1e6, RTT: 40 * time.Millisecond, At: now.Add(-40 * 24 * time.Hour)}}, map[string]remote.Host{"slow": rateHost{}}, time.Millisecond, false},
	} {
		s := NewStore(t.TempDir())
		for _, h := range env.Hosts {
			if r, ok := c.records[h.Name]; ok {
				s.Save(Key(h), r)
			}
		}
		if got, why := Choose(env, c.conns, c.nearest, s, now); got != c.want || why == "" {
			t.Errorf("%s: gzip %v (%q), want %v", c.name, got, why, c.want)
		}
	}
}

// A rate stored is loaded back, per host as reached; a missing, garbled or
// oversized record, or no cache folder, is just no record.
func TestLinkStore(t *testing.T) {
	s := NewStore(t.TempDir())
	web1 := inventory.Host{Name: "web1", Address: "10.0.0.1", Port: 22, User: "deploy"}
	other := inventory.Host{Name: "web1", Address: "10.0.0.2", Port: 22, User: "deploy"}
	if Key(web1) == Key(other) {
		t.Fatal("two addresses share a key")
	}
	if _, ok := s.Load(Key(web1)); ok {
		t.Error("a record before any was stored")
	}
	want := Rate{Rate: 3.1e6, From: "tcp", RTT: 50 * time.Millisecond, At: time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)}
	s.Save(Key(web1), want)
	got, ok := s.Load(Key(web1))
	if !ok || got != want {
		t.Errorf("loaded %+v, %v; want %+v", got, ok, want)
	}
	if _, ok := s.Load(Key(other)); ok {
		t.Error("another host's record loaded")
	}
	if fi, err := os.Stat(s.dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("links folder: %v, %v", fi, err)
	}
	os.WriteFile(filepath.Join(s.dir, Key(other)+".json"), []byte("{not json"), 0o600)
	if _, ok := s.Load(Key(other)); ok {
		t.Error("a garbled record loaded")
	}
	os.WriteFile(filepath.Join(s.dir, Key(other)+".json"), bytes.Repeat([]byte(" "), 5000), 0o600)
	if _, ok := s.Load(Key(other)); ok {
		t.Error("an oversized record loaded")
	}
	none := NewStore("")
	none.Save(Key(web1), want)
	if _, ok := none.Load(Key(web1)); ok {
		t.Error("a record without a cache folder")
	}
}

// Records written before the move to this package still read: the file
// name (the key, computed here by hand from user, address, port and jump)
// and the JSON are unchanged.
func TestLinkStoreReadsOldRecords(t *testing.T) {
	base := t.TempDir()
	h := inventory.Host{Name: "web1", Address: "10.0.0.1", Port: 22, User: "deploy", Jump: "bastion"}
	const oldKey = "9ceeafdd39747128de60503e41837e06" // sha256("deploy\x0010.0.0.1\x0022\x00bastion")[:16]
	if Key(h) != oldKey {
		t.Fatalf("key %s, want %s", Key(h), oldKey)
	}
	if err := os.MkdirAll(filepath.Join(base, "links"), 0o700); err != nil {
		t.Fatal(err)
	}
	old := `{"rate":3100000,"from":"tcp","rtt_ns":50000000,"at":"2026-12-06T12:00:00Z"}`
	if err := os.WriteFile(filepath.Join(base, "links", oldKey+".json"), []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	got, ok := NewStore(base).Load(oldKey)
	want := Rate{Rate: 3.1e6, From: "tcp", RTT: 50 * time.Millisecond, At: time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)}
	if !ok || !got.At.Equal(want.At) || got.Rate != want.Rate || got.From != want.From || got.RTT != want.RTT {
		t.Errorf("loaded %+v, %v; want %+v", got, ok, want)
	}
}
