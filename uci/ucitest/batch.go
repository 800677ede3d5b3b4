// Package ucitest is a minimal `uci batch` for tests: it applies the commands voipgw
// prints for /etc/config/firewall (`voipgw fw4-zone`) to a parsed file, so tests can
// check that the commands do what they claim, and render what fw4 would see after
// them, without OpenWrt's uci tool.
package ucitest

import (
	"fmt"
	"slices"
	"strings"

	"github.com/voipgw/voipgw/uci"
)

// Apply returns a copy of f (nil: an empty file named pkg) after cmds, the verbs
// set (section or option), add_list and delete (section or option) on package pkg.
// Values must be single-quoted without an embedded quote (what voipgw writes for
// the names it uses); anything else is an error, not a guess.
func Apply(f *uci.File, pkg string, cmds []string) (*uci.File, error) {
	if f == nil {
		f = &uci.File{Name: pkg}
	}
	// A copy through the text form: the caller's file stays as it was.
	f, err := uci.Parse(pkg, strings.NewReader(uci.Format(f)))
	if err != nil {
		return nil, err
	}
	find := func(name string) *uci.Section {
		for _, s := range f.Sections {
			if !s.Anonymous && s.Name == name {
				return s
			}
		}
		return nil
	}
	for _, c := range cmds {
		verb, arg, _ := strings.Cut(c, " ")
		path, value, hasValue := strings.Cut(arg, "=")
		if hasValue {
			if strings.Count(value, "'") != 2 || !strings.HasPrefix(value, "'") || !strings.HasSuffix(value, "'") {
				// set firewall.x=zone: a section's type is written bare.
				if !(verb == "set" && strings.Count(path, ".") == 1 && !strings.Contains(value, "'")) {
					return nil, fmt.Errorf("%q: value not single-quoted", c)
				}
			}
			value = strings.Trim(value, "'")
		}
		parts := strings.Split(path, ".")
		if parts[0] != pkg {
			return nil, fmt.Errorf("%q: not package %s", c, pkg)
		}
		switch {
		case verb == "set" && len(parts) == 2 && hasValue:
			if find(parts[1]) != nil {
				return nil, fmt.Errorf("%q: section exists already", c)
			}
			f.Sections = append(f.Sections, &uci.Section{Type: value, Name: parts[1]})
		case verb == "delete" && len(parts) == 2 && !hasValue:
			if find(parts[1]) == nil {
				return nil, fmt.Errorf("%q: no such section", c)
			}
			f.Sections = slices.DeleteFunc(f.Sections, func(s *uci.Section) bool { return !s.Anonymous && s.Name == parts[1] })
		case len(parts) == 3:
			s := find(parts[1])
			if s == nil {
				return nil, fmt.Errorf("%q: no section %s", c, parts[1])
			}
			i := slices.IndexFunc(s.Options, func(o *uci.Option) bool { return o.Name == parts[2] })
			switch {
			case verb == "set" && hasValue:
				o := &uci.Option{Name: parts[2], Values: []string{value}}
				if i >= 0 {
					s.Options[i] = o
				} else {
					s.Options = append(s.Options, o)
				}
			case verb == "add_list" && hasValue:
				if i >= 0 {
					s.Options[i].IsList = true
					s.Options[i].Values = append(s.Options[i].Values, value)
				} else {
					s.Options = append(s.Options, &uci.Option{Name: parts[2], Values: []string{value}, IsList: true})
				}
			case verb == "delete" && !hasValue:
				if i < 0 {
					return nil, fmt.Errorf("%q: no such option", c)
				}
				s.Options = slices.Delete(s.Options, i, i+1)
			default:
				return nil, fmt.Errorf("%q: unexpected command", c)
			}
		default:
			return nil, fmt.Errorf("%q: unexpected command", c)
		}
	}
	// Round trip through the text form, as uci commit writes it.
	return uci.Parse(pkg, strings.NewReader(uci.Format(f)))
}
