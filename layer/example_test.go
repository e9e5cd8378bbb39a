package layer_test

import (
	"fmt"

	"github.com/ovl-dev/ovl/layer"
)

// In the kernel's format every name is a name; in a layer recorded as
// OCI, the name alone says which entries are whiteouts and markers.
func ExampleReader_Classify() {
	for _, f := range []layer.Format{layer.KernelFormat, layer.OCIFormat} {
		for _, name := range []string{"etc", ".wh.passwd", ".wh..wh..opq", ".wh..wh.plnk"} {
			kind, target := layer.Reader{Format: f}.Classify(-1, name, nil, layer.Transparent)
			fmt.Printf("%-6s %-14s %-13s %s\n", f, name, kind, target)
		}
	}
	// Output:
	// kernel etc            visible       etc
	// kernel .wh.passwd     visible       .wh.passwd
	// kernel .wh..wh..opq   visible       .wh..wh..opq
	// kernel .wh..wh.plnk   visible       .wh..wh.plnk
	// oci    etc            visible       etc
	// oci    .wh.passwd     whiteout      passwd
	// oci    .wh..wh..opq   opaque-marker .wh..wh..opq
	// oci    .wh..wh.plnk   meta          .wh..wh.plnk
}

func ExampleNamespace_Xattr() {
	fmt.Println(layer.Trusted.Xattr(layer.KeyOpaque))
	fmt.Println(layer.User.Xattr(layer.KeyWhiteout))
	// Output:
	// trusted.overlay.opaque
	// user.overlay.whiteout
}
