package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

var errNotReady = errors.New("not ready")

// systemNamespaces must exist before the environment is reported ready.
var systemNamespaces = []string{"default", "kube-system", "kube-public"}

// waitReady polls /readyz with the admin credentials, validating the serving
// certificate against the generated CA, until it answers 200 and the system
// namespaces exist.
func waitReady(ctx context.Context, server string, p *pkiFiles) error {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(p.caCertPEM) {
		return fmt.Errorf("invalid CA PEM")
	}
	admin, err := tls.X509KeyPair(p.adminCertPEM, p.adminKeyPEM)
	if err != nil {
		return err
	}
	client := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{
				RootCAs:      pool,
				Certificates: []tls.Certificate{admin},
				MinVersion:   tls.VersionTLS12,
			},
		},
	}
	defer client.CloseIdleConnections()

	paths := []string{"/readyz"}
	for _, ns := range systemNamespaces {
		paths = append(paths, "/api/v1/namespaces/"+ns)
	}
	lastErr := errNotReady
	for _, path := range paths {
		for {
			err := get(ctx, client, server+path)
			if err == nil {
				break
			}
			lastErr = err
			select {
			case <-ctx.Done():
				return fmt.Errorf("%w (last: %v)", ctx.Err(), lastErr)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

func get(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	return nil
}
