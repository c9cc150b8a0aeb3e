package build

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// hashCache keeps the sha256 of the source folder's files between builds, so
// that a redeploy reads only the files that changed. An entry is found by
// relative path and file identity: device, inode, size, mtime and ctime.
//
// The "racy git" rule: an entry is stored, and trusted, only if the file's
// mtime and ctime are at least racyWindow older than the moment hashing
// began. A file written in the same timestamp tick as it was hashed could be
// written again without any change to its stat. Rewriting a file and
// restoring its mtime still changes its ctime, which only the kernel sets.
//
// A stale or wrong entry can at worst make a payload fail, never ship a
// wrong build: Payload hashes every byte it sends and refuses a file that
// does not match the manifest. So a cache problem only costs time: a cache
// that cannot be read, written or parsed is ignored.
type hashCache struct {
	path  string
	start time.Time            // hashing began
	old   map[string]hashEntry // loaded, by relative path
	next  []hashEntry          // to store
	hits  int
}

type hashEntry struct {
	id  fileID
	sum string // hex sha256
	rel string
}

// fileID tells that a file is unchanged without reading it.
type fileID struct {
	dev, ino           uint64
	size, mtime, ctime int64 // times in ns
}

const (
	racyWindow      = 2 * time.Second
	hashCacheHeader = "fleetdeploy-hashes 1 " // then the Unix ns hashing began
)

// loadHashCache returns the cache of the folder source, kept under dir
// (empty if none can be read), or nil when there is none to use. Hashing
// begins at now.
func loadHashCache(dir, source string, now time.Time) *hashCache {
	abs, err := filepath.Abs(source)
	if err != nil {
		return nil
	}
	sum := sha256.Sum256([]byte(abs))
	c := &hashCache{path: filepath.Join(dir, "hashes", hex.EncodeToString(sum[:])), start: now}
	if data, err := os.ReadFile(c.path); err == nil {
		c.old = parseHashCache(string(data))
		c.next = make([]hashEntry, 0, len(c.old))
	}
	return c
}

// parseHashCache reads the stored form: the header line, then one line per
// file: dev, ino, size, mtime, ctime, sha256 and path, tab-separated. Nil if
// malformed; entries too young for the racy rule are dropped.
func parseHashCache(data string) map[string]hashEntry {
	head, rest, _ := strings.Cut(data, "\n")
	ns, ok := strings.CutPrefix(head, hashCacheHeader)
	hashed, err := strconv.ParseInt(ns, 10, 64)
	if !ok || err != nil || !strings.HasSuffix(data, "\n") {
		return nil
	}
	settled := hashed - int64(racyWindow)
	out := map[string]hashEntry{}
	for rest != "" {
		var line string
		line, rest, _ = strings.Cut(rest, "\n")
		f := strings.SplitN(line, "\t", 7)
		if len(f) != 7 || len(f[5]) != 64 || strings.Trim(f[5], "0123456789abcdef") != "" || f[6] == "" {
			return nil
		}
		var e hashEntry
		var errs [5]error
		e.id.dev, errs[0] = strconv.ParseUint(f[0], 10, 64)
		e.id.ino, errs[1] = strconv.ParseUint(f[1], 10, 64)
		e.id.size, errs[2] = strconv.ParseInt(f[2], 10, 64)
		e.id.mtime, errs[3] = strconv.ParseInt(f[3], 10, 64)
		e.id.ctime, errs[4] = strconv.ParseInt(f[4], 10, 64)
		for _, err := range errs {
			if err != nil {
				return nil
			}
		}
		e.sum, e.rel = f[5], f[6]
		if e.id.mtime <= settled && e.id.ctime <= settled {
			out[e.rel] = e
		}
	}
	return out
}

// settled reports whether a file with this identity, hashed now, may be cached.
func (c *hashCache) settled(id fileID) bool {
	limit := c.start.Add(-racyWindow).UnixNano()
	return id.mtime <= limit && id.ctime <= limit
}

// lookup returns the cached sha256 of the file at rel listed with info.
func (c *hashCache) lookup(rel string, info fs.FileInfo) (string, bool) {
	if c == nil {
		return "", false
	}
	id, ok := statID(info)
	e, found := c.old[rel]
	if !ok || !found || e.id != id || !c.settled(id) {
		return "", false
	}
	c.next = append(c.next, e)
	c.hits++
	return e.sum, true
}

// store records the sha256 of the file at rel, listed with listed and hashed
// after an fstat that gave opened, if the racy rule allows.
func (c *hashCache) store(rel string, listed, opened fs.FileInfo, sum string) {
	if c == nil {
		return
	}
	id, ok := statID(listed)
	id2, ok2 := statID(opened)
	if ok && ok2 && id == id2 && c.settled(id) {
		c.next = append(c.next, hashEntry{id, sum, rel})
	}
}

// save replaces the stored cache (0600 in a 0700 folder, by rename) unless it
// holds the same entries already. Failures are ignored.
func (c *hashCache) save() {
	if c == nil || (c.hits == len(c.next) && len(c.next) == len(c.old)) {
		return
	}
	dir := filepath.Dir(c.path)
	if os.MkdirAll(dir, 0o700) != nil {
		return
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return
	}
	w := bufio.NewWriter(f)
	fmt.Fprintf(w, "%s%d\n", hashCacheHeader, c.start.UnixNano())
	for _, e := range c.next {
		fmt.Fprintf(w, "%d\t%d\t%d\t%d\t%d\t%s\t%s\n", e.id.dev, e.id.ino, e.id.size, e.id.mtime, e.id.ctime, e.sum, e.rel)
	}
	err = w.Flush()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), c.path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
}
