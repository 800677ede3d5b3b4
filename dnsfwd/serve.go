package dnsfwd

// The DNS server side: UDP datagrams and TCP connections (RFC 1035 §4.2, RFC 7766)
// read and handed to handle, as miekg/dns's server did before (a TCP connection's
// queries one after the other, at most 128 per connection, 10 s to the first and
// between queries), with voipgw's own codec. Datagrams go to worker goroutines that
// wait for the next one (miekg started a goroutine per datagram; see udpWorker).

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/voipgw/voipgw/dnsmsg"
)

const (
	udpReadSize   = 4096 // a phone's query; what is longer is cut (as before)
	tcpReadTime   = 10 * time.Second
	tcpIdleTime   = 10 * time.Second
	tcpWriteTime  = 2 * time.Second
	tcpMaxQueries = 128
)

// replyWriter sends the answer to one message back where it came from.
type replyWriter struct {
	remote netip.AddrPort
	tcp    bool
	udp    *net.UDPConn
	pc     net.PacketConn // when it is not a *net.UDPConn
	from   net.Addr
	conn   net.Conn
}

func (w *replyWriter) write(b []byte) error {
	switch {
	case w.conn != nil:
		out, err := dnsmsg.AppendTCP(nil, b)
		if err != nil {
			return err
		}
		w.conn.SetWriteDeadline(time.Now().Add(tcpWriteTime))
		_, err = w.conn.Write(out)
		return err
	case w.udp != nil:
		_, err := w.udp.WriteToUDPAddrPort(b, w.remote)
		return err
	default:
		_, err := w.pc.WriteTo(b, w.from)
		return err
	}
}

var pktPool = sync.Pool{New: func() any { b := make([]byte, udpReadSize); return &b }}

// server is one Serve call's state: what shutdown must stop and wait for.
type server struct {
	stopping atomic.Bool
	handlers sync.WaitGroup
	workers  sync.WaitGroup
	work     chan udpJob   // to an idle worker (unbuffered: taken only by one that waits)
	idle     atomic.Int32  // workers waiting on work
	quit     chan struct{} // closed when Serve stops: idle workers leave
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
}

// Serve answers on the sockets until ctx ends; it closes them, and returns once
// the queries in flight are answered.
func (f *Forwarder) Serve(ctx context.Context, pcs []net.PacketConn, lns []net.Listener) error {
	s := &server{conns: map[net.Conn]struct{}{}, work: make(chan udpJob), quit: make(chan struct{})}
	errc := make(chan error, len(pcs)+len(lns))
	var loops sync.WaitGroup
	for _, pc := range pcs {
		loops.Add(1)
		go func() { defer loops.Done(); errc <- f.serveUDP(s, pc) }()
	}
	for _, ln := range lns {
		loops.Add(1)
		go func() { defer loops.Done(); errc <- f.serveTCP(s, ln) }()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		if err != nil {
			err = fmt.Errorf("dns server: %w", err)
		}
	}
	s.stopping.Store(true)
	for _, pc := range pcs {
		pc.Close()
	}
	for _, ln := range lns {
		ln.Close()
	}
	s.mu.Lock()
	for c := range s.conns {
		c.SetReadDeadline(time.Unix(1, 0)) // unblock its read; the answer in flight still goes out
	}
	s.mu.Unlock()
	loops.Wait()
	s.handlers.Wait()
	close(s.quit)
	s.workers.Wait()
	return err
}

// udpJob is one datagram for a worker.
type udpJob struct {
	w  *replyWriter
	bp *[]byte
	n  int
}

// A datagram is handled by a worker that waits for one, else by a new worker. A
// worker then waits up to workerIdle for the next, at most maxIdleWorkers of them:
// a goroutine that has handled a query has the stack a query needs, and a new one
// per datagram grew its stack (copied it) two or three times per query — a fifth
// of the handler's CPU time in the profile of a miss (BENCHMARKS.md §5).
const (
	workerIdle     = 10 * time.Second
	maxIdleWorkers = 4
)

func (f *Forwarder) udpWorker(s *server, j udpJob) {
	defer s.workers.Done()
	var t *time.Timer
	for {
		f.handle(j.w, (*j.bp)[:j.n])
		pktPool.Put(j.bp)
		s.handlers.Done()
		if s.idle.Add(1) > maxIdleWorkers {
			s.idle.Add(-1)
			return
		}
		if t == nil {
			t = time.NewTimer(workerIdle)
			defer t.Stop()
		} else {
			t.Reset(workerIdle)
		}
		select {
		case j = <-s.work:
			s.idle.Add(-1)
		case <-t.C:
			s.idle.Add(-1)
			return
		case <-s.quit:
			s.idle.Add(-1)
			return
		}
	}
}

func (f *Forwarder) serveUDP(s *server, pc net.PacketConn) error {
	uc, _ := pc.(*net.UDPConn)
	for {
		bp := pktPool.Get().(*[]byte)
		w := &replyWriter{udp: uc, pc: pc}
		var n int
		var err error
		if uc != nil {
			n, w.remote, err = uc.ReadFromUDPAddrPort(*bp)
		} else {
			n, w.from, err = pc.ReadFrom(*bp)
			w.remote = addrPort(w.from)
		}
		if err != nil {
			pktPool.Put(bp)
			if s.stopping.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// ICMP errors surface on a read of an unconnected socket on some
			// systems; a datagram lost is not a reason to stop serving.
			f.cfg.Log.Debug("dns: udp read", "err", err)
			continue
		}
		if n < dnsmsg.HeaderLen {
			pktPool.Put(bp)
			continue
		}
		s.handlers.Add(1)
		j := udpJob{w: w, bp: bp, n: n}
		select {
		case s.work <- j:
		default:
			s.workers.Add(1)
			go f.udpWorker(s, j)
		}
	}
}

func addrPort(a net.Addr) netip.AddrPort {
	switch x := a.(type) {
	case *net.UDPAddr:
		return x.AddrPort()
	case *net.TCPAddr:
		return x.AddrPort()
	}
	return netip.AddrPort{}
}

func (f *Forwarder) serveTCP(s *server, ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.stopping.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// EMFILE and the like: wait a little rather than spin or stop.
			f.cfg.Log.Debug("dns: tcp accept", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		s.mu.Lock()
		if s.stopping.Load() {
			s.mu.Unlock()
			c.Close()
			return nil
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.handlers.Add(1)
		go func() {
			defer s.handlers.Done()
			f.serveConn(s, c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// serveConn answers a TCP connection's queries one after the other.
func (f *Forwarder) serveConn(s *server, c net.Conn) {
	defer c.Close()
	w := &replyWriter{remote: addrPort(c.RemoteAddr()), tcp: true, conn: c}
	timeout := tcpReadTime
	for q := 0; q < tcpMaxQueries; q++ {
		// Under the lock Serve takes to stop: it never misses a deadline set here.
		s.mu.Lock()
		stop := s.stopping.Load()
		if !stop {
			c.SetReadDeadline(time.Now().Add(timeout))
		}
		s.mu.Unlock()
		if stop {
			return
		}
		msg, err := dnsmsg.ReadTCP(c)
		if err != nil {
			return
		}
		f.handle(w, msg)
		timeout = tcpIdleTime
	}
}
