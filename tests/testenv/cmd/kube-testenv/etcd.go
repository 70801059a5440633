package main

import (
	"fmt"
	"io"
	"net/url"
	"sync"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/logutil"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

type etcdServer struct {
	e         *embed.Etcd
	clientURL string
	logLevel  zap.AtomicLevel
	verbose   bool
	stopOnce  sync.Once
}

// stop closes etcd gracefully (its data is consistent afterwards). Unless
// verbose, the errors etcd logs about its own listeners closing are
// suppressed. It may be called more than once and concurrently: later calls
// wait for the first to finish.
func (s *etcdServer) stop() {
	s.stopOnce.Do(func() {
		if !s.verbose {
			s.logLevel.SetLevel(zapcore.FatalLevel)
		}
		s.e.Close()
	})
}

// etcdPorts are the loopback ports of etcd's client and peer listeners; 0
// means a free port.
type etcdPorts struct {
	Client int `json:"client"`
	Peer   int `json:"peer"`
}

// fatalHook runs instead of zap's os.Exit when etcd logs a fatal error (for
// example an unrepairable WAL); it must not return.
type fatalHook func()

func (h fatalHook) OnWrite(*zapcore.CheckedEntry, []zapcore.Field) { h() }

// startEtcd starts a single-member etcd on loopback with its data in dir and
// waits until it serves. If dir already holds etcd data, etcd restarts from
// it. It logs (JSON, as etcd does) to logOut: errors only, or everything from
// info up when verbose. onFatal is called (after the entry is logged) when
// etcd logs a fatal error; it must exit the process.
func startEtcd(dir string, ports etcdPorts, logOut io.Writer, verbose bool, onFatal func()) (*etcdServer, error) {
	clientPort, peerPort := ports.Client, ports.Peer
	var err error
	if clientPort == 0 {
		if clientPort, err = freePort(); err != nil {
			return nil, err
		}
	}
	if peerPort == 0 {
		if peerPort, err = freePort(); err != nil {
			return nil, err
		}
	}
	clientURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", clientPort)}
	peerURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", peerPort)}

	level := zap.NewAtomicLevelAt(zapcore.ErrorLevel)
	if verbose {
		level.SetLevel(zapcore.InfoLevel)
	}
	sink := zapcore.AddSync(logOut)
	lg := zap.New(
		zapcore.NewCore(zapcore.NewJSONEncoder(logutil.DefaultZapLoggerConfig.EncoderConfig), sink, level),
		zap.AddCaller(), zap.ErrorOutput(sink), zap.WithFatalHook(fatalHook(onFatal)),
	)

	cfg := embed.NewConfig()
	cfg.Name = "kube-testenv"
	cfg.Dir = dir
	cfg.UnsafeNoFsync = true
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.EnableGRPCGateway = false
	// A single member elects itself; short ticks make that take ~0.1s
	// instead of ~1s.
	cfg.TickMs = 10
	cfg.ElectionMs = 100
	cfg.Logger = "zap"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg)

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, err
	case <-time.After(30 * time.Second):
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("etcd did not become ready within 30s")
	}
	return &etcdServer{e: e, clientURL: clientURL.String(), logLevel: level, verbose: verbose}, nil
}
