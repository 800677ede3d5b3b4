// Package uci parses OpenWrt UCI configuration files (the format of /etc/config/*).
//
// It is a small strict parser: it accepts what OpenWrt's libuci accepts for the
// "config", "option" and "list" keywords (plus "package"), with single and double
// quotes, backslash escapes, comments and anonymous or named sections, and
// rejects everything else with an error that names the file and line.
//
// No maintained Go UCI library is served by the module proxy we build with, so the
// grammar is implemented here (see the README's "Why hand-written" notes).
package uci

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
	Line      int // 1-based line of the "config" keyword
	Options   []*Option
}

// Option is an "option NAME VALUE" line or the collected "list NAME VALUE" lines of one name.
type Option struct {
	Name   string
	Values []string // exactly one value for an option, one or more for a list
	IsList bool
	Line   int // line of the first occurrence
}
