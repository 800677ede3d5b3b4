package firewall

import (
	"fmt"
	"strings"
	"time"
)

// Render prints the table in nft syntax, as `nft list table inet NAME` shows it
// (without counter values).
func (t *Table) Render() string { return t.render(false) }

// Loadable is Render as input for `nft -f`: the few rules that only netlink can
// express (Stmt.ListOnly: the full cone's remap draws) are printed as comments, so
// nft loads all the rest.
func (t *Table) Loadable() string { return t.render(true) }

func (t *Table) render(loadable bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", t.Name)
	for _, c := range t.Counters {
		fmt.Fprintf(&b, "\tcounter %s {\n\t}\n\n", c)
	}
	b.WriteString(t.renderCtTimeouts()) // sip.go
	b.WriteString(t.renderNoOffload(loadable))
	for _, s := range t.Sets {
		b.WriteString(s.render())
	}
	for i, c := range t.Chains {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(c.render(loadable))
	}
	b.WriteString("}\n")
	return b.String()
}

func (s *Set) typeText() string {
	names := make([]string, len(s.Fields))
	for i, f := range s.Fields {
		names[i] = f.Name
	}
	text := strings.Join(names, " . ")
	if len(s.Data) > 0 {
		data := make([]string, len(s.Data))
		for i, f := range s.Data {
			data[i] = f.Name
		}
		text += " : " + strings.Join(data, " . ")
	}
	return text
}

func (s *Set) flagsText() string {
	var flags []string
	if s.Dynamic {
		flags = append(flags, "dynamic")
	}
	if s.Interval {
		flags = append(flags, "interval")
	}
	if s.Timeout > 0 {
		flags = append(flags, "timeout")
	}
	return strings.Join(flags, ",")
}

func (s *Set) render() string {
	var b strings.Builder
	kind := "set"
	if len(s.Data) > 0 {
		kind = "map"
	}
	fmt.Fprintf(&b, "\t%s %s {\n\t\ttype %s\n", kind, s.Name, s.typeText())
	if s.Size > 0 {
		fmt.Fprintf(&b, "\t\tsize %d\n", s.Size)
	}
	if f := s.flagsText(); f != "" {
		fmt.Fprintf(&b, "\t\tflags %s\n", f)
	}
	if s.Timeout > 0 {
		fmt.Fprintf(&b, "\t\ttimeout %s\n", nftDuration(s.Timeout))
	}
	if s.Comment != "" {
		fmt.Fprintf(&b, "\t\tcomment %s\n", quote(s.Comment))
	}
	if len(s.Elems) > 0 || len(s.Packed) > 0 {
		b.WriteString("\t\telements = { ")
		for i, e := range s.Elements() {
			if i > 0 {
				b.WriteString(",\n\t\t\t     ")
			}
			b.WriteString(e.Text)
		}
		b.WriteString(" }\n")
	}
	b.WriteString("\t}\n\n")
	return b.String()
}

func (c *Chain) render(loadable bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\tchain %s {\n", c.Name)
	if c.Comment != "" {
		// google/nftables cannot store chain comments, so this is a plain nft comment line.
		fmt.Fprintf(&b, "\t\t# %s\n", c.Comment)
	}
	if h := c.Hook; h != nil {
		fmt.Fprintf(&b, "\t\ttype %s hook %s priority %s; policy accept;\n", h.Type, h.HookName, h.PrioText)
	}
	for _, r := range c.Rules {
		if loadable && r.ListOnly() {
			fmt.Fprintf(&b, "\t\t# voipgw installs over netlink only (nft cannot parse it): %s\n", r.Text())
			continue
		}
		fmt.Fprintf(&b, "\t\t%s\n", r.Text())
	}
	b.WriteString("\t}\n")
	return b.String()
}

// nftDuration prints a duration the way nft does: 1h, 30s, 1h30m, 2d.
func nftDuration(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	var b strings.Builder
	ms := d.Milliseconds()
	units := []struct {
		n    int64
		name string
	}{{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}}
	for _, u := range units {
		if ms >= u.n {
			fmt.Fprintf(&b, "%d%s", ms/u.n, u.name)
			ms %= u.n
		}
	}
	return b.String()
}
