package build

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// genTree writes an app shaped like bench/app.go's: 60 packages of 49 small
// PHP-like files and 4 large assets, 2,944 files and ~43 MB. It returns the
// paths of 4 small files a redeploy changes.
func genTree(b *testing.B, dir string) []string {
	b.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	const words = "abstract class function return public private static array string int namespace use "
	var total int64
	write := func(rel string, data []byte) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			b.Fatal(err)
		}
		total += int64(len(data))
	}
	var changed []string
	for p := range 60 {
		for i := range 49 {
			body := make([]byte, 0, 8192)
			for n := 1000 + r.IntN(7000); len(body) < n; {
				w := r.IntN(len(words) - 10)
				body = append(body, words[w:w+10]...)
			}
			rel := fmt.Sprintf("vendor/acme-%02d/pkg-%d/src/Sub%d/Class%d.php", p/2, p, i%6, i)
			write(rel, body)
			if p%20 == 7 && i == 3 || p == 59 && i == 48 {
				changed = append(changed, rel)
			}
		}
	}
	for i, size := range []int{12 << 20, 9 << 20, 6 << 20, 4 << 20} {
		buf := make([]byte, size)
		rand.NewChaCha8([32]byte{byte(i)}).Read(buf)
		write(fmt.Sprintf("public/media/asset%d.bin", i), buf)
	}
	b.Logf("%d MB, %d changed files", total>>20, len(changed))
	return changed
}

// The generated files are new: with the real clock the racy rule would keep
// them out of the cache. An hour later they are settled, as in a real tree:
// Make with benchOptions.
func benchTree(b *testing.B) (src string, changed []string) {
	src = b.TempDir()
	return src, genTree(b, src)
}

func benchOptions(o Options) Options {
	settled := time.Now().Add(time.Hour)
	o.now = func() time.Time { return settled }
	return o
}

func BenchmarkMake(b *testing.B) {
	src, changed := benchTree(b)
	run := func(b *testing.B, cache string, before func(i int)) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			b.StopTimer()
			before(i)
			i++
			b.StartTimer()
			a, err := Make(b.Context(), benchOptions(Options{Source: src, CacheDir: cache}))
			if err != nil {
				b.Fatal(err)
			}
			a.Remove()
		}
	}
	cache := b.TempDir()
	b.Run("nocache", func(b *testing.B) { run(b, "", func(int) {}) })
	b.Run("cold", func(b *testing.B) { run(b, cache, func(int) { os.RemoveAll(filepath.Join(cache, "hashes")) }) })
	b.Run("warm", func(b *testing.B) { run(b, cache, func(int) {}) })
	b.Run("warm-4changed", func(b *testing.B) {
		run(b, cache, func(i int) {
			for _, rel := range changed {
				f, err := os.OpenFile(filepath.Join(src, rel), os.O_APPEND|os.O_WRONLY, 0)
				if err != nil {
					b.Fatal(err)
				}
				fmt.Fprintf(f, "// change %d\n", i)
				f.Close()
			}
		})
	})
}

func BenchmarkPayload(b *testing.B) {
	src, changed := benchTree(b)
	a, err := Make(b.Context(), benchOptions(Options{Source: src}))
	if err != nil {
		b.Fatal(err)
	}
	defer a.Remove()
	four := Transfer{Send: map[string]bool{}, Reused: map[string]bool{}, Skip: changed}
	for _, e := range a.Manifest.Entries {
		if e.Type == 'f' {
			four.Reused[e.Path] = true
		}
	}
	for _, p := range changed {
		four.Send[p] = true
		delete(four.Reused, p)
	}
	for _, c := range []struct {
		name string
		t    Transfer
	}{{"full", a.Manifest.Diff(nil, nil, nil, nil)}, {"4files", four}} {
		t := c.t
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				a.payloads = nil
				os.Remove(filepath.Join(a.dir, "payload-0.tar"))
				b.StartTimer()
				if _, err := a.Payload(t, false); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOutsideLinks judges the links of trees of n folders, each with a
// file and links chained through the folders before it (long chains, the
// worst case for resolving one link at a time): the time per op should grow
// linearly in n.
func BenchmarkOutsideLinks(b *testing.B) {
	for _, n := range []int{5000, 10000, 20000} {
		var items []item
		add := func(typ byte, p, target string) {
			items = append(items, item{walked: walked{Entry: Entry{Type: typ, Path: p, Target: target}}})
		}
		for i := range n {
			d := fmt.Sprintf("d%05d", i)
			add('d', d, "")
			add('f', d+"/f", "")
			if i == 0 {
				add('l', d+"/l", "f")
			} else {
				add('l', d+"/l", fmt.Sprintf("../d%05d/l", i-1)) // through every link before it
			}
			add('l', d+"/up", "l/../../../x") // l leads to d00000/f: three .. leave
		}
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				out, err := outsideLinks(items)
				if err != nil || len(out) != n {
					b.Fatalf("%d outside, %v", len(out), err)
				}
			}
		})
	}
}
