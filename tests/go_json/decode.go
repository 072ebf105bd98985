// The reference for how Ollama reads a request body: each body of cases.json decoded the way Ollama v0.33's
// handlers do (server/routes.go: c.ShouldBindJSON, gin's binding decodes one JSON value with encoding/json)
// into a struct with the fields of api.GenerateRequest the gateway guards (api/types.go: model, options
// map[string]any, keep_alive, shift). Prints what the struct holds, or the error, for every case, as JSON.
//
//	go run tests/go_json/decode.go < tests/unit/fixtures/go-json/cases.json > tests/unit/fixtures/go-json/decoded.json
//
// Not run by the tests (Go is not needed for them): they read its recorded output, decoded.json.
package main

import (
	"encoding/json"
	"os"
	"strings"
)

// The fields as api.GenerateRequest declares them; KeepAlive is *api.Duration there, whose UnmarshalJSON
// takes the raw value: kept raw here to show which of several the struct ends up with.
type request struct {
	Model     string          `json:"model"`
	Options   map[string]any  `json:"options"`
	KeepAlive json.RawMessage `json:"keep_alive,omitempty"`
	Shift     *bool           `json:"shift,omitempty"`
}

type result struct {
	Name      string          `json:"name"`
	Error     string          `json:"error,omitempty"`
	Model     string          `json:"model"`
	Options   map[string]any  `json:"options"`
	KeepAlive json.RawMessage `json:"keep_alive,omitempty"`
}

func main() {
	var cases []struct{ Name, Body string }
	if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
		panic(err)
	}
	results := []result{}
	for _, c := range cases {
		var r request
		out := result{Name: c.Name}
		// gin's decodeJSON: json.NewDecoder(body).Decode(obj); what follows the first value is not read
		if err := json.NewDecoder(strings.NewReader(c.Body)).Decode(&r); err != nil {
			out.Error = err.Error()
		} else {
			out.Model, out.Options, out.KeepAlive = r.Model, r.Options, r.KeepAlive
		}
		results = append(results, out)
	}
	encoder := json.NewEncoder(os.Stdout)
	encoder.SetIndent("", " ")
	if err := encoder.Encode(results); err != nil {
		panic(err)
	}
}
