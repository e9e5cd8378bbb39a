package kernelsim

import "golang.org/x/sys/unix"

// mknodRules refuse a 0/0 character device: mknod and mknodat (mode
// S_IFCHR, device 0) and renameat2 with RENAME_WHITEOUT.
func mknodRules() []rule {
	return []rule{
		{nr: unix.SYS_MKNOD, errno: unix.EPERM, conds: []cond{argMask(1, unix.S_IFMT, unix.S_IFCHR), argEq(2, 0), argHighZero(2)}},
		{nr: unix.SYS_MKNODAT, errno: unix.EPERM, conds: []cond{argMask(2, unix.S_IFMT, unix.S_IFCHR), argEq(3, 0), argHighZero(3)}},
		{nr: unix.SYS_RENAMEAT2, errno: unix.EPERM, conds: []cond{argMask(4, unix.RENAME_WHITEOUT, unix.RENAME_WHITEOUT)}},
	}
}
