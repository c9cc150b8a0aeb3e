package remote

import (
	"bufio"
	"strings"
	"testing"
)

// A login shell that prints on a non-interactive session (an echo in
// ~/.bashrc) puts text before sftp-server's first packet: said so, with the
// text, rather than "a packet of 1466264675 bytes"; with no newline in what
// came, without waiting for more.
func TestReadPacketNamesTextBeforeSFTP(t *testing.T) {
	for _, in := range []string{"Welcome to the server\n\x00\x00\x00\x05\x02\x00\x00\x00\x03", "Welcome"} {
		_, _, err := readPacket(bufio.NewReader(strings.NewReader(in)))
		if err == nil || !strings.Contains(err.Error(), `the host sent text before SFTP began ("Welcome`) || !strings.Contains(err.Error(), "~/.bashrc") {
			t.Errorf("%q: %v", in, err)
		}
	}
	if _, _, err := readPacket(bufio.NewReader(strings.NewReader("\xff\xff\xff\xff\x02"))); err == nil || err.Error() != "sftp: a packet of 4294967295 bytes" {
		t.Errorf("binary junk: %v", err)
	}
}
