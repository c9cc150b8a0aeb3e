//go:build bench

package bench

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleetdeploy/build"
	"github.com/fleetdeploy/fleetdeploy/internal/sshtest"
)

var (
	flagScaleSizes = flag.String("scale-sizes", "5000,10000,20000,40000,80000", "TestScale: file counts of the generated trees")
	flagScaleHosts = flag.Int("scale-hosts", 2, "TestScale: OpenSSH hosts deployed to")
)

// TestScale checks that fleetdeploy's cost grows no worse than linearly in
// the number of files: for trees of each size in -scale-sizes (same file
// size distribution, ~4 KiB on average), it times build.Make without and
// with the hash cache, then a first deploy, a redeploy of 2 changed files, a
// rollback and status --verify to -scale-hosts OpenSSH hosts, and prints
// each figure per 1,000 files. Run it through bench/run.sh -scale (on a
// tmpfs, like the benchmark).
func TestScale(t *testing.T) {
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	bin := filepath.Join(work, "fleetdeploy")
	gb := exec.Command("go", "build", "-o", bin, "./cmd/fleetdeploy")
	gb.Dir = repo
	if out, err := gb.CombinedOutput(); err != nil {
		t.Fatalf("building fleetdeploy: %v\n%s", err, out)
	}
	f := sshtest.Start(t, *flagScaleHosts)
	load := MarkCPU()
	steps := []string{"build.Make, cold", "build.Make, hash cache", "first deploy", "redeploy, 2 files", "rollback", "status --verify"}
	type row struct {
		files int
		bytes int64
		took  []time.Duration
		rss   []int64 // KiB, fleetdeploy's peak, per CLI step
	}
	var rows []row
	for _, n := range parseSizes(t, *flagScaleSizes) {
		dir := filepath.Join(work, fmt.Sprintf("app-%d", n))
		size, changed := scaleTree(t, dir, n)
		r := row{files: n, bytes: size}
		for i, cache := range []string{"", filepath.Join(work, fmt.Sprintf("cache-%d", n))} {
			if i == 1 { // fill the cache first: the figure is a build with every hash known
				if a, err := build.Make(context.Background(), build.Options{Source: dir, CacheDir: cache}); err == nil {
					a.Remove()
				}
			}
			start := time.Now()
			a, err := build.Make(context.Background(), build.Options{Source: dir, CacheDir: cache})
			if err != nil {
				t.Fatal(err)
			}
			r.took = append(r.took, time.Since(start))
			a.Remove()
		}
		var roots []string
		var hosts strings.Builder
		for _, h := range f.Hosts {
			root := filepath.Join(h.Root, fmt.Sprintf("scale-%d", n))
			roots = append(roots, root)
			fmt.Fprintf(&hosts, "      - {address: 127.0.0.1, port: %d, root: %s}\n", h.Port, root)
		}
		inv := filepath.Join(work, fmt.Sprintf("hosts-%d.yml", n))
		os.WriteFile(inv, fmt.Appendf(nil, "app: scale\nsource: %s\nroot: /nonexistent\nssh:\n  user: %s\n  identity: %s\n  known_hosts: %s\n  config: none\nenvironments:\n  scale:\n    hosts:\n%s",
			dir, f.User, f.Identity, f.KnownHosts, hosts.String()), 0o644)
		cache := filepath.Join(work, fmt.Sprintf("fdcache-%d", n))
		run := func(args ...string) {
			t.Helper()
			report := filepath.Join(work, "rusage")
			m := Command(context.Background(), report, bin, append([]string{"--cache-dir", cache}, args...)...)
			m.Cmd.Env = childEnv()
			start := time.Now()
			out, err := m.Cmd.CombinedOutput()
			rss, wall := m.Result(time.Since(start))
			if err != nil {
				t.Fatalf("fleetdeploy %v: %v\n%s", args, err, out)
			}
			r.took = append(r.took, wall)
			r.rss = append(r.rss, rss)
		}
		run("up", "scale", "-i", inv)
		for _, c := range changed {
			os.WriteFile(filepath.Join(dir, c), []byte(fmt.Sprintf("changed %s\n", c)), 0o644)
		}
		run("up", "scale", "-i", inv)
		run("rollback", "scale", "-i", inv)
		run("status", "scale", "-i", inv, "--verify")
		rows = append(rows, r)
		os.RemoveAll(dir)
		for _, root := range roots {
			os.RemoveAll(root) // owned by the login user; as root, removable
		}
		t.Logf("%d files: %v", n, r.took)
	}
	foreign, share := load.Foreign()
	var b strings.Builder
	fmt.Fprintf(&b, "Scaling, %d OpenSSH hosts, generated trees (~4 KiB per file, 100 files per folder); other processes used %.0f s of CPU meanwhile (%.0f%% of the machine).\n\n", *flagScaleHosts, foreign.Seconds(), 100*share)
	b.WriteString("| files | MB |")
	for _, s := range steps {
		b.WriteString(" " + s + " |")
	}
	b.WriteString(" peak RSS (first deploy) |\n|---:|---:|")
	b.WriteString(strings.Repeat("---|", len(steps)) + "---:|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %d | %.0f |", r.files, float64(r.bytes)/1e6)
		for _, d := range r.took {
			fmt.Fprintf(&b, " %.2f s (%.0f ms/1k) |", d.Seconds(), float64(d.Milliseconds())*1000/float64(r.files))
		}
		fmt.Fprintf(&b, " %d MiB |\n", r.rss[0]/1024)
	}
	fmt.Printf("\n%s\n", b.String())
}

// scaleTree writes n files below dir (100 per folder, two levels, 200 B to
// 8 KiB of text each, the same for every n up to its size) and returns their
// total size and 2 of them to change.
func scaleTree(t *testing.T, dir string, n int) (int64, []string) {
	r := rand.New(rand.NewPCG(17, 23))
	var total int64
	buf := make([]byte, 8192)
	for i := range buf {
		buf[i] = "abcdefghijklmnopqrstuvwxyz \n"[r.IntN(28)]
	}
	var changed []string
	for i := range n {
		rel := filepath.Join(fmt.Sprintf("d%03d", i/10000), fmt.Sprintf("e%03d", i/100%100), "f"+strconv.Itoa(i)+".php")
		p := filepath.Join(dir, rel)
		if i%100 == 0 {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		size := 200 + r.IntN(len(buf)-200)
		if err := os.WriteFile(p, buf[:size], 0o644); err != nil {
			t.Fatal(err)
		}
		total += int64(size)
		if i == n/3 || i == n-1 {
			changed = append(changed, rel)
		}
	}
	// Settled files, as in a real tree: the hash cache trusts files older than a moment.
	old := time.Now().Add(-time.Hour)
	filepath.Walk(dir, func(p string, _ os.FileInfo, _ error) error { return os.Chtimes(p, old, old) })
	return total, changed
}
