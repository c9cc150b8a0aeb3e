package build

import (
	"io/fs"
	"syscall"
)

// statID is the identity of a file from its (l)stat; false if unknown.
func statID(info fs.FileInfo) (fileID, bool) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{uint64(st.Dev), uint64(st.Ino), st.Size, st.Mtim.Nano(), st.Ctim.Nano()}, true
}
