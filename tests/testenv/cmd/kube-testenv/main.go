// Command kube-testenv runs a throw-away Kubernetes control plane for tests:
// an in-process etcd and an in-process kube-apiserver (RBAC enforced,
// TokenRequest enabled), both on 127.0.0.1. It needs neither a kubelet nor a
// controller-manager.
//
// Once /readyz answers 200 (and the default, kube-system and kube-public
// namespaces exist) it prints exactly one line to stdout:
//
//	READY <absolute path of the admin kubeconfig>
//
// Nothing else is ever written to stdout; logs go to stderr. It shuts down on
// SIGTERM or SIGINT, or (with --watch-stdin) when stdin reaches EOF, and then
// removes its temporary directory.
//
// Layout of the working directory:
//
//	kubeconfig          admin kubeconfig, context "credshift-testenv"
//	pki/ca.crt          CA of the apiserver's serving certificate
//	pki/admin.{crt,key} admin client cert (CN=credshift-admin, O=system:masters)
//	pki/...             other keys and certificates
//	etcd/               etcd data
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

const (
	// shutdownTimeout bounds the graceful stop of apiserver and etcd; past
	// it the directory is removed and the process exits anyway.
	shutdownTimeout = 5 * time.Second
	// readyTimeout bounds the wait for the apiserver to become ready.
	readyTimeout = 90 * time.Second
)

type config struct {
	dir        string
	keepDir    bool
	port       int
	watchStdin bool
	verbose    bool
	extraArgs  []string
}

func main() {
	os.Exit(run())
}

func usage() {
	fmt.Fprintf(os.Stderr, `Usage: kube-testenv [flags] [-- extra kube-apiserver flags]

Starts an in-process etcd and kube-apiserver on 127.0.0.1 and prints
"READY <kubeconfig>" on stdout when the apiserver is ready. Stops on
SIGTERM/SIGINT (or stdin EOF with --watch-stdin) and removes its directory.

Flags:
`)
	flag.PrintDefaults()
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "kube-testenv: "+format+"\n", args...)
}

// readyOut is the real stdout, reserved for the READY line; see protectStdout.
var readyOut = os.Stdout

// protectStdout keeps a private copy of stdout for the READY line and points
// file descriptor 1 at stderr, so that nothing else (no library, no stray
// print) can ever write to stdout.
func protectStdout() error {
	fd, err := unix.Dup(int(os.Stdout.Fd()))
	if err != nil {
		return err
	}
	unix.CloseOnExec(fd)
	if err := unix.Dup2(int(os.Stderr.Fd()), int(os.Stdout.Fd())); err != nil {
		_ = unix.Close(fd)
		return err
	}
	readyOut = os.NewFile(uintptr(fd), "/dev/stdout")
	return nil
}

