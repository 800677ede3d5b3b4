package uci

import (
	"bytes"
	"fmt"
	"io"
	"strings"
)

// token is one argument of a command after quote removal.
type token struct {
	text string
	line int // line where the token starts
	// plain is true for a bare word without quotes or backslashes. Keywords
	// must be plain because libuci splits them off with strtok, before any
	// quote processing ('option' is an invalid command there).
	plain bool
}

// scanner splits the input into commands. It is iterative on purpose: the
// input is untrusted and must not be able to drive recursion depth.
type scanner struct {
	file string
	src  []byte
	pos  int
	line int
}

func (s *scanner) errorf(line int, format string, args ...any) error {
	return &SyntaxError{File: s.file, Line: line, Msg: fmt.Sprintf(format, args...)}
}

// command returns the tokens of the next non-empty command, or none at EOF.
func (s *scanner) command() ([]token, error) {
	var toks []token
	for s.pos < len(s.src) {
		switch s.src[s.pos] {
		case ' ', '\t', '\r':
			s.pos++
		case '\n', ';':
			if s.src[s.pos] == '\n' {
				s.line++
			}
			s.pos++
			if len(toks) > 0 {
				return toks, nil
			}
		case '#':
			// The newline is left for the case above: it ends the command.
			for s.pos < len(s.src) && s.src[s.pos] != '\n' {
				s.pos++
			}
		default:
			t, err := s.word()
			if err != nil {
				return nil, err
			}
			toks = append(toks, t)
		}
	}
	return toks, nil
}

// word reads one argument: adjacent bare, quoted and escaped pieces concatenate.
func (s *scanner) word() (token, error) {
	t := token{line: s.line, plain: true}
	var b []byte
	for s.pos < len(s.src) {
		switch c := s.src[s.pos]; c {
		case ' ', '\t', '\r', '\n', ';', '#':
			t.text = string(b)
			return t, nil
		case '\'':
			// No escapes at all inside single quotes, as in libuci and sh.
			t.plain = false
			n := bytes.IndexByte(s.src[s.pos+1:], '\'')
			if n < 0 {
				return t, s.errorf(s.line, "unterminated ' quote")
			}
			q := s.src[s.pos+1 : s.pos+1+n]
			s.line += bytes.Count(q, []byte{'\n'})
			b = append(b, q...)
			s.pos += n + 2
		case '"':
			t.plain = false
			open := s.line
			s.pos++
			for {
				if s.pos >= len(s.src) {
					return t, s.errorf(open, "unterminated \" quote")
				}
				c := s.src[s.pos]
				if c == '"' {
					s.pos++
					break
				}
				if c == '\\' {
					if !s.escape(&b) {
						return t, s.errorf(open, "unterminated \" quote")
					}
					continue
				}
				if c == '\n' {
					s.line++
				}
				b = append(b, c)
				s.pos++
			}
		case '\\':
			t.plain = false
			if !s.escape(&b) {
				return t, s.errorf(s.line, "backslash at end of file")
			}
		default:
			b = append(b, c)
			s.pos++
		}
	}
	t.text = string(b)
	return t, nil
}

// escape handles the backslash at s.pos like libuci's parse_backslash: a
// following newline (or CR LF) is a line continuation and vanishes, any other
// byte is taken literally. It reports false if the input ends after the backslash.
func (s *scanner) escape(b *[]byte) bool {
	s.pos++
	rest := s.src[s.pos:]
	switch {
	case len(rest) == 0:
		return false
	case rest[0] == '\n':
		s.pos++
		s.line++
	case len(rest) >= 2 && rest[0] == '\r' && rest[1] == '\n':
		s.pos += 2
		s.line++
	default:
		*b = append(*b, rest[0])
		s.pos++
	}
	return true
}

// parser applies commands to the File with libuci's merge semantics.
type parser struct {
	sc    scanner
	f     *File
	cur   *Section                        // section that option/list lines go to
	named map[string]*Section             // named sections, for merging
	types map[string]int                  // sections seen per type, for TypeIndex
	opts  map[*Section]map[string]*Option // keeps repeated lookups O(1) on big inputs
}

// Parse parses UCI text; name is used in error messages and File.Name.
// Errors in the input are *SyntaxError.
func Parse(name string, r io.Reader) (*File, error) {
	src, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	p := &parser{
		sc:    scanner{file: name, src: src, line: 1},
		f:     &File{Name: name},
		named: map[string]*Section{},
		types: map[string]int{},
		opts:  map[*Section]map[string]*Option{},
	}
	// Checked up front so no other code has to think about control bytes.
	for i, c := range src {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
			line := 1 + bytes.Count(src[:i], []byte{'\n'})
			if c == 0 {
				return nil, p.sc.errorf(line, "NUL byte")
			}
			return nil, p.sc.errorf(line, "control character 0x%02x", c)
		}
	}
	for {
		toks, err := p.sc.command()
		if err != nil {
			return nil, err
		}
		if len(toks) == 0 {
			return p.f, nil
		}
		if err := p.command(toks[0], toks[1:]); err != nil {
			return nil, err
		}
	}
}

