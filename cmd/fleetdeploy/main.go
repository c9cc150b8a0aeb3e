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
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		cancel()
		for range sigs {
			fmt.Fprintln(os.Stderr, "fleetdeploy: already stopping: finishing or undoing the work on every host so that none is left half-done; this ends by itself (bounded by --undo-timeout)")
		}
	}()
	os.Exit(run(ctx, os.Args, os.Stdout, os.Stderr))
}
