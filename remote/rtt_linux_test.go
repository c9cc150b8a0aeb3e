package remote

import (
	"net"
	"testing"
	"time"
)

// On loopback the kernel's round trip is well under the slow-link mark.
func TestKernelRTTOnLoopback(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			buf := make([]byte, 1)
			c.Read(buf)
			c.Write(buf)
			c.Close()
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte{1})
	c.Read(make([]byte, 1))
	rtt, ok := kernelRTT(c)
	if !ok || rtt <= 0 || rtt >= 10*time.Millisecond {
		t.Errorf("kernel RTT on loopback: %v, %v", rtt, ok)
	}
	if _, ok := kernelRTT(nil); ok {
		t.Error("a non-TCP conn has no kernel RTT")
	}
}
