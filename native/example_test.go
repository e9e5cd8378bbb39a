package native_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/ovl-dev/ovl/layer"
	"github.com/ovl-dev/ovl/native"
)

// Mount a writable stack of two layers as root; changes land in the
// upper directory and stay there after Unmount.
func ExampleBackend_Mount() {
	spec := layer.Spec{
		Lowers: []string{"/var/lib/ovl/layers/app", "/var/lib/ovl/layers/base"}, // top first
		Upper:  "/var/lib/ovl/run/upper",
		Work:   "/var/lib/ovl/run/work",
		Target: "/var/lib/ovl/run/root",
	}
	m, err := native.New().Mount(context.Background(), spec)
	var bad *layer.SpecError
	switch {
	case errors.As(err, &bad):
		log.Fatalf("fix the spec: %v", bad) // names the field and path at fault
	case err != nil:
		log.Fatal(err) // the kernel refused; the error carries its reason
	}
	defer m.Unmount()
	fmt.Println("merged tree at", m.Target())
}
