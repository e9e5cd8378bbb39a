// Package oci moves ovl's layers through OCI registries and OCI image
// layouts: the build cache shared between machines (`ovl build
// --cache-to/--cache-from`), runnable images of built containers (`ovl
// push`, `ovl pull`, `ovl export --oci-layout`).
//
// It is the only package that knows the OCI formats. The layer format
// itself stays package layer's: WriteLayer reads a layer through
// layer.ReadDir (which recognises every whiteout and opaque encoding) and
// ReadLayer writes whiteouts and opaque directories through
// layer.MakeWhiteout and layer.MakeOpaque. The layer store stays
// builder's: Cache implements builder.StepCache and fills the pending
// layer directory the builder hands it, which the builder commits only
// once the blob's digest has been checked.
//
// A layer as an OCI blob (WriteLayer, ReadLayer):
//
//   - a whiteout (a 0/0 character device, an xattr whiteout, a ".wh."
//     file) becomes ".wh.NAME"; an opaque directory (overlay.opaque "y"
//     in either namespace, or a ".wh..wh..opq" file) gets a
//     ".wh..wh..opq" entry; and back, in the kernel's format;
//   - owners, modes, modification times (to the nanosecond, in PAX
//     records), xattrs other than overlay metadata, symlinks, devices,
//     fifos and hard links within the layer are kept; the layer's own
//     root directory is the entry "./";
//   - the tar is deterministic: entries in name order, no user or group
//     names, no access or change times, so one layer always gives one
//     digest;
//   - blobs are gzip-compressed at gzip.BestSpeed: measured on the
//     bench's 247 MB tree, 13-18 s against 38-41 s for the default level
//     (2 loaded cores), for 15% more bytes (80 MB against 69 MB).
//
// The registry protocol, OCI descriptors and the OCI image layout come
// from oras.land/oras-go/v2. It was chosen over
// github.com/google/go-containerregistry because it brings three small
// modules (the OCI image-spec types, go-digest, x/sync) where
// go-containerregistry v0.22 brings some forty (docker/cli, moby's
// client, OpenTelemetry, oauth2…); because it is built around
// content-addressed stores that a registry and an OCI layout directory
// both implement (so push and export are one code path); and because it
// makes artifacts with annotated layers (the cache index) a first-class
// manifest. ovl writes its own tar layers, so go-containerregistry's
// image-mutation helpers would not be used.
//
// Files:
//
//	layertar.go  a layer directory to a deterministic OCI tar (WriteLayer)
//	unpack.go    an OCI tar to a layer directory (ReadLayer)
//	blob.go      compressed, digested blobs on disk (Pack) and verified reads
//	remote.go    repositories: references, auth, plain HTTP, time limits
//	cache.go     the step cache: the index artifact, Fetch, Store, Flush
//	prefetch.go  the step cache's background downloads of the next steps
//	image.go     images of built containers: push, pull, export
package oci
