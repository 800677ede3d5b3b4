package uci

import "strings"

// Format writes f in the canonical form of `uci export`: one tab-indented
// "option"/"list" line per value, values and section names in single quotes,
// a blank line between sections. A single quote inside a value closes the
// quoted text, adds an escaped quote and reopens it:
//
//	option a 'it'\''s'
//
// Parse of the result gives back f, apart from Line numbers. Only the last
// value of a non-list option is written, since a second "option" line would
// replace the first anyway.
func Format(f *File) string {
	var b strings.Builder
	if f.Package != "" {
		b.WriteString("package " + f.Package + "\n\n")
	}
	for i, s := range f.Sections {
		if i > 0 {
			b.WriteByte('\n')
		}
		typ := s.Type
		// uci export writes the type bare; quote it when a type that libuci
		// accepts would otherwise be misread (quotes, '#', ';', backslash).
		if strings.ContainsAny(typ, `'"\#;`) {
			typ = quote(typ)
		}
		b.WriteString("config " + typ)
		if !s.Anonymous {
			b.WriteString(" " + quote(s.Name))
		}
		b.WriteByte('\n')
		for _, o := range s.Options {
			kw, values := "list", o.Values
			if !o.IsList {
				kw, values = "option", values[max(len(values)-1, 0):]
			}
			for _, v := range values {
				b.WriteString("\t" + kw + " " + o.Name + " " + quote(v) + "\n")
			}
		}
	}
	return b.String()
}

// quote single-quotes s the way uci export does (see Format).
func quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
