package bench

import (
	"bufio"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Machine describes where a report was measured.
type Machine struct {
	Kernel   string            `json:"kernel"`
	CPU      string            `json:"cpu"`
	Cores    int               `json:"cores"`
	MemoryMB int64             `json:"memory_mb"`
	FS       string            `json:"fs"`
	LoadAvg  string            `json:"load_avg"`
	Root     bool              `json:"root"`
	Tools    map[string]string `json:"tools,omitempty"`
}

// String is a one-line description for report headers.
func (m Machine) String() string {
	s := "Linux " + m.Kernel + ", " + strconv.Itoa(m.Cores) + " cores"
	if m.CPU != "" {
		s += " (" + m.CPU + ")"
	}
	s += ", " + strconv.FormatInt(m.MemoryMB/1024, 10) + " GiB, " + m.FS
	if m.LoadAvg != "" {
		s += ", load " + m.LoadAvg
	}
	return s
}

// DescribeMachine gathers Machine for the bench directory dir.
func DescribeMachine(dir string) Machine {
	m := Machine{Cores: runtime.NumCPU(), Root: os.Geteuid() == 0, Tools: map[string]string{}}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	m.CPU = procField("/proc/cpuinfo", "model name")
	if kb, err := strconv.ParseInt(strings.Fields(procField("/proc/meminfo", "MemTotal") + " 0")[0], 10, 64); err == nil {
		m.MemoryMB = kb / 1024
	}
	m.FS = fsName(dir)
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.LoadAvg = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	for _, t := range [][]string{{"fuse-overlayfs", "--version"}, {"unionfs", "--version"}, {"fio", "--version"}} {
		if out, err := exec.Command(t[0], t[1:]...).CombinedOutput(); err == nil || len(out) > 0 {
			for _, l := range strings.Split(string(out), "\n") {
				if strings.Contains(strings.ToLower(l), "version") || strings.HasPrefix(l, "fio-") {
					m.Tools[t[0]] = strings.TrimSpace(l)
					break
				}
			}
		}
	}
	return m
}

// procField returns the value of the first "key: value" line of a /proc file.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func fsName(dir string) string {
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) != nil {
		return "unknown fs"
	}
	switch st.Type {
	case unix.EXT4_SUPER_MAGIC:
		return "ext4"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlayfs"
	}
	return "fs 0x" + strconv.FormatInt(int64(st.Type), 16)
}
