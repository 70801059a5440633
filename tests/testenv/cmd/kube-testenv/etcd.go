package main

import (
	"fmt"
	"io"
	"net/url"
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
}

// stop closes etcd. Unless verbose, the errors etcd logs about its own
// listeners closing are suppressed.
func (s *etcdServer) stop() {
	if !s.verbose {
		s.logLevel.SetLevel(zapcore.FatalLevel)
	}
	s.e.Close()
}

// startEtcd starts a single-member etcd on loopback with its data in dir and
// waits until it serves. It logs (JSON, as etcd does) to logOut: errors only,
// or everything from info up when verbose.
func startEtcd(dir string, logOut io.Writer, verbose bool) (*etcdServer, error) {
	clientPort, err := freePort()
	if err != nil {
		return nil, err
	}
	peerPort, err := freePort()
	if err != nil {
		return nil, err
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
		zap.AddCaller(), zap.ErrorOutput(sink),
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
