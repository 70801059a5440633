package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pkiFiles holds the paths and PEM contents of the generated credentials.
// All keys are ECDSA P-256, written as PKCS#8 "PRIVATE KEY" PEM.
type pkiFiles struct {
	dir string

	caCert    string // serving CA: validates the apiserver's serving cert
	caCertPEM []byte

	servingCert string // apiserver serving cert (signed by the serving CA)
	servingKey  string

	clientCACert string // client CA: passed as --client-ca-file

	adminCert    string // CN=credshift-admin, O=system:masters
	adminCertPEM []byte
	adminKey     string
	adminKeyPEM  []byte

	saKey string // service-account token signing key (private)
	saPub string // service-account token verification key (public)
}

const (
	adminUser  = "credshift-admin"
	adminGroup = "system:masters"

	// The CA keys are written for completeness; nothing reads them.
	caKeyFile       = "ca.key"
	clientCAKeyFile = "client-ca.key"
)

type keyPair struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// newCA creates a self-signed CA certificate.
func newCA(cn string) (*keyPair, error) {
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &keyPair{cert: cert, key: key}, nil
}

// sign issues a leaf certificate from the template, signed by ca.
func (ca *keyPair) sign(tmpl *x509.Certificate) (*keyPair, error) {
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl.SerialNumber = sn
	tmpl.NotBefore = now.Add(-time.Hour)
	tmpl.NotAfter = now.Add(365 * 24 * time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.BasicConstraintsValid = true
	tmpl.IsCA = false
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &keyPair{cert: cert, key: key}, nil
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func keyPEM(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func pubPEM(k crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// pkiPaths returns the file paths of the PKI in dir (PEM contents unset).
func pkiPaths(dir string) *pkiFiles {
	return &pkiFiles{
		dir:          dir,
		caCert:       filepath.Join(dir, "ca.crt"),
		servingCert:  filepath.Join(dir, "apiserver.crt"),
		servingKey:   filepath.Join(dir, "apiserver.key"),
		clientCACert: filepath.Join(dir, "client-ca.crt"),
		adminCert:    filepath.Join(dir, "admin.crt"),
		adminKey:     filepath.Join(dir, "admin.key"),
		saKey:        filepath.Join(dir, "sa.key"),
		saPub:        filepath.Join(dir, "sa.pub"),
	}
}

// writePKI generates all credentials and writes them into dir.
func writePKI(dir string) (*pkiFiles, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := pkiPaths(dir)

	ca, err := newCA("credshift-testenv-ca")
	if err != nil {
		return nil, fmt.Errorf("serving CA: %w", err)
	}
	serving, err := ca.sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{
			"localhost",
			"kubernetes",
			"kubernetes.default",
			"kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local",
		},
		IPAddresses: []net.IP{
			net.ParseIP("127.0.0.1"),
			net.ParseIP("::1"),
			net.ParseIP(serviceIP),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("serving cert: %w", err)
	}
	clientCA, err := newCA("credshift-testenv-client-ca")
	if err != nil {
		return nil, fmt.Errorf("client CA: %w", err)
	}
	admin, err := clientCA.sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: adminUser, Organization: []string{adminGroup}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("admin cert: %w", err)
	}
	saKey, err := newKey()
	if err != nil {
		return nil, fmt.Errorf("service-account key: %w", err)
	}

	p.caCertPEM = certPEM(ca.cert)
	p.adminCertPEM = certPEM(admin.cert)
	if p.adminKeyPEM, err = keyPEM(admin.key); err != nil {
		return nil, err
	}
	caKeyPEM, err := keyPEM(ca.key)
	if err != nil {
		return nil, err
	}
	servingKeyPEM, err := keyPEM(serving.key)
	if err != nil {
		return nil, err
	}
	clientCAKeyPEM, err := keyPEM(clientCA.key)
	if err != nil {
		return nil, err
	}
	saKeyPEM, err := keyPEM(saKey)
	if err != nil {
		return nil, err
	}
	saPubPEM, err := pubPEM(saKey.Public())
	if err != nil {
		return nil, err
	}

	files := []struct {
		path string
		data []byte
	}{
		{p.caCert, p.caCertPEM},
		{filepath.Join(dir, caKeyFile), caKeyPEM},
		{p.servingCert, certPEM(serving.cert)},
		{p.servingKey, servingKeyPEM},
		{p.clientCACert, certPEM(clientCA.cert)},
		{filepath.Join(dir, clientCAKeyFile), clientCAKeyPEM},
		{p.adminCert, p.adminCertPEM},
		{p.adminKey, p.adminKeyPEM},
		{p.saKey, saKeyPEM},
		{p.saPub, saPubPEM},
	}
	for _, f := range files {
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			return nil, err
		}
	}
	return p, nil
}
