package build

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// OutsideMode says what a build does with its symlinks that lead outside it.
type OutsideMode string

const (
	// OutsideRefuse fails the build, listing every such link: the default.
	OutsideRefuse OutsideMode = "refuse"
	// OutsideCopy ships, in each link's place, the file or folder it leads to
	// on the local machine, every symlink in it followed.
	OutsideCopy OutsideMode = "copy"
	// OutsideKeep ships the links as they are: the hosts provide the targets.
	OutsideKeep OutsideMode = "keep"
)

// OutsideError lists every symlink of a build that leads outside it, so that
// one run shows them all.
type OutsideError struct {
	Links []Entry // sorted by path
}

func (e *OutsideError) Error() string {
	var b strings.Builder
	if len(e.Links) == 1 {
		b.WriteString("1 symlink leads outside the build (outside_symlinks: copy ships what it leads to, keep ships it as it is):")
	} else {
		fmt.Fprintf(&b, "%d symlinks lead outside the build (outside_symlinks: copy ships what they lead to, keep ships them as they are):", len(e.Links))
	}
	for _, l := range e.Links {
		fmt.Fprintf(&b, "\n  %s -> %s", l.Path, l.Target)
	}
	return b.String()
}

// resolver follows symlinks within a build as a host's kernel would, from
// the build's own entries only: a host has nothing else. A link is outside
// when its resolution leaves the build's root at any point, or passes
// through a link that is. Where a path does not exist (a missing name, or a
// name below a file), the rest of it is followed as text, as if the missing
// folders were made later: a dangling link is harmless only while no
// creation of folders inside the build can make it lead outside.
//
// Each link is resolved once (memoized), so judging every link of a tree is
// linear in the total length of their targets. A link met again while its
// own resolution is under way is a loop, which no host can resolve either
// (the memo's in-progress mark is the loop bound); it counts as a missing
// folder at the link's place.
type resolver struct {
	index map[string]int // path to index in items
	items []item
	memo  []linkState // by index in items
}

type linkState struct {
	state uint8  // unseen, resolving or done
	out   bool   // leads outside the build
	loop  bool   // never resolves
	at    string // where it leads, relative to the root ("" is the root)
}

const (
	unseen uint8 = iota
	resolving
	done
)

// newResolver indexes the tree's entries. It refuses an entry below
// something that is not a folder of the build: a folder path that passes
// through a symlink would make a host write wherever that link leads. A
// walk cannot produce one; the check keeps the invariant explicit.
func newResolver(items []item) (*resolver, error) {
	r := &resolver{index: make(map[string]int, len(items)), items: items, memo: make([]linkState, len(items))}
	for i, it := range items {
		if dir := path.Dir(it.Path); dir != "." {
			j, ok := r.index[dir]
			if !ok || items[j].Type != 'd' {
				return nil, fmt.Errorf("%s: its folder %s is not a folder of the build", it.Path, dir)
			}
		}
		if _, dup := r.index[it.Path]; dup {
			return nil, fmt.Errorf("%s is listed twice", it.Path)
		}
		r.index[it.Path] = i
	}
	return r, nil
}

// link resolves the symlink items[i].
func (r *resolver) link(i int) linkState {
	s := &r.memo[i]
	switch s.state {
	case done:
		return *s
	case resolving:
		return linkState{loop: true}
	}
	s.state = resolving
	at, out := r.follow(path.Dir(r.items[i].Path), r.items[i].Target)
	*s = linkState{state: done, out: out, at: at}
	return *s
}

// follow resolves target as seen from the folder dir of the build ("." or
// a relative path). It reports where it leads, or out.
func (r *resolver) follow(dir, target string) (at string, out bool) {
	if target == "" || target[0] == '/' {
		return "", true
	}
	cur := dir
	if cur == "." {
		cur = ""
	}
	for comp := range strings.SplitSeq(target, "/") {
		switch comp {
		case "", ".":
		case "..":
			if cur == "" {
				return "", true
			}
			cur = parentOf(cur)
		default:
			next := comp
			if cur != "" {
				next = cur + "/" + comp
			}
			i, ok := r.index[next]
			if !ok || r.items[i].Type != 'l' {
				cur = next
				continue
			}
			s := r.link(i)
			switch {
			case s.out:
				return "", true
			case s.loop:
				cur = next
			default:
				cur = s.at
			}
		}
	}
	return cur, false
}

func parentOf(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}

// outsideLinks returns the indexes of the items that are symlinks leading
// outside the build, in walk order.
func outsideLinks(items []item) ([]int, error) {
	r, err := newResolver(items)
	if err != nil {
		return nil, err
	}
	var out []int
	for i, it := range items {
		if it.Type == 'l' && r.link(i).out {
			out = append(out, i)
		}
	}
	return out, nil
}

