package sipfix

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
)

// Diff is one field the far end saw differently from what the probe sent.
type Diff struct {
	Field string `json:"field"`
	Sent  string `json:"sent"`
	Seen  string `json:"seen"`
}

func (d Diff) String() string { return fmt.Sprintf("%s: sent %q, seen %q", d.Field, d.Sent, d.Seen) }

// fields are the parts of a request a SIP ALG rewrites, each as a value to
// compare: the request URI, the topmost Via's sent-by and parameters, Contact,
// From, To, Content-Length and the SDP's o=, c= and m= lines.
func fields(raw []byte) (map[string]string, []string, error) {
	req, _, err := parseSIP(raw, false)
	if err != nil {
		return nil, nil, err
	}
	if req.status != 0 {
		return nil, nil, fmt.Errorf("not a request")
	}
	f := map[string]string{"request-uri": req.uri}
	order := []string{"request-uri"}
	add := func(k, v string) {
		if _, seen := f[k]; !seen {
			order = append(order, k)
		}
		f[k] = v
	}
	if sentBy, params, ok := req.topVia(); ok {
		add("Via sent-by", sentBy)
		add("Via parameters", params)
	}
	for _, h := range []string{"Contact", "From", "To"} {
		if v, ok := req.get(h); ok {
			add(h, address(v))
		}
	}
	if v, ok := req.get("Content-Length"); ok {
		add("Content-Length", v)
	}
	for _, line := range strings.Split(string(req.body), "\n") {
		line = strings.TrimRight(line, "\r")
		if len(line) > 2 && line[1] == '=' && strings.ContainsRune("ocm", rune(line[0])) {
			add("SDP "+line[:2], line[2:])
		}
	}
	return f, order, nil
}

// Compare lists the fields of the request as seen by the far end (seen) that
// differ from what was sent; other differences (any byte) are reported as one
// "other bytes" entry, so that nothing a middlebox changed goes unnoticed.
func Compare(sent, seen []byte) ([]Diff, error) {
	fs, order, err := fields(sent)
	if err != nil {
		return nil, fmt.Errorf("parse the sent request: %w", err)
	}
	fv, orderSeen, err := fields(seen)
	if err != nil {
		return nil, fmt.Errorf("parse the request the echo saw: %w", err)
	}
	var diffs []Diff
	for _, k := range order {
		if fs[k] != fv[k] {
			diffs = append(diffs, Diff{Field: k, Sent: fs[k], Seen: fv[k]})
		}
	}
	for _, k := range orderSeen {
		if _, ok := fs[k]; !ok {
			diffs = append(diffs, Diff{Field: k, Sent: "", Seen: fv[k]})
		}
	}
	if len(diffs) == 0 && !bytes.Equal(sent, seen) {
		diffs = append(diffs, Diff{Field: "other bytes", Sent: fmt.Sprintf("%d bytes", len(sent)), Seen: fmt.Sprintf("%d bytes", len(seen))})
	}
	return diffs, nil
}

// Verdict is the one-line conclusion of a probe's diffs.
func Verdict(diffs []Diff) string {
	if len(diffs) == 0 {
		return "no SIP ALG: the far end saw every field as sent"
	}
	var names []string
	for _, d := range diffs {
		if !slices.Contains(names, d.Field) {
			names = append(names, d.Field)
		}
	}
	return "SIP ALG rewrote " + strings.Join(names, ", ") +
		": switch the SIP ALG off (voipgw: sip.alg '0' and voipgw apply; other routers: disable \"SIP ALG\"/\"SIP helper\", on Linux the nf_conntrack_sip helper)"
}
