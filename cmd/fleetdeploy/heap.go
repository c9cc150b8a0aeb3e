package main

import (
	"math"
	"os"
	"runtime"
	"runtime/debug"
)

// startHeap is how much memory fleetdeploy uses before its first garbage
// collection (see roomyStart).
const startHeap = 32 << 20

// roomyStart lets the process use up to size bytes before the first garbage
// collection, then returns to Go's default pacing (GOGC=100). Go starts with a
// 4 MB heap goal, and a redeploy to 16 hosts allocates about 22 MB: 8 or 9
// collections, whose mark workers also take cores that look idle to Go but
// that the hosts' processes need when they share the machine. With 32 MiB:
// one collection, and the client's CPU for that redeploy 226 against 258 ms
// (medians of 10). Left alone when GOGC or GOMEMLIMIT is set.
func roomyStart(size int64) {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(size)
	// A finalizer runs after the first collection. [32]byte: an object of the
	// tiny allocator might never be finalized.
	type sentinel [32]byte
	runtime.SetFinalizer(new(sentinel), func(*sentinel) {
		debug.SetGCPercent(100)
		debug.SetMemoryLimit(math.MaxInt64)
	})
}
