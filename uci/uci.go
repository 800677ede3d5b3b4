// Package uci parses OpenWrt UCI configuration files (the format of /etc/config/*).
//
// It is a small strict parser: it accepts what OpenWrt's libuci accepts for the
// "config", "option" and "list" keywords (plus "package"), with single and double
// quotes, backslash escapes, comments and anonymous or named sections, and
// rejects everything else with an error that names the file and line.
//
// No maintained Go UCI library is served by the module proxy we build with, so the
// grammar is implemented here (see the README's "Why hand-written" notes).
//
// # Syntax, as in libuci's file.c
//
//   - A command is a keyword and its arguments; it ends at an unquoted newline
//     or an unquoted ';'. Keywords are bare words: package (or p), config (c),
//     option (o), list (l); the one-letter forms are accepted because libuci
//     accepts them.
//   - Arguments are built from adjacent pieces that concatenate: bare text,
//     'single quoted' text (no escapes at all), and "double quoted" text. Quoted
//     text may span lines; the newline becomes part of the value, as in libuci.
//   - A backslash outside single quotes takes the next byte literally ("\n" is
//     the letter n: libuci decodes no C escapes), except that a backslash
//     before a newline (or CR LF) splices the two lines: the next line's
//     indentation is kept, so "option a \" followed by an indented value is
//     an empty word plus an extra argument, an error here as in libuci. A
//     backslash at the very end of the input is an error (libuci drops it).
//   - '#' outside quotes starts a comment up to the end of the physical line,
//     also in the middle of a word ("a#b" is the word "a").
//   - Space, tab, CR and LF separate words, so CRLF files parse. Other control
//     bytes (NUL included) are rejected anywhere: libuci's file reader would
//     truncate at NUL and `uci set` refuses control characters in values.
//   - Option and section names are [A-Za-z0-9_]; package names also allow '-';
//     section types are any printable non-space ASCII, as libuci's
//     uci_validate_type (so "bridge-vlan" and "wifi-iface" are valid).
//
// # Semantics for repeated names, as libuci applies them while loading
//
//   - "option x v" again in a section replaces the value; the option keeps its
//     position and its Line becomes the line of the last assignment.
//   - "list x v" lines accumulate into one Option with IsList; the Line is that
//     of the first one. A list after an option of the same name converts it to
//     a list whose first element is the option's value (uci_add_list); an
//     option after a list replaces the whole list with the single value (uci_set).
//   - An option given an explicitly empty value (a pair of quotes) is deleted,
//     because libuci's uci_set deletes on an empty value; a missing value is a
//     syntax error. A list line with an empty value adds an empty element, as
//     in libuci.
//   - A named section that appears again is merged into the first one: it keeps
//     its position, type and Line, and later options apply on top. Reopening it
//     with a different type is an error (libuci's strict mode).
//   - A config line with an empty quoted name is an anonymous section.
//   - "package NAME" may appear once, before the first section (libuci ignores
//     it when loading /etc/config files and switches packages on import; we
//     model neither).
package uci

import (
	"fmt"
	"os"
)

// File is one parsed UCI file.
type File struct {
	Name     string // file name used in errors, e.g. "/etc/config/voipgw"
	Package  string // value of a "package" line, if any
	Sections []*Section
}

// Section is one "config TYPE ['NAME']" block.
type Section struct {
	Type      string
	Name      string // empty for anonymous sections
	Anonymous bool
	Index     int // position among all sections of the file, 0-based
	TypeIndex int // position among the sections of the same Type, 0-based (the N of @TYPE[N])
	Line      int // 1-based line of the (first) "config" keyword
	Options   []*Option
}

// Option is an "option NAME VALUE" line or the collected "list NAME VALUE" lines of one name.
type Option struct {
	Name   string
	Values []string // exactly one value for an option, one or more for a list
	IsList bool
	Line   int // line of the last "option" assignment, or of the line that started the list
}

// SyntaxError reports input that libuci would reject (or that we reject on
// purpose, see the package documentation).
type SyntaxError struct {
	File string
	Line int // 1-based
	Msg  string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// Get returns the option called name.
func (s *Section) Get(name string) (*Option, bool) {
	for _, o := range s.Options {
		if o.Name == name {
			return o, true
		}
	}
	return nil, false
}

// Label names the section the way `uci show` does: its name, or @TYPE[N] for
// an anonymous section, N counting all sections of that type (named ones too).
func (s *Section) Label() string {
	if s.Anonymous {
		return fmt.Sprintf("@%s[%d]", s.Type, s.TypeIndex)
	}
	return s.Name
}

// SectionsOfType returns the sections of type t in file order.
func (f *File) SectionsOfType(t string) []*Section {
	var out []*Section
	for _, s := range f.Sections {
		if s.Type == t {
			out = append(out, s)
		}
	}
	return out
}

// ParseFile reads and parses the file at path; errors name the path.
func ParseFile(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	return Parse(path, fh)
}
