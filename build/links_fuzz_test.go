package build

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// graph is a random tree of folders, files and symlinks, built from fuzz
// bytes: the model the checks below compare the resolver with.
type graph struct {
	kind   map[string]byte   // path -> 'd', 'f' or 'l'
	target map[string]string // links
	order  []string          // creation order
}

// Names and target components. "r" is the build's own folder name and "o"
// a folder beside it, so that links can leave and come back in.
var (
	graphNames = []string{"a", "b", "c"}
	graphComps = []string{"..", "..", ".", "a", "b", "c", "r", "o", "x", ""}
)

func newGraph(data []byte) *graph {
	g := &graph{kind: map[string]byte{}, target: map[string]string{}}
	add := func(p string, k byte) {
		if _, ok := g.kind[p]; !ok {
			g.kind[p] = k
			g.order = append(g.order, p)
		}
	}
	add("z", 'f') // never an empty build
	dirs := []string{""}
	next := func() byte {
		if len(data) == 0 {
			return 0
		}
		b := data[0]
		data = data[1:]
		return b
	}
	for ops := 0; len(data) > 0 && ops < 32; ops++ {
		op, at, name := next(), next(), next()
		parent := dirs[int(at)%len(dirs)]
		p := graphNames[int(name)%len(graphNames)]
		if parent != "" {
			p = parent + "/" + p
		}
		if _, ok := g.kind[p]; ok {
			continue
		}
		switch op % 4 {
		case 0:
			add(p, 'd')
			dirs = append(dirs, p)
		case 1:
			add(p, 'f')
		default:
			n := 1 + int(next())%6
			var comps []string
			for range n {
				comps = append(comps, graphComps[int(next())%len(graphComps)])
			}
			t := strings.Join(comps, "/")
			if next()%16 == 0 {
				t = "/" + t
			}
			if t == "" {
				t = "."
			}
			add(p, 'l')
			g.target[p] = t
		}
	}
	return g
}

func (g *graph) write(t *testing.T, root string) {
	t.Helper()
	for _, p := range g.order {
		full := filepath.Join(root, p)
		var err error
		switch g.kind[p] {
		case 'd':
			err = os.Mkdir(full, 0o755)
		case 'f':
			err = os.WriteFile(full, nil, 0o644)
		case 'l':
			err = os.Symlink(g.target[p], full)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// refResult is what Linux does with a path: where it leads, whether the
// walk ever stepped out of the build's folder, or that it fails.
type refResult struct {
	at     string
	left   bool // stepped outside (then the walk is not followed further)
	failed bool // ENOENT, ENOTDIR or ELOOP before leaving
}

// resolve walks target from dir the way the kernel does, on the model: a
// missing name fails, a name below a file fails, more than 40 links fail.
func (g *graph) resolve(dir, target string) refResult {
	if strings.HasPrefix(target, "/") {
		return refResult{left: true}
	}
	cur := []string{}
	if dir != "" {
		cur = strings.Split(dir, "/")
	}
	queue := strings.Split(target, "/")
	follows := 0
	for len(queue) > 0 {
		c := queue[0]
		queue = queue[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(cur) == 0 {
				return refResult{left: true}
			}
			cur = cur[:len(cur)-1]
			continue
		}
		next := strings.Join(append(append([]string{}, cur...), c), "/")
		switch g.kind[next] {
		case 0:
			return refResult{failed: true}
		case 'f':
			if len(queue) > 0 { // "file/", "file/." and "file/x" are ENOTDIR
				return refResult{failed: true}
			}
			cur = append(cur, c)
		case 'd':
			cur = append(cur, c)
		case 'l':
			if follows++; follows > 40 {
				return refResult{failed: true}
			}
			t := g.target[next]
			if strings.HasPrefix(t, "/") {
				return refResult{left: true}
			}
			queue = append(strings.Split(t, "/"), queue...)
		}
	}
	return refResult{at: strings.Join(cur, "/")}
}

// kernelPath is where Linux resolves p to, or "" if it cannot.
func kernelPath(p string) string {
	fd, err := unix.Open(p, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return ""
	}
	defer unix.Close(fd)
	real, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return ""
	}
	return real
}

// FuzzLinkResolution checks, over random link graphs written to disk, that
// no link the resolver accepts resolves outside the build (by the kernel's
// own resolution), that it refuses every link whose walk steps outside,
// and that it accepts every link that resolves inside.
func FuzzLinkResolution(f *testing.F) {
	f.Add([]byte{2, 0, 0, 3, 0, 1})
	f.Add([]byte{0, 0, 0, 2, 1, 1, 2, 0, 6, 2, 2, 0, 3, 0, 0, 1, 3, 1, 0, 5, 4, 1})
	f.Add([]byte("\x00\x00\x01\x00\x01\x02\x02\x02\x00\x03\x00\x07\x03\x01\x02\x01\x03\x04\x00\x09\x06\x05"))
	f.Fuzz(func(t *testing.T, data []byte) {
		g := newGraph(data)
		base := t.TempDir()
		root := filepath.Join(base, "r")
		mktree(t, base, "d r", "f o/a", "d o/b/c", "l o/c -> ../r")
		g.write(t, root)
		realRoot, err := filepath.EvalSymlinks(root)
		if err != nil {
			t.Fatal(err)
		}
		s := &scanner{a: &Artifact{}, tree: root, name: root}
		items, err := s.list()
		if err != nil {
			t.Fatal(err)
		}
		out, err := outsideLinks(items)
		if err != nil {
			t.Fatal(err)
		}
		refused := map[string]bool{}
		for _, i := range out {
			refused[items[i].Path] = true
		}
		for p, target := range g.target {
			dir := filepath.Dir(p)
			if dir == "." {
				dir = ""
			}
			ref := g.resolve(dir, target)
			kernel := kernelPath(filepath.Join(root, p))
			switch {
			case ref.left && !refused[p]:
				t.Errorf("%s -> %s: its walk leaves the build, but it was accepted", p, target)
			case !ref.left && !ref.failed && refused[p]:
				t.Errorf("%s -> %s: resolves inside, to %q, but it was refused", p, target, ref.at)
			case !refused[p] && kernel != "" && kernel != realRoot && !strings.HasPrefix(kernel, realRoot+"/"):
				t.Errorf("%s -> %s: accepted, but the kernel resolves it to %s, outside %s", p, target, kernel, realRoot)
			}
			// The model agrees with the kernel where it resolves.
			if !ref.left && !ref.failed && kernel != filepath.Join(realRoot, ref.at) {
				t.Errorf("%s -> %s: model %q, kernel %q", p, target, ref.at, kernel)
			}
		}
	})
}
