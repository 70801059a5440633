// Command kstatus prints what sigs.k8s.io/cli-utils' kstatus library (the
// health rules of Flux, kpt and many deployment pipelines) makes of
// Kubernetes objects: read as JSON on stdin, one object or a List such as
// `kubectl get -o json` prints, and written to stdout as one JSON line per
// object: {"kind", "name", "status", "message"}. Exits 1 on bad input.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Kind    string `json:"kind"`
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	data, err := io.ReadAll(in)
	if err != nil {
		return err
	}
	var obj unstructured.Unstructured
	if err := obj.UnmarshalJSON(data); err != nil {
		return fmt.Errorf("stdin: %w", err)
	}
	items := []unstructured.Unstructured{obj}
	if obj.IsList() {
		list, err := obj.ToList()
		if err != nil {
			return err
		}
		items = list.Items
	}
	enc := json.NewEncoder(out)
	for i := range items {
		res, err := status.Compute(&items[i])
		if err != nil {
			return fmt.Errorf("%s/%s: %w", items[i].GetKind(), items[i].GetName(), err)
		}
		v := verdict{
			Kind:    items[i].GetKind(),
			Name:    items[i].GetName(),
			Status:  res.Status.String(),
			Message: res.Message,
		}
		if err := enc.Encode(v); err != nil {
			return err
		}
	}
	return nil
}
