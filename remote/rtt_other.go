//go:build !linux

package remote

import (
	"net"
	"time"
)

// kernelRTT is not available here: Dial falls back to the TCP connect time.
func kernelRTT(net.Conn) (time.Duration, bool) { return 0, false }

// kernelDeliveryRate is not available here.
func kernelDeliveryRate(net.Conn) (float64, bool) { return 0, false }
