package remote

import (
	"context"
	"errors"
	"io"
	"sync"

	"golang.org/x/crypto/ssh"
)

// session is an SSH session channel for one command, its requests looked
// after from the moment it opens (x/crypto hangs the connection when a
// channel's requests go unread).
type session struct {
	ch   ssh.Channel
	exit chan exitInfo // once the channel is closed: how the command ended
	// ended is closed when the host says the command ended (exit-status or
	// exit-signal). OpenSSH says so at once, and closes the channel only
	// once its output is closed, which a process the command left running
	// in the background may hold open for as long as it runs.
	ended chan struct{}
}

// exitInfo is what the host said of a command's end.
type exitInfo struct {
	got    bool // an exit-status or exit-signal came
	status int
	signal string
}

func openSession(c *ssh.Client) (*session, error) {
	ch, reqs, err := c.OpenChannel("session", nil)
	if err != nil {
		return nil, err
	}
	s := &session{ch: ch, exit: make(chan exitInfo, 1), ended: make(chan struct{})}
	go s.serve(reqs)
	return s, nil
}

func (s *session) serve(reqs <-chan *ssh.Request) {
	var e exitInfo
	endOnce := sync.OnceFunc(func() { close(s.ended) })
	for r := range reqs {
		switch r.Type {
		case "exit-status":
			var p struct{ Status uint32 }
			if ssh.Unmarshal(r.Payload, &p) == nil {
				e = exitInfo{got: true, status: int(p.Status)}
				endOnce()
			}
		case "exit-signal":
			var p struct {
				Signal     string
				CoreDumped bool
				Error      string
				Lang       string
			}
			if ssh.Unmarshal(r.Payload, &p) == nil {
				e = exitInfo{got: true, status: -1, signal: p.Signal}
				endOnce()
			}
		default:
			// Keepalives and the like, as x/crypto's sessions and OpenSSH do.
			if r.WantReply {
				r.Reply(false, nil)
			}
		}
	}
	s.exit <- e
}

// errExecRefused is an exec request the host said no to.
var errExecRefused = errors.New("the host refused to run the command")

// execReply is the host's answer to an exec request: err is set once done
// is closed.
type execReply struct {
	done chan struct{}
	err  error
}

// exec asks the host to run command and returns at once, the answer
// awaited in the background.
func (s *session) exec(command string) *execReply {
	r := &execReply{done: make(chan struct{})}
	go func() {
		ok, err := s.ch.SendRequest("exec", true, ssh.Marshal(struct{ Command string }{command}))
		if err == nil && !ok {
			err = errExecRefused
		}
		r.err = err
		close(r.done)
	}()
	return r
}

// sessions opens the session channel of the next command ahead of time, so
// that a command costs the round trip of its exec alone. A session
// channel open on OpenSSH costs its sshd a session slot (MaxSessions, 10
// by default, per connection) and a little memory, no process: nothing
// runs until an exec arrives.
type sessions struct {
	conn *ssh.Client

	mu     sync.Mutex
	next   *spare
	closed bool
}

// spare is a session channel being opened, or open.
type spare struct {
	ready chan struct{}
	s     *session
	err   error
}

// newSessions starts opening the first command's channel.
func newSessions(c *ssh.Client) *sessions {
	p := &sessions{conn: c}
	p.next = p.open()
	return p
}

func (p *sessions) open() *spare {
	sp := &spare{ready: make(chan struct{})}
	go func() {
		sp.s, sp.err = openSession(p.conn)
		close(sp.ready)
	}()
	return sp
}

// discard closes sp's channel once it is open, and returns once the host
// has closed it too (its session slot is free then).
func (sp *spare) discard() {
	<-sp.ready
	if sp.s != nil {
		sp.s.ch.Close()
		<-sp.s.exit
	}
}

// take returns a session channel for a command: the one opened ahead (or
// being opened), else a new one; and starts opening the next. When the
// host refuses one more channel (MaxSessions), the one opened ahead is
// used instead.
func (p *sessions) take(ctx context.Context) (*session, error) {
	p.mu.Lock()
	sp := p.next
	p.next = nil
	if !p.closed {
		p.next = p.open()
	}
	p.mu.Unlock()
	if sp != nil {
		select {
		case <-sp.ready:
		case <-ctx.Done():
			go sp.discard()
			return nil, ctx.Err()
		}
		if sp.err == nil {
			return sp.s, nil
		}
	}
	s, err := openSession(p.conn)
	var oc *ssh.OpenChannelError
	if errors.As(err, &oc) { // OpenSSH says "open failed" when out of sessions
		p.mu.Lock()
		sp := p.next
		p.next = nil
		p.mu.Unlock()
		if sp != nil {
			if <-sp.ready; sp.err == nil {
				return sp.s, nil
			}
		}
	}
	return s, err
}

// drop closes the channel opened ahead, if any: for a host whose session
// slots are scarce.
func (p *sessions) drop() {
	p.mu.Lock()
	sp := p.next
	p.next = nil
	p.mu.Unlock()
	if sp != nil {
		sp.discard()
	}
}

// close stops opening channels ahead and closes the one that is.
func (p *sessions) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	go p.drop()
}

// copyOut copies r to w until r ends; when w fails, the rest of r is read
// and dropped (a channel whose data goes unread stops the command once its
// window is full), and w's error returned.
func copyOut(w io.Writer, r io.Reader) error {
	var werr error
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 && werr == nil {
			_, werr = w.Write(buf[:n])
		}
		if err != nil {
			return werr
		}
	}
}
