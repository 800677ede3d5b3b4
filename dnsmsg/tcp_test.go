package dnsmsg

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestTCPFraming(t *testing.T) {
	q, err := NewQuery(0x1234, "sbc.example.", TypeA, true)
	if err != nil {
		t.Fatal(err)
	}
	framed, err := AppendTCP([]byte("x"), q)
	if err != nil {
		t.Fatal(err)
	}
	if len(framed) != 3+len(q) || framed[1] != byte(len(q)>>8) || framed[2] != byte(len(q)) {
		t.Fatalf("framed % x", framed)
	}
	got, err := ReadTCP(bytes.NewReader(framed[1:]))
	if err != nil || !bytes.Equal(got, q) {
		t.Fatalf("ReadTCP = % x, %v; want % x", got, err, q)
	}
	if _, err := ReadTCP(bytes.NewReader([]byte{0, 5, 1, 2, 3, 4, 5})); !errors.Is(err, ErrFormat) {
		t.Errorf("a 5-byte message: %v, want ErrFormat", err)
	}
	if _, err := ReadTCP(bytes.NewReader(framed[1 : len(framed)-1])); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("a cut message: %v, want unexpected EOF", err)
	}
	if _, err := AppendTCP(nil, make([]byte, MaxMsgSize+1)); err == nil {
		t.Error("a message over 65535 bytes was framed")
	}
}
