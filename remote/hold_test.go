package remote_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fleetdeploy/fleetdeploy/remote"
)

// A held request is not carried out by the host until it is released; a
// release with nothing held, or a second one, is harmless; and a request sent
// while another is held sends the held one first.
func TestHoldNext(t *testing.T) {
	for name, start := range hosts(t) {
		t.Run(name, func(t *testing.T) {
			h := start(t)
			c, err := remote.Dial(t.Context(), h.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.MkdirAll(t.Context(), h.dir); err != nil {
				t.Fatal(err)
			}
			next, latest := filepath.Join(h.dir, "next"), filepath.Join(h.dir, "latest")
			if err := os.Symlink("builds/2", next); err != nil {
				t.Fatal(err)
			}
			held, release := c.HoldNext()
			done := make(chan error, 1)
			go func() { done <- c.Rename(t.Context(), next, latest) }()
			select {
			case <-held:
			case err := <-done:
				t.Fatalf("the rename ended (%v) with its request held", err)
			case <-time.After(10 * time.Second):
				t.Fatal("no request was held")
			}
			// Had the request gone out, the host would have renamed within
			// this time many times over.
			<-time.After(300 * time.Millisecond)
			if _, err := os.Lstat(latest); err == nil {
				t.Fatal("the host renamed before the release")
			}
			select {
			case err := <-done:
				t.Fatalf("the rename ended (%v) before the release", err)
			default:
			}
			if err := release(); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatalf("rename after the release: %v", err)
			}
			if got, err := os.Readlink(latest); err != nil || got != "builds/2" {
				t.Fatalf("latest is %q (%v) after the release", got, err)
			}
			if err := release(); err != nil {
				t.Fatalf("a second release: %v", err)
			}

			// Nothing held: the release sends nothing, later requests go out.
			_, release = c.HoldNext()
			if err := release(); err != nil {
				t.Fatal(err)
			}
			if got, err := c.Readlink(t.Context(), latest); err != nil || got != "builds/2" {
				t.Fatalf("Readlink after an empty release: %q, %v", got, err)
			}

			// Another request while one is held: both are carried out, in order.
			if err := os.Symlink("builds/3", next); err != nil {
				t.Fatal(err)
			}
			held, release = c.HoldNext()
			defer release()
			go func() { done <- c.Rename(t.Context(), next, latest) }()
			<-held
			if got, err := c.Readlink(t.Context(), latest); err != nil || got != "builds/3" {
				t.Fatalf("a request sent after the held rename read %q (%v), want builds/3", got, err)
			}
			if err := <-done; err != nil {
				t.Fatalf("the held rename, sent by the next request: %v", err)
			}
		})
	}
}
