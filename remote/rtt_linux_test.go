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

// After a bulk upload on loopback the kernel knows the rate it delivered at:
// far above what any WAN carries.
func TestKernelDeliveryRateOnLoopback(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 1<<16)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for range 32 {
		if _, err := c.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	rate, ok := kernelDeliveryRate(c)
	c.Close()
	<-done
	t.Logf("loopback delivery rate: %.0f MB/s", rate/1e6)
	if !ok || rate < 100e6 {
		t.Errorf("delivery rate after 32 MiB on loopback: %.0f B/s, %v; want more than 100 MB/s", rate, ok)
	}
	if _, ok := kernelDeliveryRate(nil); ok {
		t.Error("a non-TCP conn has no delivery rate")
	}
}
