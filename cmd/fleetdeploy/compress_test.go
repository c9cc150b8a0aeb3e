package main

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleetdeploy/inventory"
	"github.com/fleetdeploy/fleetdeploy/link"
)

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
		links := link.NewStore(cache)
		slow := link.Rate{Rate: 1e6, From: "tcp", At: time.Now()} // 8 Mbit/s, over loopback's round trip
		for _, h := range env.Hosts {
			links.Save(link.Key(h), slow)
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
			got, ok := links.Load(link.Key(h))
			if !ok || got.From != "tcp" || got.Rate <= link.GzipBelow || !got.At.After(slow.At) {
				t.Errorf("%s after a loopback upload: %+v, want a fresh rate from the kernel, above %.0f B/s", h.Name, got, link.GzipBelow)
			}
		}
	})
}
