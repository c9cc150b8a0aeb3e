// Package eventcheck checks a stream of `fleetdeploy --json` events against
// docs/events.schema.json and the rules the schema cannot say: one event
// per line, start first when there is one, result exactly once and last.
// Tests of report and cmd use it on scripted and on real runs.
package eventcheck

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Validate checks stream against the schema file at schemaPath and returns
// the events decoded, in order.
func Validate(schemaPath string, stream []byte) ([]map[string]any, error) {
	abs, err := filepath.Abs(schemaPath)
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	sch, err := c.Compile(abs)
	if err != nil {
		return nil, fmt.Errorf("the schema: %w", err)
	}
	var events []map[string]any
	var errs []error
	sc := bufio.NewScanner(bytes.NewReader(stream))
	sc.Buffer(nil, 16<<20)
	for n := 1; sc.Scan(); n++ {
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(sc.Bytes()))
		if err != nil {
			errs = append(errs, fmt.Errorf("line %d is not one JSON value: %v: %q", n, err, sc.Text()))
			continue
		}
		if err := sch.Validate(inst); err != nil {
			errs = append(errs, fmt.Errorf("line %d: %v\n%s", n, err, sc.Text()))
		}
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			errs = append(errs, fmt.Errorf("line %d: %v", n, err))
			continue
		}
		events = append(events, e)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, err)
	}
	if len(events) == 0 {
		return nil, errors.Join(append(errs, errors.New("no events"))...)
	}
	results := 0
	for i, e := range events {
		switch e["type"] {
		case "result":
			results++
			if i != len(events)-1 {
				errs = append(errs, fmt.Errorf("line %d: a result before the end", i+1))
			}
		case "start":
			if i != 0 {
				errs = append(errs, fmt.Errorf("line %d: start is not the first event", i+1))
			}
		}
	}
	if results != 1 {
		errs = append(errs, fmt.Errorf("%d result events, want exactly one, last", results))
	}
	return events, errors.Join(errs...)
}
