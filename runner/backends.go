package runner

import (
	"github.com/ovl-dev/ovl/backend"
	"github.com/ovl-dev/ovl/selector"
)

// backendNamed returns, in the init process, a backend of the name the
// caller's Config.Backend has: the caller chose it (through the
// selector), init needs its own instance in its namespaces.
func backendNamed(name string) (backend.Backend, error) {
	return selector.ByName(name)
}
