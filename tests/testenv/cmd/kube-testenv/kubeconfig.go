package main

import (
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// contextName is the single context (and cluster and user name) of the
// generated kubeconfig; it is the current-context.
const contextName = "credshift-testenv"

// writeKubeconfig writes an admin kubeconfig with all credentials inlined.
func writeKubeconfig(path, server string, p *pkiFiles) error {
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
	return clientcmd.WriteToFile(*cfg, path)
}
