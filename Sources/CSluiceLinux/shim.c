#define _GNU_SOURCE 1
#include <malloc.h>
#include <sched.h>
#include <pthread.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "CSluiceLinux.h"

// glibc's recv and sendmsg are thread-cancellation points: each call is bracketed by
// enable/disable-asynccancel bookkeeping (measured: ~3 % of Sluice's user time per proxied
// request). Sluice never cancels threads, so the hot path enters the kernel through
// syscall(2) directly; errors still come back as -1 with errno set.
ssize_t csluice_recv(int fd, void *buf, size_t len) {
    return syscall(SYS_recvfrom, fd, buf, len, 0, NULL, NULL);
}

ssize_t csluice_sendmsg(int fd, const struct msghdr *msg, int flags) {
    return syscall(SYS_sendmsg, fd, msg, flags);
}

int csluice_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags) {
    return accept4(fd, addr, len, flags);
}

int csluice_pipe2(int fds[2], int flags) { return pipe2(fds, flags); }

ssize_t csluice_splice(int in, int out, size_t len, unsigned int flags) {
    return splice(in, NULL, out, NULL, len, flags);
}

int csluice_pin_current_thread(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

int csluice_available_cpus(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return (int)sysconf(_SC_NPROCESSORS_ONLN);
    return CPU_COUNT(&set);
}

int csluice_set_thread_name(pthread_t t, const char *name) {
    return pthread_setname_np(t, name);
}

size_t csluice_heap_free_bytes(void) {
    struct mallinfo2 m = mallinfo2();
    return m.fordblks;
}

void csluice_heap_trim(void) {
    malloc_trim(0);
}
