package main

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func gcSettings() (gogc, limit uint64) {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/gomemlimit:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64()
}

// No collection until the limit, then Go's default pacing again.
func TestRoomyStart(t *testing.T) {
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	defer debug.SetGCPercent(100)
	defer debug.SetMemoryLimit(math.MaxInt64)
	roomyStart(64 << 20)
	if gogc, limit := gcSettings(); gogc != math.MaxUint64 || limit != 64<<20 {
		t.Fatalf("before the first collection: GOGC %d, limit %d; want off (%d) and %d", gogc, limit, uint64(math.MaxUint64), 64<<20)
	}
	runtime.GC()
	deadline := time.Now().Add(10 * time.Second)
	for {
		gogc, limit := gcSettings()
		if gogc == 100 && limit == math.MaxInt64 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a collection: GOGC %d, limit %d; want 100 and no limit", gogc, limit)
		}
		// The finalizer goroutine runs after a collection: let it.
		runtime.GC()
		runtime.Gosched()
	}
}

// A GOGC of the user's is left alone.
func TestRoomyStartLeavesGOGC(t *testing.T) {
	t.Setenv("GOGC", "200")
	before, limit := gcSettings()
	roomyStart(64 << 20)
	if gogc, l := gcSettings(); gogc != before || l != limit {
		t.Errorf("GOGC %d, limit %d; want them unchanged (%d, %d)", gogc, l, before, limit)
	}
}
