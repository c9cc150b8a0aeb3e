package report

import (
	"bytes"
	"encoding/json"
	"time"
)

// SchemaVersion is the version of the JSON events (docs/events.schema.json):
// raised when a field changes meaning or goes away; new event types and new
// fields keep it.
const SchemaVersion = 1

// header starts every event.
type header struct {
	Schema    int     `json:"schema"`
	Type      string  `json:"type"`
	Time      string  `json:"time"`       // RFC 3339, UTC, to the nanosecond
	ElapsedMS float64 `json:"elapsed_ms"` // since the command started
}

func (r *Reporter) header(typ string) header { return r.headerAt(typ, r.o.Now()) }

func (r *Reporter) headerAt(typ string, t time.Time) header {
	return header{Schema: SchemaVersion, Type: typ, Time: t.UTC().Format(time.RFC3339Nano), ElapsedMS: ms(t.Sub(r.start))}
}

type startEvent struct {
	header
	Command     string   `json:"command"`
	Environment string   `json:"environment"`
	Hosts       []string `json:"hosts"`
	Version     string   `json:"version"`
}

type stageEvent struct {
	header
	Stage      string   `json:"stage"`
	DurationMS *float64 `json:"duration_ms,omitempty"`
	OK         *bool    `json:"ok,omitempty"`
	Error      *string  `json:"error,omitempty"`
	Files      *int     `json:"files,omitempty"`
	Bytes      *int64   `json:"bytes,omitempty"`
	Checksum   string   `json:"checksum,omitempty"`
	From       string   `json:"from,omitempty"`
}

type connectedEvent struct {
	header
	Host       string  `json:"host"`
	OK         bool    `json:"ok"`
	Error      *string `json:"error,omitempty"`
	DurationMS float64 `json:"duration_ms"`
}

type hostStatusEvent struct {
	header
	Host     string   `json:"host"`
	OK       bool     `json:"ok"`
	Error    *string  `json:"error"`
	Live     *string  `json:"live"`
	Source   *string  `json:"source"`
	Previous *string  `json:"previous"`
	Builds   []string `json:"builds"`
	Lock     *string  `json:"lock"`
	Problems []string `json:"problems"`
	Notes    []string `json:"notes"`
}

type plannedEvent struct {
	header
	Action  string            `json:"action"`
	Release string            `json:"release"`
	Hosts   []plannedHostJSON `json:"hosts"`
}

type plannedHostJSON struct {
	Host  string  `json:"host"`
	Live  *string `json:"live"`
	Files *int    `json:"files"`
	Bytes *int64  `json:"bytes"`
	Whole bool    `json:"whole"`
	From  *string `json:"from"`
	Gzip  bool    `json:"gzip"`
}

type phaseEvent struct {
	header
	Phase      string   `json:"phase"`
	Host       string   `json:"host,omitempty"`
	DurationMS *float64 `json:"duration_ms,omitempty"`
	OK         *bool    `json:"ok,omitempty"`
	Error      *string  `json:"error,omitempty"`
	Bytes      *int64   `json:"bytes,omitempty"`
}

type stepEvent struct {
	header
	Phase      string   `json:"phase"`
	Host       string   `json:"host"`
	Step       string   `json:"step"`
	DurationMS *float64 `json:"duration_ms,omitempty"`
	OK         *bool    `json:"ok,omitempty"`
	Error      *string  `json:"error,omitempty"`
	Stopped    *bool    `json:"stopped,omitempty"`
}

type opEvent struct {
	header
	Phase string `json:"phase"`
	Host  string `json:"host"`
	Step  string `json:"step"`
	Op    string `json:"op"`
}

type outputEvent struct {
	header
	Phase  string `json:"phase"`
	Host   string `json:"host"`
	Step   string `json:"step"`
	Stream string `json:"stream"`
	Text   string `json:"text"`
}

type undoEvent struct {
	header
	Host string `json:"host"`
	Step string `json:"step"`
}

type barrierEvent struct{ header }

type cutoverEvent struct {
	header
	Phase       string     `json:"phase,omitempty"`
	Hosts       []swapJSON `json:"hosts"`
	SkewMS      float64    `json:"skew_ms"`
	SkewBoundMS float64    `json:"skew_bound_ms"`
}

type swapJSON struct {
	Host        string  `json:"host"`
	State       string  `json:"state"`
	SentMS      float64 `json:"sent_ms"`
	AckMS       float64 `json:"ack_ms"`
	AtMS        float64 `json:"at_ms"`
	RoundTripMS float64 `json:"round_trip_ms"`
	Error       *string `json:"error,omitempty"`
}

type messageEvent struct {
	header
	Text string `json:"text"`
}

type summaryEvent struct {
	header
	Hosts      []summaryHostJSON  `json:"hosts"`
	Phases     map[string]float64 `json:"phases"`
	Bytes      int64              `json:"bytes"`
	SkewMS     *float64           `json:"skew_ms"`
	DurationMS float64            `json:"duration_ms"`
}

type summaryHostJSON struct {
	Host        string             `json:"host"`
	Phases      map[string]float64 `json:"phases"`
	UploadMS    float64            `json:"upload_ms"`
	HooksMS     float64            `json:"hooks_ms"`
	Bytes       int64              `json:"bytes"`
	SwapAtMS    *float64           `json:"swap_at_ms"`
	RoundTripMS *float64           `json:"round_trip_ms"`
	Result      string             `json:"result"`
}

type resultEvent struct {
	header
	Command     string  `json:"command"`
	Environment string  `json:"environment,omitempty"`
	Release     string  `json:"release,omitempty"`
	OK          bool    `json:"ok"`
	ExitCode    int     `json:"exit_code"`
	Error       *string `json:"error"`
	DurationMS  float64 `json:"duration_ms"`
}

// emit writes an event to the JSON stream, if there is one.
func (r *Reporter) emit(e any) {
	if r.o.JSON == nil || r.finished {
		return
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // hook output with <, > and & stays readable
	if err := enc.Encode(e); err != nil {
		return // every event is made of strings and numbers: cannot happen
	}
	r.o.JSON.Write(b.Bytes()) // one write per line: lines never interleave
}
