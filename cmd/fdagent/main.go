// Command fdagent is a PROTOTYPE, for measurement only: the host side of
// inspect and prepare in one process, to measure what the shell scripts cost.
package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/blake2b"
	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "inspect":
		err = inspect(os.Args[2], os.Args[3:])
	case "prepare":
		err = prepare(os.Args[2:])
	default:
		err = errors.New("unknown command")
	}
	if err != nil {
		var ec exitCode
		if errors.As(err, &ec) {
			fmt.Fprintln(os.Stderr, ec.msg)
			os.Exit(ec.code)
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

type exitCode struct {
	code int
	msg  string
}

func (e exitCode) Error() string { return e.msg }

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }

func inspect(r string, shared []string) error {
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	if fi, err := os.Stat(r); err != nil || !fi.IsDir() {
		fmt.Fprintln(w, "root\tmissing")
		return nil
	}
	if err := os.Chdir(r); err != nil {
		return err
	}
	fmt.Fprintln(w, "root\tok")
	t := ""
	if fi, err := os.Lstat("latest"); err == nil {
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			t, _ = os.Readlink("latest")
			fmt.Fprintf(w, "latest\tlink\t%s\n", t)
		case fi.IsDir():
			fmt.Fprintln(w, "latest\tdir")
		default:
			fmt.Fprintln(w, "latest\tother")
		}
	} else {
		fmt.Fprintln(w, "latest\tnone")
	}
	for _, d := range []string{"builds", ".fleetdeploy/staging", ".fleetdeploy/pending"} {
		names, _ := os.ReadDir(d)
		for _, n := range names {
			fmt.Fprintf(w, "entry\t%s/%s\n", d, n.Name())
		}
	}
	if l, err := os.Readlink(".fleetdeploy/lock"); err == nil {
		fmt.Fprintf(w, "lock\t%s\n", l)
	}
	id := strings.TrimPrefix(t, "builds/")
	if h, err := os.ReadFile(".fleetdeploy/history"); err == nil {
		lines := strings.Split(strings.TrimSuffix(string(h), "\n"), "\n")
		if len(lines) > 2000 {
			lines = lines[len(lines)-2000:]
		}
		for _, l := range lines {
			if l != "" || len(h) > 0 {
				fmt.Fprintf(w, "history\t%s\n", l)
			}
		}
	}
	if id != "" {
		if m, err := os.ReadFile(".fleetdeploy/builds/" + id); err == nil {
			for _, l := range strings.Split(strings.TrimSuffix(string(m), "\n"), "\n") {
				fmt.Fprintf(w, "marker\t%s\n", l)
			}
		}
		if man, err := os.ReadFile(".fleetdeploy/builds/" + id + ".manifest"); err == nil {
			fmt.Fprintf(w, "manifest\tsha256:%x\n", sha256.Sum256(man))
			known, err := os.ReadFile(".fleetdeploy/builds/" + id + ".stat")
			if fi, derr := os.Stat("builds/" + id); err == nil && derr == nil && fi.IsDir() {
				k := map[string]bool{}
				for _, l := range strings.Split(string(known), "\n") {
					if l != "" {
						k[strings.TrimPrefix(l, "./")] = true
					}
				}
				dirty := map[string]bool{}
				walkFiles("builds/"+id, func(line, p string) {
					if k[line] {
						delete(k, line)
						return
					}
					dirty[p] = true
				})
				for l := range k {
					dirty[strings.SplitN(l, "\t", 2)[0]] = true
				}
				for p := range dirty {
					fmt.Fprintf(w, "dirty\t%s\n", p)
				}
			}
		}
	}
	for _, s := range shared {
		if !exists("shared/" + s) {
			fmt.Fprintf(w, "noshared\t%s\n", s)
		}
	}
	return nil
}

