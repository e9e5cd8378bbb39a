package main

import (
	"strings"
	"testing"

	"github.com/ovl-dev/ovl/layer"
	"github.com/ovl-dev/ovl/vagga"
)

// TestNewStepCacheFlags: no cache flag, no cache; a cache with
// --cache-each-step=false, or a reference that is not one, is refused
// with an error that says what to change.
func TestNewStepCacheFlags(t *testing.T) {
	cfg := &vagga.Config{Dir: t.TempDir()}
	if c, err := newStepCache(cacheOptions{}, cfg, false, layer.User); c != nil || err != nil {
		t.Errorf("no flags: %v, %v; want no cache", c, err)
	}
	cases := []struct {
		o        cacheOptions
		oneLayer bool
		want     string
	}{
		{cacheOptions{To: "localhost:5000/p/cache"}, true, "--cache-each-step"},
		{cacheOptions{From: []string{"not a reference"}}, false, "--cache-from"},
		{cacheOptions{To: "localhost:5000/UPPER/cache"}, false, "--cache-to"},
	}
	for _, c := range cases {
		_, err := newStepCache(c.o, cfg, c.oneLayer, layer.User)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err = %v, want one naming %s", c.o, err, c.want)
		}
	}
	if c, err := newStepCache(cacheOptions{From: []string{"localhost:5000/p/cache:main"}}, cfg, false, layer.User); c == nil || err != nil {
		t.Errorf("a good reference: %v, %v", c, err)
	}
}
