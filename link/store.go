package link

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/fleetdeploy/fleetdeploy/inventory"
)

// Rate is what one large upload showed of the path to a host; its JSON is
// the record kept in the cache folder.
type Rate struct {
	Rate float64       `json:"rate"`   // bytes per second
	From string        `json:"from"`   // "tcp": the kernel's delivery rate; "stream": payload bytes over the upload's duration
	RTT  time.Duration `json:"rtt_ns"` // the round trip to the host then
	At   time.Time     `json:"at"`
}

// Store keeps one Rate per host in the cache folder (links/). Failing to
// read or write it is no error: it only guides a choice. The zero Store
// keeps nothing.
type Store struct{ dir string } // "": nowhere

// NewStore is the store under the cache folder cacheBase ("": none, as
// fleet.Cache.Base says when there is no cache folder).
func NewStore(cacheBase string) Store {
	if cacheBase == "" {
		return Store{}
	}
	return Store{dir: filepath.Join(cacheBase, "links")}
}

// Key names a host by how it is reached, so that two inventories' "web1"
// do not share a record.
func Key(h inventory.Host) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%d\x00%s", h.User, h.Address, h.Port, h.Jump))
	return hex.EncodeToString(sum[:16])
}

// Load reads key's record; a missing, garbled or oversized one is none.
func (s Store) Load(key string) (Rate, bool) {
	var r Rate
	if s.dir == "" {
		return r, false
	}
	data, err := os.ReadFile(filepath.Join(s.dir, key+".json"))
	if err != nil || len(data) > 4096 || json.Unmarshal(data, &r) != nil {
		return Rate{}, false
	}
	return r, true
}

// Save replaces key's record, atomically (a temporary file renamed), or
// does nothing when it cannot.
func (s Store) Save(key string, r Rate) {
	if s.dir == "" || os.MkdirAll(s.dir, 0o700) != nil {
		return
	}
	data, err := json.Marshal(r)
	if err != nil {
		return
	}
	p := filepath.Join(s.dir, key+".json")
	tmp := fmt.Sprintf("%s.tmp-%d", p, os.Getpid())
	if os.WriteFile(tmp, data, 0o600) == nil {
		if os.Rename(tmp, p) != nil {
			os.Remove(tmp)
		}
	}
}