// argNames names the arguments of each keyword, for error messages.
var argNames = map[string][]string{
	"package": {"package name"},
	"config":  {"section type", "section name"},
	"option":  {"option name", "option value"},
	"list":    {"list name", "list value"},
}

// shortKeywords are the one-letter forms libuci's uci_parse_line accepts.
var shortKeywords = map[string]string{"p": "package", "c": "config", "o": "option", "l": "list"}

func (p *parser) command(kw token, args []token) error {
	keyword := kw.text
	if long, ok := shortKeywords[keyword]; ok {
		keyword = long
	}
	names, ok := argNames[keyword]
	if !kw.plain || !ok {
		return p.sc.errorf(kw.line, "unknown keyword %q (want package, config, option or list)", kw.text)
	}
	required := len(names)
	if keyword == "config" {
		required = 1 // the section name is optional
	}
	if len(args) < required {
		return p.sc.errorf(kw.line, "%s: missing %s", keyword, names[len(args)])
	}
	if len(args) > len(names) {
		extra, what := args[len(names)], "empty argument"
		if extra.text != "" {
			what = fmt.Sprintf("%q", extra.text)
		}
		return p.sc.errorf(extra.line, "%s: unexpected %s after %s", keyword, what, names[len(names)-1])
	}

	switch keyword {
	case "package":
		if p.f.Package != "" || len(p.f.Sections) > 0 {
			return p.sc.errorf(kw.line, "package must appear once, before the first config")
		}
		if !valid(args[0].text, "-") {
			return p.sc.errorf(args[0].line, "invalid package name %q (allowed: A-Z a-z 0-9 _ -)", args[0].text)
		}
		p.f.Package = args[0].text
	case "config":
		return p.config(kw, args)
	default:
		return p.option(keyword, kw.line, args[0], args[1])
	}
	return nil
}

func (p *parser) config(kw token, args []token) error {
	typ := args[0].text
	if !validType(typ) {
		return p.sc.errorf(args[0].line, "invalid section type %q (allowed: printable ASCII without spaces)", typ)
	}
	name := ""
	if len(args) == 2 {
		name = args[1].text
		if name != "" && !valid(name, "") {
			return p.sc.errorf(args[1].line, "invalid section name %q (allowed: A-Z a-z 0-9 _)", name)
		}
	}
	if s := p.named[name]; s != nil {
		if s.Type != typ {
			return p.sc.errorf(kw.line, "section %q redefined with type %q (it is %q since line %d)", name, typ, s.Type, s.Line)
		}
		p.cur = s
		return nil
	}
	s := &Section{
		Type:      typ,
		Name:      name,
		Anonymous: name == "",
		Index:     len(p.f.Sections),
		TypeIndex: p.types[typ],
		Line:      kw.line,
	}
	p.types[typ]++
	p.f.Sections = append(p.f.Sections, s)
	p.opts[s] = map[string]*Option{}
	if name != "" {
		p.named[name] = s
	}
	p.cur = s
	return nil
}

func (p *parser) option(keyword string, line int, name, value token) error {
	if p.cur == nil {
		return p.sc.errorf(line, "%s %q before the first config section", keyword, name.text)
	}
	if !valid(name.text, "") {
		return p.sc.errorf(name.line, "invalid %s name %q (allowed: A-Z a-z 0-9 _)", keyword, name.text)
	}
	s, v, list := p.cur, value.text, keyword == "list"
	o := p.opts[s][name.text]
	switch {
	case !list && v == "":
		if o != nil {
			delete(p.opts[s], o.Name)
			for i := range s.Options {
				if s.Options[i] == o {
					s.Options = append(s.Options[:i], s.Options[i+1:]...)
					break
				}
			}
		}
	case o == nil:
		o = &Option{Name: name.text, Values: []string{v}, IsList: list, Line: line}
		s.Options = append(s.Options, o)
		p.opts[s][o.Name] = o
	case list:
		o.Values = append(o.Values, v)
		o.IsList = true
	default:
		o.Values, o.IsList, o.Line = []string{v}, false, line
	}
	return nil
}

// valid reports whether s is a non-empty [A-Za-z0-9_] name, also allowing the bytes in extra.
func valid(s, extra string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' ||
			strings.IndexByte(extra, c) >= 0
		if !ok {
			return false
		}
	}
	return s != ""
}

// validType is libuci's uci_validate_type: printable ASCII without space.
func validType(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 33 || s[i] > 126 {
			return false
		}
	}
	return s != ""
}
