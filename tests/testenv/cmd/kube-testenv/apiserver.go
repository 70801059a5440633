package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"

	"github.com/spf13/pflag"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apiserver/pkg/server/flagz"
	"k8s.io/client-go/rest"
	basecompatibility "k8s.io/component-base/compatibility"
	"k8s.io/component-base/featuregate"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
	"k8s.io/kubernetes/cmd/kube-apiserver/app/options"
)

const (
	serviceCIDR = "10.0.0.0/24"
	serviceIP   = "10.0.0.1" // first address of serviceCIDR: the kubernetes Service
	saIssuer    = "https://kubernetes.default.svc"
)

// apiserverArgs returns the kube-apiserver command line. Extra arguments
// given after "--" on kube-testenv's command line come last and so override.
func apiserverArgs(cfg config, p *pkiFiles, etcdURL string, port int) []string {
	args := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + p.dir,
		"--tls-cert-file=" + p.servingCert,
		"--tls-private-key-file=" + p.servingKey,
		"--client-ca-file=" + p.clientCACert,
		"--authorization-mode=Node,RBAC",
		"--service-account-issuer=" + saIssuer,
		"--service-account-key-file=" + p.saPub,
		"--service-account-signing-key-file=" + p.saKey,
		"--api-audiences=" + saIssuer,
		"--service-cluster-ip-range=" + serviceCIDR,
		// A loopback address cannot be published in Endpoints.
		"--endpoint-reconciler-type=none",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
	}
	return append(args, cfg.extraArgs...)
}

// startAPIServer configures kube-apiserver from args exactly as its own
// command line would, serving on ln, and runs it in the background until ctx
// is cancelled. done is closed when it has stopped; a failure is sent on
// errCh. Logs go to stderr when verbose (or when -v is among args), else
// only errors go to quietOut. This replicates app.NewAPIServerCommand's RunE
// without its process-wide signal handler, which would conflict with ours.
func startAPIServer(ctx context.Context, args []string, ln net.Listener, verbose bool, quietOut io.Writer, done chan<- struct{}, errCh chan<- error) error {
	s := options.NewServerRunOptions()
	fs := pflag.NewFlagSet("kube-apiserver", pflag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	namedFlagSets := s.Flags()
	for _, f := range namedFlagSets.FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected kube-apiserver arguments: %q", fs.Args())
	}
	s.Flagz = flagz.NamedFlagSetsReader{FlagSets: namedFlagSets}
	s.SecureServing.Listener = ln
	s.SecureServing.BindPort = ln.Addr().(*net.TCPAddr).Port

	registry := s.GenericServerRunOptions.ComponentGlobalsRegistry
	if err := registry.Set(); err != nil {
		return err
	}
	// kube-apiserver loopback clients should not log self-issued warnings.
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	featureGate := registry.FeatureGateFor(basecompatibility.DefaultKubeComponent)

	// Logs never go to stdout (InfoStream defaults to it).
	var logOut io.Writer = os.Stderr
	if !verbose && !fs.Changed("v") {
		logOut = &severityFilter{out: quietOut, allowed: []byte("EF"), ignore: benignErrors}
	}
	if err := logsapi.ValidateAndApplyWithOptions(s.Logs, &logsapi.LoggingOptions{ErrorStream: logOut, InfoStream: logOut}, featureGate); err != nil {
		return err
	}

	completed, err := s.Complete(ctx)
	if err != nil {
		return err
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return utilerrors.NewAggregate(errs)
	}
	featureGate.(featuregate.MutableFeatureGate).AddMetrics()
	registry.AddMetrics()

	go func() {
		defer close(done)
		err := app.Run(ctx, completed)
		if err == nil && ctx.Err() == nil {
			err = fmt.Errorf("stopped unexpectedly")
		}
		if err != nil && ctx.Err() == nil {
			select {
			case errCh <- fmt.Errorf("kube-apiserver: %w", err):
			default:
			}
		}
	}()
	return nil
}
