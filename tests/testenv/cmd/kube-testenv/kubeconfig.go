package main

import (
	"bytes"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// contextName is the single context (and cluster and user name) of the
// generated kubeconfig; it is the current-context.
const contextName = "credshift-testenv"

// newKubeconfig returns an admin kubeconfig with all credentials inlined.
func newKubeconfig(server string, p *pkiFiles) *clientcmdapi.Config {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[contextName] = &clientcmdapi.Cluster{
		Server:                   server,
		CertificateAuthorityData: p.caCertPEM,
	}
	cfg.AuthInfos[adminUser] = &clientcmdapi.AuthInfo{
		ClientCertificateData: p.adminCertPEM,
		ClientKeyData:         p.adminKeyPEM,
	}
	cfg.Contexts[contextName] = &clientcmdapi.Context{
		Cluster:   contextName,
		AuthInfo:  adminUser,
		Namespace: "default",
	}
	cfg.CurrentContext = contextName
	return cfg
}

// writeKubeconfig writes an admin kubeconfig with all credentials inlined.
func writeKubeconfig(path, server string, p *pkiFiles) error {
	return clientcmd.WriteToFile(*newKubeconfig(server, p), path)
}

// kubeconfigMatches reports whether the kubeconfig at path exists and its
// context, cluster and user (the entries named as ours) point at server with
// the CA and admin credentials of p. Other entries, the current-context and
// the context's namespace are not looked at.
func kubeconfigMatches(path, server string, p *pkiFiles) bool {
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		return false
	}
	ctx, cluster, user := cfg.Contexts[contextName], cfg.Clusters[contextName], cfg.AuthInfos[adminUser]
	return ctx != nil && cluster != nil && user != nil &&
		ctx.Cluster == contextName && ctx.AuthInfo == adminUser &&
		cluster.Server == server &&
		bytes.Equal(cluster.CertificateAuthorityData, p.caCertPEM) &&
		bytes.Equal(user.ClientCertificateData, p.adminCertPEM) &&
		bytes.Equal(user.ClientKeyData, p.adminKeyPEM)
}

// ensureKubeconfig (--keep-state) leaves the kubeconfig at path untouched if
// it matches server and p (see kubeconfigMatches), and otherwise replaces it
// atomically with a freshly generated one. It reports whether it wrote.
func ensureKubeconfig(path, server string, p *pkiFiles) (bool, error) {
	if kubeconfigMatches(path, server, p) {
		return false, nil
	}
	data, err := clientcmd.Write(*newKubeconfig(server, p))
	if err != nil {
		return false, err
	}
	return true, writeFileAtomic(path, data, 0o600)
}
