package layer_test

import (
	"fmt"

	"github.com/ovl-dev/ovl/layer"
)

// Classify needs no file system for the OCI/AUFS names: the name says it.
func ExampleClassify() {
	for _, name := range []string{"etc", ".wh.passwd", ".wh..wh..opq", ".wh..wh.plnk"} {
		kind, target := layer.Classify(-1, name, nil, layer.Transparent)
		fmt.Printf("%-14s %-13s %s\n", name, kind, target)
	}
	// Output:
	// etc            visible       etc
	// .wh.passwd     whiteout      passwd
	// .wh..wh..opq   opaque-marker .wh..wh..opq
	// .wh..wh.plnk   meta          .wh..wh.plnk
}

func ExampleNamespace_Xattr() {
	fmt.Println(layer.Trusted.Xattr(layer.KeyOpaque))
	fmt.Println(layer.User.Xattr(layer.KeyWhiteout))
	// Output:
	// trusted.overlay.opaque
	// user.overlay.whiteout
}