// walkFiles calls f with find's "%P\t%s\t%T@\t%i" line of every regular file below dir.
func walkFiles(dir string, f func(line, rel string)) {
	var buf []byte
	var walk func(dfd int, rel string)
	walk = func(dfd int, rel string) {
		d := os.NewFile(uintptr(dfd), rel)
		ents, _ := d.ReadDir(-1)
		for _, e := range ents {
			p := e.Name()
			if rel != "" {
				p = rel + "/" + p
			}
			switch {
			case e.Type().IsDir():
				sub, err := unix.Openat(dfd, e.Name(), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
				if err == nil {
					walk(sub, p)
				}
			case e.Type().IsRegular():
				var st unix.Stat_t
				if unix.Fstatat(dfd, e.Name(), &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
					continue
				}
				buf = append(buf[:0], p...)
				buf = append(buf, '\t')
				buf = strconv.AppendInt(buf, st.Size, 10)
				buf = append(buf, '\t')
				buf = strconv.AppendInt(buf, st.Mtim.Sec, 10)
				buf = append(buf, '.')
				ns := strconv.AppendInt(nil, st.Mtim.Nsec+1e9, 10)
				buf = append(buf, ns[1:]...)
				buf = append(buf, '0', '\t')
				buf = strconv.AppendUint(buf, st.Ino, 10)
				f(string(buf), p)
			}
		}
		d.Close()
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	walk(fd, "")
}

func prepare(a []string) error {
	root, id, from, how, z, want, marker, token := a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]
	n, _ := strconv.Atoi(a[8])
	specs, skip := a[9:9+n], a[9+n:]
	if err := os.Chdir(root); err != nil {
		return err
	}
	root = "."
	st := ".fleetdeploy/staging/" + id
	b := "builds/" + id
	m := ".fleetdeploy/builds/" + id
	for _, d := range []string{root + "/builds", root + "/shared", root + "/.fleetdeploy/pending", root + "/.fleetdeploy/builds", st} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if exists(b) || exists(root+"/.fleetdeploy/pending/"+id) {
		return exitCode{17, "builds/" + id + " exists already"}
	}
	if err := os.WriteFile(root+"/.fleetdeploy/pending/"+id, []byte(token+"\n"), 0o644); err != nil {
		return err
	}
	var in io.Reader = bufio.NewReaderSize(os.Stdin, 256<<10)
	if z == "gzip" {
		zr, err := gzip.NewReader(in)
		if err != nil {
			return err
		}
		in = zr
	}
	if err := unpack(tar.NewReader(in), st, "builds/"+from); err != nil {
		return fmt.Errorf("%v\n(failed while unpacking)", err)
	}
	if sums, err := os.ReadFile(st + "/.fleetdeploy-upload.b2sum"); err == nil {
		for _, l := range strings.Split(strings.TrimSuffix(string(sums), "\n"), "\n") {
			if l == "" {
				continue
			}
			sum, p, _ := strings.Cut(l, "  ")
			f, err := os.Open(st + "/" + p)
			if err != nil {
				return err
			}
			h, _ := blake2b.New256(nil)
			io.Copy(h, f)
			f.Close()
			if hex.EncodeToString(h.Sum(nil)) != sum {
				return errors.New("uploaded files do not match their checksums: the upload is corrupt")
			}
		}
	}
	os.Remove(st + "/.fleetdeploy-upload.b2sum")
	var reuse []string
	if from == "" {
		if err := os.Rename(st+"/.fleetdeploy-manifest", m+".manifest"); err != nil {
			return err
		}
	} else {
		skipSet := map[string]bool{}
		for _, s := range skip {
			skipSet[s] = true
		}
		old, err := os.ReadFile(root + "/.fleetdeploy/builds/" + from + ".manifest")
		if err != nil {
			return err
		}
		delta, err := os.ReadFile(st + "/.fleetdeploy-manifest.delta")
		if err != nil {
			return err
		}
		var lines []string
		for _, l := range strings.Split(string(old), "\n") {
			f := strings.Split(l, "\t")
			if len(f) >= 5 && f[0] == "f" && !skipSet[f[4]] {
				lines = append(lines, l)
				reuse = append(reuse, f[4])
			}
		}
		for _, l := range strings.Split(string(delta), "\n") {
			if l != "" {
				lines = append(lines, l)
			}
		}
		key := func(l string) string { return strings.SplitN(l, "\t", 6)[4] }
		sort.SliceStable(lines, func(i, j int) bool { return key(lines[i]) < key(lines[j]) })
		var buf bytes.Buffer
		for _, l := range lines {
			buf.WriteString(l)
			buf.WriteByte('\n')
		}
		if err := os.WriteFile(m+".manifest", buf.Bytes(), 0o644); err != nil {
			return err
		}
		os.Remove(st + "/.fleetdeploy-manifest.delta")
		if how == "copy" {
			return errors.New("prototype: copy mode not done")
		}
	}
	man, _ := os.ReadFile(m + ".manifest")
	if got := fmt.Sprintf("sha256:%x", sha256.Sum256(man)); got != want {
		return fmt.Errorf("the build assembled here does not match the build's manifest (%s, want %s)", got, want)
	}
	if err := os.WriteFile(m, []byte(marker), 0o644); err != nil {
		return err
	}
	if err := os.Rename(st, b); err != nil {
		return err
	}
	var sharedPaths []string
	for _, spec := range specs {
		kind, p, _ := strings.Cut(spec, ":")
		sharedPaths = append(sharedPaths, p)
		s := root + "/shared/" + p
		up := "../.." + strings.Repeat("/..", strings.Count(p, "/"))
		if kind == "d" {
			if !exists(s) {
				os.MkdirAll(filepath.Dir(s), 0o755)
				if fi, err := os.Lstat(b + "/" + p); err == nil && fi.IsDir() {
					if err := os.Rename(b+"/"+p, s); err != nil {
						return err
					}
				} else if err := os.MkdirAll(s, 0o755); err != nil {
					return err
				}
			}
		} else if _, err := os.Stat(s); err != nil {
			return exitCode{3, "shared file " + p + " is missing: create " + s + " on this host (a shared file is never taken from the build)"}
		}
		t := b + "/" + p
		os.RemoveAll(t)
		os.MkdirAll(filepath.Dir(t), 0o755)
		if err := os.Symlink(up+"/shared/"+p, t); err != nil {
			return err
		}
	}
	// Record identities.
	var out bytes.Buffer
	oldStat, serr := os.ReadFile(root + "/.fleetdeploy/builds/" + from + ".stat")
	if from != "" && how == "link" && serr == nil {
		r := map[string]bool{}
		for _, p := range reuse {
			r[p] = true
		}
		for _, l := range strings.Split(string(oldStat), "\n") {
			l = strings.TrimPrefix(l, "./")
			p, _, _ := strings.Cut(l, "\t")
			if r[p] {
				out.WriteString(l)
				out.WriteByte('\n')
			}
		}
		for _, l := range strings.Split(string(man), "\n") {
			f := strings.Split(l, "\t")
			if len(f) < 5 || f[0] != "f" || r[f[4]] {
				continue
			}
			under := false
			for _, s := range sharedPaths {
				if f[4] == s || strings.HasPrefix(f[4], s+"/") {
					under = true
				}
			}
			if under {
				continue
			}
			var st syscall.Stat_t
			if syscall.Lstat(b+"/"+f[4], &st) == nil && st.Mode&syscall.S_IFMT == syscall.S_IFREG {
				fmt.Fprintf(&out, "%s\t%d\t%d.%09d0\t%d\n", f[4], st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Ino)
			}
		}
	} else {
		walkFiles(b, func(line, _ string) { out.WriteString(line); out.WriteByte('\n') })
	}
	return os.WriteFile(m+".stat", out.Bytes(), 0o644)
}

// unpack extracts a payload: members into st, hard-link entries from old.
func unpack(tr *tar.Reader, st, old string) error {
	type dirTime struct {
		p string
		t time.Time
	}
	var dirs []dirTime
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(h.Name)
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("unsafe path %q", h.Name)
		}
		p := st + "/" + name
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.Mkdir(p, fs.FileMode(h.Mode)&fs.ModePerm); err != nil && !os.IsExist(err) {
				return err
			}
			os.Chmod(p, fs.FileMode(h.Mode)&fs.ModePerm)
			dirs = append(dirs, dirTime{p, h.ModTime})
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
		case tar.TypeLink:
			if err := os.Link(old+"/"+filepath.Clean(h.Linkname), p); err != nil {
				return err
			}
		case tar.TypeReg:
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fs.FileMode(h.Mode)&fs.ModePerm)
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, tr); err != nil {
				f.Close()
				return err
			}
			f.Chmod(fs.FileMode(h.Mode) & fs.ModePerm)
			if err := f.Close(); err != nil {
				return err
			}
			os.Chtimes(p, h.ModTime, h.ModTime)
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		os.Chtimes(dirs[i].p, dirs[i].t, dirs[i].t)
	}
	return nil
}
