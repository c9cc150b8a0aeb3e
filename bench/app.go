//go:build bench

package bench

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// The benchmark app: a PHP-ish project of ~3000 files / ~40 MB, the same bytes
// and mtimes on every run and every machine.
//
//   - vendor/: 60 packages of 50 small PHP files each (composer.json + 49
//     classes of 0.4-10 KB): 3000 files, ~9 MB of compressible text;
//   - app/, config/, public/, routes/, resources/: a dozen app files;
//   - 4 large incompressible assets (pseudo-random bytes), ~31 MB.
//
// Every file and folder gets the mtime appMtime, so rsync's quick check
// (size + mtime) is honest: unchanged files really are unchanged.
//
// The redeploy variant (v2) is v1 with exactly changedFiles rewritten: new
// content, new size, mtime appMtime + 24h.

var appMtime = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// changedFiles are the files that differ between v1 and v2.
var changedFiles = []string{
	"VERSION",
	"config/app.php",
	"app/Http/Controllers/HomeController.php",
	"vendor/acme-17/http-kernel/src/Routing/Router.php",
}

// assets are the large incompressible files: path and size.
var assets = []struct {
	path string
	size int
}{
	{"public/media/intro.mp4", 12 << 20},
	{"public/media/tour.webm", 9 << 20},
	{"public/build/app.wasm", 6 << 20},
	{"resources/fonts/icons.woff2", 4 << 20},
}

// AppInfo describes an app the bench deploys: generated (GenerateApp) or a
// real-world tree (RealWorldApp).
type AppInfo struct {
	Dir      string
	Files    int
	Bytes    int64
	Checksum string // sha256 over every path, mode, size, mtime and content

	Name    string   // what the app is, for BENCHMARKS.md
	Changed []string // the files the redeploy variant changes
	// Probe is the file read after each deploy to check which variant is
	// live: its content differs between the two.
	Probe string
	// Outside is the inventory's outside_symlinks for it ("": none set).
	Outside string
}

var words = strings.Fields(`account address amount archive attribute batch buffer builder cache
cart channel checkout client collection config connection context controller cookie coupon
customer dispatcher driver email encoder entity event factory filter formatter gateway guard
handler header helper identity image index invoice item job kernel listener loader locale
logger mailer manager mapper message middleware migration model module notification order
parser payment pipeline policy pool price product provider query queue record redirect
registry renderer repository request resolver resource response route router rule schema
serializer service session shipment signature stock storage stream subscriber tax template
token transaction transformer translator upload user validator value view voucher warehouse`)

func pick(r *rand.Rand) string { return words[r.IntN(len(words))] }

func camel(s string) string { return strings.ToUpper(s[:1]) + s[1:] }

// phpClass writes one PHP-ish class of 1-25 methods.
func phpClass(r *rand.Rand, ns, class string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "<?php\n\ndeclare(strict_types=1);\n\nnamespace %s;\n\n", ns)
	for range 1 + r.IntN(5) {
		fmt.Fprintf(&b, "use %s\\%s%s;\n", ns, camel(pick(r)), camel(pick(r)))
	}
	fmt.Fprintf(&b, "\n/**\n * %s handles the %s of a %s.\n */\nfinal class %s\n{\n", class, pick(r), pick(r), class)
	for range 1 + r.IntN(4) {
		fmt.Fprintf(&b, "    private const %s = '%s-%d';\n", strings.ToUpper(pick(r)), pick(r), r.IntN(100000))
	}
	for range 1 + r.IntN(25) {
		m, a, c := pick(r), pick(r), pick(r)
		fmt.Fprintf(&b, "\n    /**\n     * Returns the %s for the given %s.\n     */\n", c, a)
		fmt.Fprintf(&b, "    public function %s%s(string $%s, int $limit = %d): ?array\n    {\n", m, camel(c), a, r.IntN(500))
		fmt.Fprintf(&b, "        $%s = $this->%s->find($%s, $limit * %d);\n", c, pick(r), a, 1+r.IntN(50))
		fmt.Fprintf(&b, "        if ($%s === null) {\n            return null;\n        }\n", c)
		fmt.Fprintf(&b, "        return ['%s' => $%s, '%s' => %d];\n    }\n", pick(r), c, pick(r), r.IntN(1<<20))
	}
	b.WriteString("}\n")
	return b.String()
}

