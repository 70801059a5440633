package main

// --keep-state: reuse the PKI, kubeconfig, etcd data and etcd ports that an
// earlier run left in --dir.

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"k8s.io/client-go/util/keyutil"
)

// etcdPortsFile (in --dir) records the etcd ports chosen by the first
// --keep-state run, so that later runs listen where the data was written.
const etcdPortsFile = "etcd-ports.json"

// ensurePKI reuses the PKI in dir if there is one, and otherwise generates
// one. A reused PKI is validated (key pairs match, certificates chain to their
// CA and are currently valid, the serving cert covers 127.0.0.1); a PKI with
// some but not all files is an error. A new PKI is written to a sibling
// directory and renamed into place, so that a kill during generation never
// leaves a half-written PKI behind.
func ensurePKI(dir string) (p *pkiFiles, reused bool, err error) {
	paths := pkiPaths(dir)
	required := paths.required()
	var present, missing []string
	for _, f := range append(required, filepath.Join(dir, caKeyFile), filepath.Join(dir, clientCAKeyFile)) {
		_, err := os.Lstat(f)
		switch {
		case err == nil:
			present = append(present, filepath.Base(f))
		case errors.Is(err, fs.ErrNotExist):
			missing = append(missing, filepath.Base(f))
		default:
			return nil, false, err
		}
	}
	if len(present) > 0 {
		for _, f := range required {
			if !slices.Contains(present, filepath.Base(f)) {
				return nil, false, fmt.Errorf("incomplete PKI in %s: missing %s", dir, strings.Join(missing, ", "))
			}
		}
		p, err := loadPKI(dir)
		if err != nil {
			return nil, false, fmt.Errorf("cannot reuse the PKI in %s: %w", dir, err)
		}
		return p, true, nil
	}

	tmp := dir + ".new"
	if err := os.RemoveAll(tmp); err != nil {
		return nil, false, err
	}
	if _, err := writePKI(tmp); err != nil {
		_ = os.RemoveAll(tmp)
		return nil, false, err
	}
	// rename(2) replaces dir if it is empty.
	if err := os.Rename(tmp, dir); err != nil {
		_ = os.RemoveAll(tmp)
		return nil, false, err
	}
	p, err = loadPKI(dir)
	return p, false, err
}

// required returns the PKI files that kube-apiserver and the kubeconfig use.
func (p *pkiFiles) required() []string {
	return []string{p.caCert, p.servingCert, p.servingKey, p.clientCACert, p.adminCert, p.adminKey, p.saKey, p.saPub}
}

// loadPKI reads and validates the PKI written by writePKI into dir.
func loadPKI(dir string) (*pkiFiles, error) {
	p := pkiPaths(dir)

	caPEM, ca, err := readCert(p.caCert)
	if err != nil {
		return nil, err
	}
	if !ca.IsCA {
		return nil, fmt.Errorf("%s: not a CA certificate", p.caCert)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := readKeyPair(p.servingCert, p.servingKey, x509.VerifyOptions{
		Roots:     roots,
		DNSName:   "127.0.0.1",
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return nil, err
	}

	_, clientCA, err := readCert(p.clientCACert)
	if err != nil {
		return nil, err
	}
	clientRoots := x509.NewCertPool()
	clientRoots.AddCert(clientCA)
	admin, err := readKeyPair(p.adminCert, p.adminKey, x509.VerifyOptions{
		Roots:     clientRoots,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, err
	}

	saKeyPEM, err := os.ReadFile(p.saKey)
	if err != nil {
		return nil, err
	}
	saKey, err := keyutil.ParsePrivateKeyPEM(saKeyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.saKey, err)
	}
	signer, ok := saKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: unsupported key type %T", p.saKey, saKey)
	}
	saPubPEM, err := os.ReadFile(p.saPub)
	if err != nil {
		return nil, err
	}
	pubs, err := keyutil.ParsePublicKeysPEM(saPubPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.saPub, err)
	}
	if !containsPublicKey(pubs, signer.Public()) {
		return nil, fmt.Errorf("%s does not hold the public key of %s", p.saPub, p.saKey)
	}

	p.caCertPEM = caPEM
	p.adminCertPEM = admin.certPEM
	p.adminKeyPEM = admin.keyPEM
	return p, nil
}

// readCert reads a PEM file and parses its first certificate.
func readCert(path string) ([]byte, *x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, nil, fmt.Errorf("%s: no certificate found", path)
		}
		if block.Type == "CERTIFICATE" {
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", path, err)
			}
			return data, cert, nil
		}
	}
}

type pemKeyPair struct {
	certPEM, keyPEM []byte
}

// readKeyPair reads a certificate and its private key, checks that they
// match, and verifies the certificate with opts (which also checks that it is
// currently valid).
func readKeyPair(certPath, keyPath string, opts x509.VerifyOptions) (*pemKeyPair, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s, %s: %w", certPath, keyPath, err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("%s: %w", certPath, err)
		}
	}
	if _, err := leaf.Verify(opts); err != nil {
		return nil, fmt.Errorf("%s: %w", certPath, err)
	}
	return &pemKeyPair{certPEM: certPEM, keyPEM: keyPEM}, nil
}

func containsPublicKey(keys []any, want crypto.PublicKey) bool {
	for _, k := range keys {
		if e, ok := k.(interface{ Equal(crypto.PublicKey) bool }); ok && e.Equal(want) {
			return true
		}
	}
	return false
}

// keptEtcdPorts returns the etcd ports recorded in dir by an earlier
// --keep-state run, or picks free ones and records them. A recorded port that
// is now taken by another process is replaced by a free one (etcd finds its
// data whatever its ports: a single member does not check its recorded peer
// URL). note reports such changes.
func keptEtcdPorts(dir string, note func(format string, args ...any)) (etcdPorts, error) {
	path := filepath.Join(dir, etcdPortsFile)
	var recorded etcdPorts
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(data, &recorded); err != nil || !validPort(recorded.Client) || !validPort(recorded.Peer) {
			note("ignoring invalid %s", path)
			recorded = etcdPorts{}
		}
	case errors.Is(err, fs.ErrNotExist):
	default:
		return etcdPorts{}, err
	}

	ports := recorded
	for _, port := range []*int{&ports.Client, &ports.Peer} {
		if *port != 0 && !portFree(*port) {
			note("recorded etcd port %d is in use, picking another one", *port)
			*port = 0
		}
		if *port == 0 {
			if *port, err = freePort(); err != nil {
				return etcdPorts{}, err
			}
		}
	}
	for ports.Client == ports.Peer {
		// Two freePort calls can return the same port.
		if ports.Peer, err = freePort(); err != nil {
			return etcdPorts{}, err
		}
	}
	if ports != recorded {
		data, err := json.Marshal(ports)
		if err != nil {
			return etcdPorts{}, err
		}
		if err := writeFileAtomic(path, append(data, '\n'), 0o600); err != nil {
			return etcdPorts{}, err
		}
	}
	return ports, nil
}

func validPort(p int) bool { return p > 0 && p <= 65535 }

// portFree reports whether 127.0.0.1:port can be listened on right now.
func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// writeFileAtomic replaces path with data via a temporary file in the same
// directory and a rename, so that readers (and a later run after a kill)
// see either the old or the new content.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, perm)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}
