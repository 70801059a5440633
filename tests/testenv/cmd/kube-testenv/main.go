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
// With --dir DIR --port N --keep-state it is restartable: a later run with the
// same flags reuses the PKI, kubeconfig, etcd data and etcd ports in DIR, so
// clients holding the old kubeconfig or ServiceAccount tokens reconnect to the
// same objects.
//
// Layout of the working directory:
//
//	kubeconfig          admin kubeconfig, context "credshift-testenv"
//	pki/ca.crt          CA of the apiserver's serving certificate
//	pki/admin.{crt,key} admin client cert (CN=credshift-admin, O=system:masters)
//	pki/...             other keys and certificates
//	etcd/               etcd data
//	etcd-ports.json     etcd client and peer ports (--keep-state only)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
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
	keepState  bool
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
With --dir DIR --port N --keep-state, a restart reuses the PKI, kubeconfig
and etcd data in DIR.

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
	flag.BoolVar(&cfg.keepState, "keep-state", false, "with --dir and --port: reuse the PKI, kubeconfig and etcd data (and etcd ports) of an earlier run in --dir instead of regenerating them, so that the server can be restarted")
	flag.BoolVar(&cfg.watchStdin, "watch-stdin", false, "shut down when stdin reaches EOF, so the server dies with the parent holding the pipe")
	flag.BoolVar(&cfg.verbose, "v", false, "verbose: log etcd and kube-apiserver info messages to stderr")
	flag.Usage = usage
	flag.Parse()
	cfg.extraArgs = flag.Args()
	if cfg.port < 0 || cfg.port > 65535 {
		logf("invalid --port %d", cfg.port)
		return 2
	}
	if cfg.keepState && (cfg.dir == "" || cfg.port == 0) {
		logf("--keep-state needs --dir DIR and --port N (N > 0): the state is kept in DIR, and the kubeconfig's server URL must not change across restarts")
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
	// post-start hook fails), etcd through zap: clean up then too. If a
	// shutdown was requested the error is a consequence of it: exit 0 without
	// showing held-back logs. With --keep-state, etcd is stopped gracefully
	// first (unless etcd itself failed).
	var stopRequested atomic.Bool
	var runningEtcd atomic.Pointer[etcdServer]
	exitNow := func(code int, stopEtcd bool) {
		if stopRequested.Load() {
			code = 0
		} else {
			gate.release(true)
		}
		if e := runningEtcd.Load(); stopEtcd && cfg.keepState && e != nil {
			runWithTimeout(e.stop, shutdownTimeout)
		}
		cleanup()
		os.Exit(code)
	}
	klog.OsExit = func(code int) { exitNow(code, true) }
	etcdFatal := func() {
		if !stopRequested.Load() {
			gate.release(true)
			if cfg.keepState {
				logf("etcd failed (see above); if its data in %s is damaged, delete %s to start over", filepath.Join(cfg.dir, "etcd"), cfg.dir)
			} else {
				logf("etcd failed (see above)")
			}
		}
		exitNow(1, false)
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
	var pki *pkiFiles
	if cfg.keepState {
		var reused bool
		pki, reused, err = ensurePKI(filepath.Join(cfg.dir, "pki"))
		if err != nil {
			return startupFailed("--keep-state: %v (delete %s to start over, or run without --keep-state)", err, cfg.dir)
		}
		if cfg.verbose && reused {
			logf("reusing the PKI in %s", pki.dir)
		}
	} else {
		pki, err = writePKI(filepath.Join(cfg.dir, "pki"))
		if err != nil {
			return startupFailed("generating certificates: %v", err)
		}
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
	if cfg.keepState {
		wrote, err := ensureKubeconfig(kubeconfigPath, server, pki)
		if err != nil {
			_ = ln.Close()
			return startupFailed("writing kubeconfig: %v", err)
		}
		if cfg.verbose && !wrote {
			logf("reusing %s", kubeconfigPath)
		}
	} else if err := writeKubeconfig(kubeconfigPath, server, pki); err != nil {
		_ = ln.Close()
		return startupFailed("writing kubeconfig: %v", err)
	}

	// Without --keep-state, etcd starts from scratch, also in a reused --dir.
	// With it, etcd restarts from the data (if any) on the recorded ports.
	etcdDir := filepath.Join(cfg.dir, "etcd")
	var ports etcdPorts
	if cfg.keepState {
		ports, err = keptEtcdPorts(cfg.dir, func(format string, args ...any) {
			if cfg.verbose {
				logf(format, args...)
			}
		})
		if err != nil {
			_ = ln.Close()
			return startupFailed("etcd ports: %v", err)
		}
	} else {
		err := os.RemoveAll(etcdDir)
		if err == nil {
			if err = os.Remove(filepath.Join(cfg.dir, etcdPortsFile)); errors.Is(err, fs.ErrNotExist) {
				err = nil
			}
		}
		if err != nil {
			_ = ln.Close()
			return startupFailed("%v", err)
		}
	}
	etcd, err := startEtcd(etcdDir, ports, etcdLogOut, cfg.verbose, etcdFatal)
	if err != nil {
		_ = ln.Close()
		if cfg.keepState {
			return startupFailed("starting etcd: %v (if the etcd data in %s is damaged, delete %s to start over)", err, etcdDir, cfg.dir)
		}
		return startupFailed("starting etcd: %v", err)
	}
	runningEtcd.Store(etcd)
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
		stopRequested.Store(true)
		if cfg.verbose {
			logf("%s before ready, exiting", why)
		}
		if cfg.keepState {
			// The kept etcd data must stay consistent: stop gracefully.
			return shutdown(stopAll, cleanup, 0)
		}
		// Nothing of value exists yet, and cancelling a starting apiserver
		// only makes it log spurious errors (or exit through klog.Fatal):
		// just remove the directory and exit.
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
	if !runWithTimeout(stopAll, shutdownTimeout) {
		logf("graceful shutdown took longer than %v, exiting anyway", shutdownTimeout)
	}
	cleanup()
	return code
}

// runWithTimeout runs f and waits at most timeout for it to return; it
// reports whether f returned in time.
func runWithTimeout(f func(), timeout time.Duration) bool {
	done := make(chan struct{})
	go func() {
		f()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
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
