package main

import (
	"bytes"
	"io"
	"sync"
)

// Quiet logging (the default): etcd logs only errors, kube-apiserver only
// E/F entries, and everything logged before the environment is ready is held
// back: fresh control planes log a handful of harmless start-up races at
// error level. If start-up fails, the held-back entries are written out.
// With -v, all info logs go straight to stderr.

// maxHeldBack bounds the memory used for logs held back during start-up.
const maxHeldBack = 1 << 20

// logGate holds writes back until released, then passes them through.
type logGate struct {
	mu       sync.Mutex
	out      io.Writer
	buf      bytes.Buffer
	released bool
}

func (g *logGate) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.released {
		return g.out.Write(p)
	}
	if g.buf.Len()+len(p) <= maxHeldBack {
		g.buf.Write(p)
	}
	return len(p), nil
}

// release makes further writes pass through; with flush, the held-back
// writes are written out first, otherwise they are dropped.
func (g *logGate) release(flush bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.released {
		return
	}
	if flush && g.buf.Len() > 0 {
		_, _ = g.out.Write(g.buf.Bytes())
	}
	g.buf = bytes.Buffer{}
	g.released = true
}

// benignErrors are error-level kube-apiserver messages that a fresh control
// plane logs shortly after becoming ready; they are dropped unless verbose.
var benignErrors = [][]byte{
	// The repair loop races the allocation of the kubernetes Service's IP.
	[]byte("for Service default/kubernetes is not allocated; repairing"),
}

// severityFilter passes through only the klog text-format entries whose
// first byte (I, W, E or F) is in allowed and that contain none of ignore.
// Each Write is one entry.
type severityFilter struct {
	out     io.Writer
	allowed []byte
	ignore  [][]byte
}

func (f *severityFilter) Write(p []byte) (int, error) {
	if len(p) > 0 && bytes.IndexByte(f.allowed, p[0]) < 0 {
		return len(p), nil
	}
	for _, s := range f.ignore {
		if bytes.Contains(p, s) {
			return len(p), nil
		}
	}
	if _, err := f.out.Write(p); err != nil {
		return 0, err
	}
	return len(p), nil
}
