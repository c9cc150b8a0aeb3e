package remote

import (
	"context"
	"net"
	"strings"
	"testing"
)

// A name that DNS does not know is reported as neither resolvable nor a
// Host of the ssh_config files read, naming them; a HostName from
// ssh_config that does not resolve is reported as such. (DNS is faked: test
// traffic stays on this machine.)
func TestUnresolvableName(t *testing.T) {
	t.Parallel()
	s := loadTestConfig(t, "Host web1\n    HostName web1.internal.example\n", "Host *\n    Port 22\n", nil)
	d := NewDialer(DialerOptions{})
	t.Cleanup(func() { d.Close() })
	d.dialTCP = func(ctx context.Context, addr string) (net.Conn, error) {
		host, _, _ := net.SplitHostPort(addr)
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}}
	}
	for _, tc := range []struct {
		alias string
		want  []string
	}{
		{"web2", []string{"web2 is neither resolvable (no such host) nor known to ssh_config (not a Host with a HostName in ", s.files[0].name, s.files[1].name}},
		{"web1", []string{"cannot resolve web1.internal.example (the HostName of web1 in " + s.files[0].name + "): no such host"}},
	} {
		cfg, err := s.Resolve(tc.alias, Overrides{Identity: "/dev/null"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = d.Dial(t.Context(), cfg)
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s: got %v, want %q in it", tc.alias, err, w)
			}
		}
	}
}
