package selector

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// fsNames names the filesystems layers are commonly kept on, by statfs
// magic.
var fsNames = map[int64]string{
	0xEF53:                     "ext4",
	0x58465342:                 "xfs",
	0x9123683E:                 "btrfs",
	0x01021994:                 "tmpfs",
	unix.OVERLAYFS_SUPER_MAGIC: "overlay",
	0x65735546:                 "fuse",
	0x6969:                     "nfs",
	0x2FC12FC1:                 "zfs",
	0xF2F52010:                 "f2fs",
}

// layerFS returns the filesystem type name and device of dir, which key
// the probe cache: the same kernel may allow overlay on ext4 but not on
// an NFS home directory.
func layerFS(dir string) (name string, dev uint64, err error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil {
		return "", 0, fmt.Errorf("layer dir %s: %w", dir, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return "", 0, fmt.Errorf("layer dir %s: %w", dir, err)
	}
	name = fsNames[int64(sfs.Type)]
	if name == "" {
		name = fmt.Sprintf("0x%x", sfs.Type)
	}
	return name, st.Dev, nil
}
