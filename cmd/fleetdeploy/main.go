// Command fleetdeploy deploys one build to a fleet of servers over SSH and
// switches them all to it at once.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	roomyStart(startHeap)
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, stopSignals(signal.Ignored)...)
	// Without this, a write to a closed stdout or stderr (`| head`, a `tee`
	// that died) kills the process on the spot, locks held and builds staged.
	// Notified, such writes fail with EPIPE instead and the run goes on to its
	// normal end. Notify, not Ignore: an ignored signal would stay ignored in
	// the build commands started from here.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	go func() {
		<-sigs
		cancel()
		for range sigs {
			fmt.Fprintln(os.Stderr, "fleetdeploy: already stopping: finishing or undoing the work on every host so that none is left half-done; this ends by itself (bounded by --undo-timeout)")
		}
	}()
	os.Exit(run(ctx, os.Args, os.Stdout, os.Stderr))
}

// stopSignals are the signals that stop a run the way Ctrl-C does: undo
// before the barrier, finish after it (or, until a deploy's health checks
// passed, switch the fleet back). SIGHUP (the terminal or the SSH
// session to the machine running fleetdeploy went away) is one of them, but
// SIGINT and SIGHUP are left alone when they were ignored at start (`nohup`, a
// background job of a script): catching them would undo that choice.
func stopSignals(ignored func(os.Signal) bool) []os.Signal {
	out := []os.Signal{syscall.SIGTERM}
	for _, s := range []os.Signal{os.Interrupt, syscall.SIGHUP} {
		if !ignored(s) {
			out = append(out, s)
		}
	}
	return out
}
