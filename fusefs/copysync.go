package fusefs

import (
	"log/slog"
	"sync"

	"golang.org/x/sys/unix"
)

// copySyncBacklog copies may wait for their sync; one more makes
// copy-up wait, so the syncs lag the copies by ~20 ms at most here. One
// worker syncs them: more overlap their device flushes but slow the
// requests being served (measured with 2 CPUs: 1 worker 590 ms for 2000
// copy-ups, 2 workers 700-735 ms, 8 workers 780-890 ms).
const copySyncBacklog = 64

// copySyncer syncs copied-up regular files in the background, after
// they are linked into place. The kernel's overlay syncs a copy before
// linking it (Linux: fs/overlayfs/copy_up.c:ovl_copy_up_file,
// vfs_fsync), so a machine crash can never leave a short copy in the
// upper hiding the lower file; that sync is most of a small file's
// copy-up (~0.3 ms of ~0.45 here), and a request waits for it. With a
// syncer (the default; not with Options.StrictOpen, which keeps the
// kernel's order, nor on a volatile stack, which never syncs) processes
// see exactly the same, and a killed daemon loses nothing (the copy is
// complete in the page cache when it is linked). What it gives up: a
// machine crash (power loss, kernel panic) in the moment between the
// link and the worker's fsync can leave the copy short or empty in the
// upper, hiding the lower file's content, which is still in its lower
// layer (fuse-overlayfs never syncs a copy-up, so there the window is
// until the kernel writes it back).
type copySyncer struct {
	log   *slog.Logger
	mu    sync.RWMutex // held shared by add, exclusively by close
	shut  bool         // protected by mu
	queue chan pendingSync
	wg    sync.WaitGroup
}

type pendingSync struct {
	fd   int
	name string // for the log
}

func newCopySyncer(log *slog.Logger) *copySyncer {
	s := &copySyncer{log: log, queue: make(chan pendingSync, copySyncBacklog)}
	s.wg.Add(1)
	go s.work()
	return s
}

// add takes fd, a copy just linked into the upper as name, and syncs
// and closes it later (at once if the syncer is closed).
func (s *copySyncer) add(fd int, name string) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.shut {
		s.sync(pendingSync{fd, name})
		return
	}
	s.queue <- pendingSync{fd, name}
}

func (s *copySyncer) work() {
	defer s.wg.Done()
	for p := range s.queue {
		s.sync(p)
	}
}

func (s *copySyncer) sync(p pendingSync) {
	if err := unix.Fsync(p.fd); err != nil {
		s.log.Warn("sync copied-up file", "name", p.name, "err", err)
	}
	unix.Close(p.fd)
}

// close syncs what is queued and stops the worker; later adds sync at
// once.
func (s *copySyncer) close() {
	s.mu.Lock()
	if s.shut {
		s.mu.Unlock()
		return
	}
	s.shut = true
	close(s.queue)
	s.mu.Unlock()
	s.wg.Wait()
}
