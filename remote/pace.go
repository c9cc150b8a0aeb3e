package remote

import (
	"bytes"
	"io"
	"sync"
	"time"
)

// Pace holds a command's input back to a window ahead of what the command
// reports it has read, for commands that read more slowly than the network
// delivers (a tar writing files). Without it the client sends as far as the
// SSH channel's window lets it (2 MiB with OpenSSH), and sshd keeps what the
// command has not read yet in a buffer that it grows in 32 KiB steps, each a
// copy of the whole buffer into a fresh mmap: on a 45 MiB upload, over a hundred
// copies of megabytes, and a page fault per 4 KiB of each (strace, perf; see
// docs/REDEPLOY.md).
type Pace struct {
	// Window is how many bytes may be sent beyond the last count Read
	// returned. It must exceed the command's reporting interval by 32 KiB
	// (a read waits for that much room), or both sides wait for each other.
	Window int64
	// Read recognises a line of the command's stderr that reports the bytes
	// of input it has read so far. Such lines are not passed on to Stderr,
	// nor kept for the error message.
	Read func(line []byte) (n int64, ok bool)
	// Stall is how long the input may wait for a report before pacing is
	// given up for the rest of the stream (default 2 s): a command that
	// stops reporting, or never did (another tar), must not hang the upload.
	Stall time.Duration
}

// pacedReader passes on r's bytes at most window ahead of acked, until a
// wait for room outlasts stall: then it no longer holds anything back.
type pacedReader struct {
	r      io.Reader
	window int64
	stall  time.Duration

	mu     sync.Mutex
	cond   *sync.Cond
	sent   int64
	acked  int64
	closed bool
	off    bool // pacing given up
}

func newPacedReader(r io.Reader, window int64, stall time.Duration) *pacedReader {
	if stall <= 0 {
		stall = 2 * time.Second
	}
	p := &pacedReader{r: r, window: window, stall: stall}
	p.cond = sync.NewCond(&p.mu)
	return p
}

// full reports whether there is less room than need; p.mu held.
func (p *pacedReader) full(need int64) bool {
	return !p.off && !p.closed && p.window-(p.sent-p.acked) < need
}

// minChunk is the least a read waits for room for (unless asked for less):
// an SSH packet's worth. Reads cut to whatever room is left would send the
// upload in packets smaller than SSH's 32 KiB, each with its own header,
// MAC and wake-ups on both ends.
const minChunk = 32 << 10

func (p *pacedReader) Read(b []byte) (int, error) {
	need := min(int64(len(b)), minChunk, p.window)
	p.mu.Lock()
	for p.full(need) {
		// Each wait gets stall to see a report come in.
		acked := p.acked
		t := time.AfterFunc(p.stall, func() {
			p.mu.Lock()
			if p.acked == acked {
				p.off = true
				p.cond.Broadcast()
			}
			p.mu.Unlock()
		})
		p.cond.Wait()
		t.Stop()
	}
	if p.closed {
		p.mu.Unlock()
		return 0, io.EOF
	}
	if room := p.window - (p.sent - p.acked); !p.off && int64(len(b)) > room {
		b = b[:room]
	}
	p.mu.Unlock()
	n, err := p.r.Read(b)
	p.mu.Lock()
	p.sent += int64(n)
	p.mu.Unlock()
	return n, err
}

// ack records that the command has read n bytes in all.
func (p *pacedReader) ack(n int64) {
	p.mu.Lock()
	if n > p.acked {
		p.acked = n
		p.cond.Broadcast()
	}
	p.mu.Unlock()
}

// close ends the stream: a Read waiting for room, and every later one,
// returns EOF.
func (p *pacedReader) close() {
	p.mu.Lock()
	p.closed = true
	p.cond.Broadcast()
	p.mu.Unlock()
}

// lineFilter passes on to w every line that drop does not claim. Call Flush
// at the end for a last line without a newline.
type lineFilter struct {
	w    io.Writer
	drop func(line []byte) bool
	buf  []byte
}

func (f *lineFilter) Write(p []byte) (int, error) {
	f.buf = append(f.buf, p...)
	for {
		i := bytes.IndexByte(f.buf, '\n')
		if i < 0 {
			break
		}
		line := f.buf[:i+1]
		if !f.drop(line[:i]) {
			if _, err := f.w.Write(line); err != nil {
				return len(p), err
			}
		}
		f.buf = f.buf[i+1:]
	}
	// A line longer than this is nobody's progress report: pass it on.
	if len(f.buf) > 4096 {
		f.Flush()
	}
	return len(p), nil
}

// Flush passes on what is left of an unterminated line.
func (f *lineFilter) Flush() {
	if len(f.buf) > 0 && !f.drop(f.buf) {
		f.w.Write(f.buf)
	}
	f.buf = nil
}