// outside applies the scanner's mode to the links leading outside the build.
func (s *scanner) outside(items []item) ([]item, error) {
	out, err := outsideLinks(items)
	if err != nil || len(out) == 0 {
		return items, err
	}
	links := make([]Entry, len(out))
	for i, j := range out {
		links[i] = items[j].Entry
	}
	sort.Slice(links, func(i, j int) bool { return links[i].Path < links[j].Path })
	switch s.mode {
	case OutsideKeep:
		s.a.KeptOutside = links
		return items, nil
	case OutsideCopy:
		s.a.CopiedOutside = links
		return s.copyOutside(items, out)
	}
	return nil, &OutsideError{Links: links}
}

// copyOutside replaces each outside link of items (indexes out, in walk
// order) by what it leads to locally, in walk order.
func (s *scanner) copyOutside(items []item, out []int) ([]item, error) {
	res := make([]item, 0, len(items))
	next := 0
	for i, it := range items {
		if next < len(out) && out[next] == i {
			next++
			c, err := s.copyTarget(it)
			if err != nil {
				return nil, fmt.Errorf("symlink %s -> %s: %w", it.Path, it.Target, err)
			}
			res = append(res, c...)
			continue
		}
		res = append(res, it)
	}
	return res, nil
}

// localTarget is the real path (no symlink in it) the link l leads to on
// this machine, seen from the folder the tree stands for: the source folder,
// even when the tree is its scratch copy or a git export.
func (s *scanner) localTarget(l item) (string, error) {
	t := l.Target
	if !filepath.IsAbs(t) {
		if s.linkBase == "" {
			return "", fmt.Errorf("an archive's relative link that leaves it has nothing local to copy")
		}
		t = filepath.Join(s.linkBase, filepath.FromSlash(path.Dir(l.Path))) + string(filepath.Separator) + t
	}
	// EvalSymlinks resolves ".." after the links before it, as the kernel
	// does; it fails on a missing target and on loops.
	real, err := filepath.EvalSymlinks(t)
	if err != nil {
		return "", fmt.Errorf("its target cannot be copied: %w", unwrapPath(err))
	}
	return real, nil
}

func unwrapPath(err error) error {
	if pe, ok := err.(*fs.PathError); ok {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}

// copyTarget lists what the outside link l leads to as entries at l's path:
// a file, or a folder whose symlinks are all followed. A missing target, a
// loop, or something neither file nor folder is refused.
func (s *scanner) copyTarget(l item) ([]item, error) {
	real, err := s.localTarget(l)
	if err != nil {
		return nil, err
	}
	info, err := os.Lstat(real)
	if err != nil {
		return nil, err
	}
	it, err := s.copied(l.Path, real, info)
	if err != nil || it.Type != 'd' {
		return []item{it}, err
	}
	res := []item{it}
	err = s.copyDir(real, l.Path, []fileKey{keyOf(info)}, &res)
	return res, err
}

// copied is the entry for the local file or folder real (no symlink in its
// path), shipped at rel.
func (s *scanner) copied(rel, real string, info fs.FileInfo) (item, error) {
	if !info.IsDir() && !info.Mode().IsRegular() {
		return item{}, fmt.Errorf("%s is not a regular file or folder", real)
	}
	it, err := s.entry(rel, info, real)
	it.src = real
	return it, err
}

// fileKey identifies a folder, to find loops.
type fileKey struct{ dev, ino uint64 }

func keyOf(info fs.FileInfo) fileKey {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return fileKey{uint64(st.Dev), uint64(st.Ino)}
	}
	return fileKey{}
}

// copyDir appends the entries of the local folder real, shipped at rel, in
// walk order. ancestors are the folders being copied around it.
func (s *scanner) copyDir(real, rel string, ancestors []fileKey, res *[]item) error {
	entries, err := os.ReadDir(real)
	if err != nil {
		return err
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	sort.Strings(names)
	for _, n := range names {
		r, p := rel+"/"+n, filepath.Join(real, n)
		if excluded(r, s.exclude) {
			continue
		}
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if info.Mode()&fs.ModeSymlink != 0 {
			if p, err = filepath.EvalSymlinks(p); err != nil {
				return fmt.Errorf("%s cannot be copied: %w", r, unwrapPath(err))
			}
			if info, err = os.Lstat(p); err != nil {
				return err
			}
		}
		it, err := s.copied(r, p, info)
		if err != nil {
			return err
		}
		*res = append(*res, it)
		if it.Type != 'd' {
			continue
		}
		k := keyOf(info)
		for _, a := range ancestors {
			if a == k {
				return fmt.Errorf("%s leads back to a folder that contains it: a loop", r)
			}
		}
		if err := s.copyDir(p, r, append(ancestors, k), res); err != nil {
			return err
		}
	}
	return nil
}

// ThroughSymlink returns the outermost symlink of the build that p is or
// goes through, so that a caller never acts on such a path (the place of a
// shared entry, say): a host would act wherever the link leads.
func (m *Manifest) ThroughSymlink(p string) (link string, found bool) {
	m.index()
	for q := p; q != "." && q != "" && q != "/"; q = path.Dir(q) {
		if i, ok := m.byPath[q]; ok && m.Entries[i].Type == 'l' {
			link, found = q, true
		}
	}
	return link, found
}