func run() int {
	defer klog.Flush()

	var cfg config
	flag.StringVar(&cfg.dir, "dir", "", "working directory for PKI, kubeconfig and etcd data, kept on exit (default: a fresh temp dir, removed on exit)")
	flag.IntVar(&cfg.port, "port", 0, "apiserver secure port on 127.0.0.1 (default: a free port)")
	flag.BoolVar(&cfg.watchStdin, "watch-stdin", false, "shut down when stdin reaches EOF, so the server dies with the parent holding the pipe")
	flag.BoolVar(&cfg.verbose, "v", false, "verbose: log etcd and kube-apiserver info messages to stderr")
	flag.Usage = usage
	flag.Parse()
	cfg.extraArgs = flag.Args()
	if cfg.port < 0 || cfg.port > 65535 {
		logf("invalid --port %d", cfg.port)
		return 2
	}

	if err := protectStdout(); err != nil {
		logf("redirecting stdout: %v", err)
		return 1
	}

	// Shutdown triggers: signals and, optionally, stdin EOF.
	stopCh := make(chan string, 4)
	sigCh := make(chan os.Signal, 2)
	signal.Notify(sigCh, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		for s := range sigCh {
			stopCh <- s.String()
		}
	}()
	// If the parent died and took the read end of our stderr with it, log
	// writes must fail with EPIPE instead of killing us before cleanup.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	if cfg.watchStdin {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			stopCh <- "stdin EOF"
		}()
	}

	// Working directory.
	if cfg.dir != "" {
		cfg.keepDir = true
		if err := os.MkdirAll(cfg.dir, 0o700); err != nil {
			logf("%v", err)
			return 1
		}
	} else {
		d, err := os.MkdirTemp("", "kube-testenv-")
		if err != nil {
			logf("%v", err)
			return 1
		}
		cfg.dir = d
	}
	var cleanupOnce sync.Once
	cleanup := func() {
		cleanupOnce.Do(func() {
			if cfg.keepDir {
				return
			}
			// etcd may still be writing if it could not be stopped.
			var err error
			for range 5 {
				if err = os.RemoveAll(cfg.dir); err == nil {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
			logf("removing %s: %v", cfg.dir, err)
		})
	}
	defer cleanup()

	// Quiet mode holds back logs until ready; see logs.go.
	gate := &logGate{out: os.Stderr}
	var quietOut io.Writer = gate
	etcdLogOut := quietOut
	if cfg.verbose {
		gate.release(false)
		etcdLogOut = os.Stderr
	}

	// kube-apiserver exits through klog on fatal errors (for example when a
	// post-start hook fails): clean up then too. If a shutdown was requested
	// the error is a consequence of it: exit 0 without showing held-back logs.
	var stopRequested atomic.Bool
	klog.OsExit = func(code int) {
		if stopRequested.Load() {
			code = 0
		} else {
			gate.release(true)
		}
		cleanup()
		os.Exit(code)
	}
	abs, err := filepath.Abs(cfg.dir)
	if err != nil {
		logf("%v", err)
		return 1
	}
	cfg.dir = abs

	startupFailed := func(format string, args ...any) int {
		gate.release(true)
		logf(format, args...)
		return 1
	}

	start := time.Now()
	pki, err := writePKI(filepath.Join(cfg.dir, "pki"))
	if err != nil {
		return startupFailed("generating certificates: %v", err)
	}

	// The apiserver listener is created here so that a free port is
	// reserved without races, and handed to kube-apiserver.
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.port)))
	if err != nil {
		return startupFailed("listening on 127.0.0.1:%d: %v", cfg.port, err)
	}
	apiPort := ln.Addr().(*net.TCPAddr).Port
	server := fmt.Sprintf("https://127.0.0.1:%d", apiPort)

	kubeconfigPath := filepath.Join(cfg.dir, "kubeconfig")
	if err := writeKubeconfig(kubeconfigPath, server, pki); err != nil {
		_ = ln.Close()
		return startupFailed("writing kubeconfig: %v", err)
	}

	// etcd starts from scratch, also in a reused --dir.
	etcdDir := filepath.Join(cfg.dir, "etcd")
	if err := os.RemoveAll(etcdDir); err != nil {
		_ = ln.Close()
		return startupFailed("%v", err)
	}
	etcd, err := startEtcd(etcdDir, etcdLogOut, cfg.verbose)
	if err != nil {
		_ = ln.Close()
		return startupFailed("starting etcd: %v", err)
	}
	if cfg.verbose {
		logf("etcd ready at %s after %v", etcd.clientURL, time.Since(start).Round(time.Millisecond))
	}

	// From here on, failures of etcd or kube-apiserver arrive on errCh.
	errCh := make(chan error, 2)
	go func() {
		if err, ok := <-etcd.e.Err(); ok && err != nil {
			select {
			case errCh <- fmt.Errorf("etcd: %w", err):
			default:
			}
		}
	}()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	apiDone := make(chan struct{})
	apiArgs := apiserverArgs(cfg, pki, etcd.clientURL, apiPort)
	if err := startAPIServer(ctx, apiArgs, ln, cfg.verbose, quietOut, apiDone, errCh); err != nil {
		_ = ln.Close()
		etcd.stop()
		return startupFailed("starting kube-apiserver: %v", err)
	}
	stopAll := func() {
		cancel()
		<-apiDone
		etcd.stop()
	}

	readyCtx, readyCancel := context.WithTimeout(ctx, readyTimeout)
	defer readyCancel()
	readyErr := make(chan error, 1)
	go func() { readyErr <- waitReady(readyCtx, server, pki) }()
	select {
	case err := <-readyErr:
		if err != nil {
			gate.release(true)
			logf("kube-apiserver did not become ready: %v", err)
			return shutdown(stopAll, cleanup, 1)
		}
	case err := <-errCh:
		gate.release(true)
		logf("%v", err)
		return shutdown(stopAll, cleanup, 1)
	case why := <-stopCh:
		// Nothing of value exists yet, and cancelling a starting apiserver
		// only makes it log spurious errors (or exit through klog.Fatal):
		// just remove the directory and exit.
		stopRequested.Store(true)
		if cfg.verbose {
			logf("%s before ready, exiting", why)
		}
		cleanup()
		return 0
	}
	readyCancel()
	gate.release(false)
	if cfg.verbose {
		logf("ready after %v at %s", time.Since(start).Round(time.Millisecond), server)
	}

	if _, err := fmt.Fprintf(readyOut, "READY %s\n", kubeconfigPath); err != nil {
		logf("writing to stdout: %v", err)
		return shutdown(stopAll, cleanup, 1)
	}
	_ = readyOut.Sync()

	exitCode := 0
	select {
	case why := <-stopCh:
		stopRequested.Store(true)
		if cfg.verbose {
			logf("%s, shutting down", why)
		}
	case err := <-errCh:
		logf("%v", err)
		exitCode = 1
	}

	// A second trigger during the graceful stop exits at once.
	go func() {
		why := <-stopCh
		logf("%s during shutdown, exiting now", why)
		cleanup()
		klog.Flush()
		os.Exit(exitCode)
	}()
	return shutdown(stopAll, cleanup, exitCode)
}

// shutdown stops everything, waiting at most shutdownTimeout, then cleans up
// and returns code.
func shutdown(stopAll, cleanup func(), code int) int {
	done := make(chan struct{})
	go func() {
		stopAll()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(shutdownTimeout):
		logf("graceful shutdown took longer than %v, exiting anyway", shutdownTimeout)
	}
	cleanup()
	return code
}

// freePort returns a currently free TCP port on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