// GenerateApp writes variant 1 or 2 of the app into dir (which must not exist).
func GenerateApp(dir string, variant int) (*AppInfo, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	r := rand.New(rand.NewPCG(20250101, 3000))

	for p := range 60 {
		vendor := fmt.Sprintf("acme-%02d", p/2)
		pkg := pick(r) + "-" + pick(r)
		if p == 34 {
			pkg = "http-kernel" // home of one of the changed files
		}
		base := "vendor/" + vendor + "/" + pkg
		files[base+"/composer.json"] = fmt.Appendf(nil, "{\n    \"name\": \"%s/%s\",\n    \"type\": \"library\",\n    \"license\": \"MIT\",\n    \"autoload\": {\"psr-4\": {\"Acme\\\\%s\\\\\": \"src/\"}}\n}\n", vendor, pkg, camel(pick(r)))
		subs := []string{"Contracts", "Events", "Exceptions", "Http", "Routing", "Support"}
		for i := range 49 {
			sub := subs[i%len(subs)]
			class := camel(pick(r)) + camel(pick(r)) + fmt.Sprint(i)
			if p == 34 && i == 4 {
				class = "Router"
			}
			ns := fmt.Sprintf("Acme\\%s\\%s", camel(strings.ReplaceAll(pkg, "-", "")), sub)
			files[base+"/src/"+sub+"/"+class+".php"] = []byte(phpClass(r, ns, class))
		}
	}
	for _, f := range []string{"HomeController", "CartController", "CheckoutController", "AccountController"} {
		files["app/Http/Controllers/"+f+".php"] = []byte(phpClass(r, "App\\Http\\Controllers", f))
	}
	for _, f := range []string{"app", "database", "cache", "queue", "mail"} {
		files["config/"+f+".php"] = fmt.Appendf(nil, "<?php\n\nreturn [\n    'name' => '%s',\n    'driver' => '%s',\n    'ttl' => %d,\n];\n", f, pick(r), r.IntN(3600))
	}
	files["public/index.php"] = []byte("<?php\n\nrequire __DIR__.'/../vendor/autoload.php';\n\n(require_once __DIR__.'/../bootstrap/app.php')->run();\n")
	files["routes/web.php"] = []byte("<?php\n\nuse App\\Http\\Controllers\\HomeController;\n\nRoute::get('/', [HomeController::class, 'index']);\n")
	files["composer.json"] = []byte("{\n    \"name\": \"acme/shop\",\n    \"require\": {\"php\": \"^8.2\"}\n}\n")
	files["VERSION"] = []byte("1.0.0\n")
	for i, a := range assets {
		buf := make([]byte, a.size)
		_, _ = rand.NewChaCha8([32]byte{'f', 'd', 'b', byte(i)}).Read(buf)
		files[a.path] = buf
	}
	changed := map[string]bool{}
	if variant == 2 {
		for _, p := range changedFiles {
			old, ok := files[p]
			if !ok {
				return nil, fmt.Errorf("changed file %s is not in the app", p)
			}
			changed[p] = true
			switch p {
			case "VERSION":
				files[p] = []byte("1.0.1-redeploy\n")
			default:
				files[p] = append(old, []byte("\n// redeploy: changed for the benchmark's second build\n")...)
			}
		}
	}

	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	dirs := map[string]bool{}
	for _, p := range paths {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(full, files[p], 0o644); err != nil {
			return nil, err
		}
		mt := appMtime
		if changed[p] {
			mt = appMtime.Add(24 * time.Hour)
		}
		if err := os.Chtimes(full, mt, mt); err != nil {
			return nil, err
		}
		for d := filepath.Dir(p); d != "."; d = filepath.Dir(d) {
			dirs[d] = true
		}
	}
	// Folder mtimes last, deepest first, since writing into a folder changes its mtime.
	var dl []string
	for d := range dirs {
		dl = append(dl, d)
	}
	sort.Slice(dl, func(i, j int) bool { return strings.Count(dl[i], "/") > strings.Count(dl[j], "/") })
	for _, d := range append(dl, ".") {
		if err := os.Chtimes(filepath.Join(dir, d), appMtime, appMtime); err != nil {
			return nil, err
		}
	}
	info, err := DescribeApp(dir)
	if info != nil {
		info.Name = "generated (bench/app.go)"
		info.Changed, info.Probe = changedFiles, "VERSION"
	}
	return info, err
}

// DescribeApp counts and checksums a tree.
func DescribeApp(dir string) (*AppInfo, error) {
	info := &AppInfo{Dir: dir}
	h := sha256.New()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if !d.Type().IsRegular() {
			// A folder's size depends on the file system: leave it out.
			fmt.Fprintf(h, "%s\x00%o\x00%d\x00", rel, fi.Mode(), fi.ModTime().Unix())
			return nil
		}
		fmt.Fprintf(h, "%s\x00%o\x00%d\x00%d\x00", rel, fi.Mode(), fi.Size(), fi.ModTime().Unix())
		info.Files++
		info.Bytes += fi.Size()
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(h, f)
		return err
	})
	info.Checksum = hex.EncodeToString(h.Sum(nil))
	return info, err
}
