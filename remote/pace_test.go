package remote_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetdeploy/fleetdeploy/remote"
)

// tarProgress reads GNU tar's checkpoint lines as the test's tar prints them:
// records of 64 KiB read so far.
func tarProgress(line []byte) (int64, bool) {
	_, n, ok := strings.Cut(string(line), "test-read:")
	if !ok {
		return 0, false
	}
	records, err := strconv.ParseInt(n, 10, 64)
	return records << 16, err == nil
}

// watchedReader is a source that records, at every read, how far the reader
// pulling from it has got beyond what the command reported.
type watchedReader struct {
	r io.Reader

	mu     sync.Mutex
	pulled int64
	acked  int64
	worst  int64 // most bytes pulled beyond the last report
}

func (w *watchedReader) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pulled += int64(n)
	w.worst = max(w.worst, w.pulled-w.acked)
	return n, err
}

func (w *watchedReader) report(line []byte) (int64, bool) {
	n, ok := tarProgress(line)
	if ok {
		w.mu.Lock()
		w.acked = max(w.acked, n)
		w.mu.Unlock()
	}
	return n, ok
}

// A paced upload into a real tar on an OpenSSH host: the input never runs
// more than the window ahead of what tar reports having read, every byte
// arrives, and tar's progress lines reach neither Stderr nor the error
// message.
func TestRunPacedUpload(t *testing.T) {
	c, h := dialOpenSSH(t)
	var archive bytes.Buffer
	tw := tar.NewWriter(&archive)
	rnd := rand.New(rand.NewPCG(1, 2))
	files := map[string][]byte{}
	for i := range 8 {
		data := make([]byte, 512<<10)
		for j := range data {
			data[j] = byte(rnd.Uint32())
		}
		name := fmt.Sprintf("f%d", i)
		files[name] = data
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data))})
		tw.Write(data)
	}
	tw.Close()
	const window = 256 << 10
	src := &watchedReader{r: bytes.NewReader(archive.Bytes())}
	var stderr bytes.Buffer
	dir := filepath.Join(h.Root, "out")
	_, err := c.Run(t.Context(), remote.Cmd{
		Args:   []string{"sh", "-c", `mkdir -p "$1" && tar -xf - -b 128 -C "$1" --checkpoint=2 --checkpoint-action=echo=test-read:%u && echo done >&2`, "sh", dir},
		Stdin:  src,
		Pace:   &remote.Pace{Window: window, Read: src.report},
		Stderr: &stderr,
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes, %v; want the %d bytes sent", name, len(got), err, len(want))
		}
	}
	if src.acked == 0 {
		t.Fatal("tar reported no progress: the test checks nothing")
	}
	if src.worst > window {
		t.Errorf("the input ran %d bytes ahead of tar's reports, window %d", src.worst, window)
	}
	if s := stderr.String(); strings.Contains(s, "test-read") || !strings.Contains(s, "done") {
		t.Errorf("stderr %q: want tar's progress left out, the rest passed on", s)
	}
}

// A paced command that ends without reading its input (here with an error)
// ends Run at once with its status and message, progress lines left out.
func TestRunPacedCommandEndsEarly(t *testing.T) {
	c, _ := dialOpenSSH(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	start := time.Now()
	_, err := c.Run(ctx, remote.Cmd{
		Args:  []string{"sh", "-c", `echo test-read:1 >&2; echo "no space left" >&2; exit 3`},
		Stdin: io.LimitReader(endless{}, 64<<20),
		Pace:  &remote.Pace{Window: 256 << 10, Read: tarProgress},
	})
	var x *remote.ExitError
	if !errors.As(err, &x) || x.Status != 3 {
		t.Fatalf("got %v, want exit status 3", err)
	}
	if strings.Contains(x.Stderr, "test-read") || !strings.Contains(x.Stderr, "no space left") {
		t.Errorf("error message %q: want the command's message without progress lines", x.Stderr)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Run took %v", d)
	}
}

// A paced command that never reports (here cat, where tar was expected) gets
// its whole input all the same, once a wait for a report has outlasted Stall.
func TestRunPacedWithoutReports(t *testing.T) {
	c, h := dialOpenSSH(t)
	data := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	out := filepath.Join(h.Root, "copy")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err := c.Run(ctx, remote.Cmd{
		Args:  []string{"sh", "-c", `cat > "$1"`, "sh", out},
		Stdin: bytes.NewReader(data),
		Pace:  &remote.Pace{Window: 256 << 10, Read: tarProgress, Stall: 200 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, data) {
		t.Errorf("%d bytes arrived (%v), want %d", len(got), err, len(data))
	}
}

// Uploads are paced to OpenSSH hosts only (cmd/fleetdeploy): the server's
// identification tells them apart.
func TestServerVersion(t *testing.T) {
	for name, start := range hosts(t) {
		t.Run(name, func(t *testing.T) {
			c := dial(t, newDialer(t, remote.DialerOptions{}), start(t).cfg)
			v := c.ServerVersion()
			if openssh := strings.HasPrefix(v, "SSH-2.0-OpenSSH_"); openssh != (name == "openssh") || !strings.HasPrefix(v, "SSH-2.0-") {
				t.Errorf("%s host: server version %q", name, v)
			}
		})
	}
}
