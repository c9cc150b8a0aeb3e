package remote

// DeliveryRate is the rate, in bytes per second, at which the network last
// delivered this connection's data, as the kernel measured it (Linux's
// TCP_INFO delivery_rate; a lower rate sample limited by the application
// does not replace a higher one). Read after a large upload, it says what
// the path to the host carried, whatever the CPU of either end did; false
// where unknown: other systems, and hosts reached through a jump host or a
// ProxyCommand (no TCP connection of their own).
func (c *Client) DeliveryRate() (float64, bool) {
	if c.link == nil || c.link.tcp == nil {
		return 0, false
	}
	return kernelDeliveryRate(c.link.tcp)
}
