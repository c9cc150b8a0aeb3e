package build

import (
	"slices"
	"strings"
	"testing"
)

func manifest(entries ...Entry) *Manifest { return &Manifest{Entries: entries} }

func file(path, sum string) Entry {
	return Entry{Type: 'f', Mode: 0o644, Size: 1, Sum: strings.Repeat(sum, 64), Path: path}
}

func TestManifestRoundTrip(t *testing.T) {
	m := manifest(Entry{Type: 'd', Mode: 0o755, Path: "a b"}, file("a b/c d.php", "1"), Entry{Type: 'l', Mode: 0o777, Target: "../x", Path: "a b/l"})
	back, err := ParseManifest(m.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if string(back.Marshal()) != string(m.Marshal()) || back.Digest() != m.Digest() {
		t.Errorf("round trip changed the manifest:\n%s\n%s", m.Marshal(), back.Marshal())
	}
	for _, bad := range []string{"x\n", "f\t0644\t1\tshort\tp\n", "q\t0644\t-\t-\tp\n", "f\tzz\t1\t" + strings.Repeat("0", 64) + "\tp\n"} {
		if _, err := ParseManifest([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestDiff(t *testing.T) {
	old := manifest(file("keep", "1"), file("change", "1"), file("gone", "1"), file("hand", "1"), file("shared/seed", "1"), file("mode", "1"))
	mode := file("mode", "1")
	mode.Mode = 0o600
	next := manifest(file("keep", "1"), file("change", "2"), file("new", "3"), file("hand", "1"), file("shared/seed", "1"), file("seeddir/x", "4"), mode)

	tr := next.Diff(old, []string{"hand"}, []string{"shared", "seeddir"}, []string{"seeddir"})
	if tr.Full {
		t.Fatal("full upload, want a delta")
	}
	var send []string
	for p := range tr.Send {
		send = append(send, p)
	}
	slices.Sort(send)
	if got, want := strings.Join(send, " "), "change hand mode new shared/seed"; got != want {
		t.Errorf("send %q, want %q", got, want)
	}
	if got, want := strings.Join(tr.Skip, " "), "change gone hand mode shared/seed"; got != want {
		t.Errorf("skip %q, want %q", got, want)
	}
	// Nothing reusable: a full upload.
	if tr := next.Diff(manifest(file("other", "9")), nil, nil, nil); !tr.Full || len(tr.Send) != 7 {
		t.Errorf("want a full upload of 7 files: %+v", tr)
	}
	// No old manifest: full, without the omitted shared directory.
	if tr := next.Diff(nil, nil, nil, []string{"seeddir"}); !tr.Full || tr.Send["seeddir/x"] || len(tr.Send) != 6 {
		t.Errorf("full upload: %+v", tr)
	}
}
