// What Glibc does not export to Swift, wrapped once. Every wrapper is a plain
// forwarding function so Swift sees a normal C signature (no macros, no varargs).
#ifndef CSLUICE_LINUX_H
#define CSLUICE_LINUX_H

// No _GNU_SOURCE here: defining it in a header that Swift imports changes libc's struct
// layouts (fd_set and friends) and clashes with the Glibc module. The few calls that need it
// are implemented in shim.c, which defines it for itself.
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <netdb.h>

// accept4, pipe2, splice and the affinity calls need _GNU_SOURCE, which Swift's Glibc
// module is not built with.
int csluice_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);
// recv and sendmsg without glibc's cancellation-point wrappers (see shim.c).
ssize_t csluice_recv(int fd, void *buf, size_t len);
ssize_t csluice_sendmsg(int fd, const struct msghdr *msg, int flags);
int csluice_pipe2(int fds[2], int flags);
ssize_t csluice_splice(int in, int out, size_t len, unsigned int flags);

/// Pins the calling thread to one CPU; returns 0 or an errno value.
int csluice_pin_current_thread(int cpu);
/// The number of CPUs this process may run on (respects taskset and cgroup cpusets).
int csluice_available_cpus(void);
/// Names a thread (Linux truncates to 15 bytes); returns 0 or an errno value.
int csluice_set_thread_name(pthread_t t, const char *name);

// epoll_event is packed on x86_64, which Swift imports awkwardly; these accessors keep
// the layout knowledge in C.
static inline uint32_t csluice_epoll_event_events(const struct epoll_event *e) { return e->events; }
static inline uint64_t csluice_epoll_event_data(const struct epoll_event *e) { return e->data.u64; }
static inline int csluice_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev;
    ev.events = events;
    ev.data.u64 = data;
    return epoll_ctl(epfd, op, fd, &ev);
}
static inline size_t csluice_epoll_event_size(void) { return sizeof(struct epoll_event); }

// Constants that are macros or enums Swift imports with the wrong type.
static const uint32_t CSLUICE_EPOLLIN = EPOLLIN;
static const uint32_t CSLUICE_EPOLLOUT = EPOLLOUT;
static const uint32_t CSLUICE_EPOLLERR = EPOLLERR;
static const uint32_t CSLUICE_EPOLLHUP = EPOLLHUP;
static const uint32_t CSLUICE_EPOLLRDHUP = EPOLLRDHUP;
static const uint32_t CSLUICE_EPOLLET = EPOLLET;
static const int CSLUICE_SOCK_NONBLOCK = SOCK_NONBLOCK;
static const int CSLUICE_SOCK_CLOEXEC = SOCK_CLOEXEC;
static const int CSLUICE_SOCK_STREAM = SOCK_STREAM;
static const int CSLUICE_SOCK_DGRAM = SOCK_DGRAM;

// The heap (glibc malloc): bytes in free chunks across all arenas (mallinfo2's fordblks), and
// malloc_trim(0), which gives the free pages of every arena back to the system. <malloc.h> is
// not in Swift's Glibc module.
size_t csluice_heap_free_bytes(void);
void csluice_heap_trim(void);

#endif
