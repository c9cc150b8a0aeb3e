package steps

import (
	"strings"
	"testing"
)

// A marker's source line is written when known, read back as written, and
// absent from markers written before it existed, which still read.
func TestMarkerSource(t *testing.T) {
	for _, tc := range []struct {
		name string
		text string // "" : Marker.text of in
		in   Marker
		want Marker
	}{
		{name: "git commit", in: Marker{Release: "20260101-000000", Checksum: "sha256:ab", Source: "git 0123abcd (v1.2)"},
			want: Marker{Release: "20260101-000000", Checksum: "sha256:ab", Source: "git 0123abcd (v1.2)"}},
		{name: "dirty, control characters flattened", in: Marker{Release: "r", Source: "git 0123 (a\nsource=evil) dirty"},
			want: Marker{Release: "r", Source: "git 0123 (a source=evil) dirty"}},
		{name: "artifact", in: Marker{Release: "r", Source: "artifact sha256:00ff"},
			want: Marker{Release: "r", Source: "artifact sha256:00ff"}},
		{name: "old marker", text: "release=r\nchecksum=sha256:ab\nprevious=\ncreated=2026-01-01T00:00:00Z\nby=me\n",
			want: Marker{Release: "r", Checksum: "sha256:ab", Created: "2026-01-01T00:00:00Z", By: "me"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := tc.text
			if text == "" {
				text = tc.in.text()
			}
			if tc.in.Source == "" && strings.Contains(text, "source=") {
				t.Errorf("a marker without a source writes a source line:\n%s", text)
			}
			var got Marker
			for _, line := range strings.Split(text, "\n") {
				got.set(line)
			}
			if got != tc.want {
				t.Errorf("read back %+v, want %+v (text %q)", got, tc.want, text)
			}
		})
	}
}
