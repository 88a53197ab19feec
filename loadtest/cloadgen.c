/*
 * A memcached text-protocol load generator in C: the engine behind
 * loadtest/loadgen.py's run() when a C compiler is present.
 *
 * Same workload and accounting as the Python engine, without its ceiling
 * (the Python generator saturates one core near 100k replies/s here):
 *
 *   one process, one epoll loop, N connections to 127.0.0.1:PORT;
 *   each connection keeps `depth` prebuilt requests in flight; the next
 *   batch goes out once the whole reply of the last one is read, after
 *   every ready connection of a wakeup has been read (a burst per wakeup);
 *   a reply is counted by its terminator (END\r\n or STORED\r\n), hits by
 *   "VALUE " headers, with the last bytes of a read carried over so a
 *   terminator split across reads counts once.
 *
 * Usage: cloadgen PORT REQUEST_FILE TERMINATOR CONNS SECONDS DEPTH
 *   REQUEST_FILE: requests as <u32 little-endian length><bytes>, repeated.
 * Prints one line: ops hits seconds cpu_seconds wakeups
 * Only 127.0.0.1 is ever connected to.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RECV_SIZE (1 << 16)

struct req {
    const char *data;
    size_t len;
};

struct conn {
    int fd;
    int outstanding; /* replies still expected for the batch in flight */
    size_t next;     /* index of the next request to send */
    char tail[16];   /* last bytes of the previous read */
    size_t ntail;
    int ready;       /* its batch is answered: send the next this wakeup */
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

static size_t count(const char *buf, size_t n, const char *pat, size_t plen) {
    size_t c = 0;
    const char *p = buf, *end = buf + n;
    while ((size_t)(end - p) >= plen) {
        const char *hit = memmem(p, end - p, pat, plen);
        if (!hit)
            break;
        c++;
        p = hit + plen;
    }
    return c;
}

static void send_all(int fd, const char *data, size_t len) {
    while (len) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) { /* a full socket buffer: wait for room */
                usleep(50);
                continue;
            }
            die("send");
        }
        data += n;
        len -= (size_t)n;
    }
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: %s PORT REQUEST_FILE TERMINATOR CONNS SECONDS DEPTH\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    const char *term = argv[3];
    size_t tlen = strlen(term);
    int nconns = atoi(argv[4]);
    double seconds = atof(argv[5]);
    int depth = atoi(argv[6]);
    if (tlen == 0 || tlen > 15 || nconns < 1 || depth < 1 || seconds <= 0) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    /* the terminator comes escaped from the shell as \r\n: unescape it */
    char tbuf[16];
    size_t tl = 0;
    for (size_t i = 0; i < tlen && tl < sizeof tbuf; i++) {
        if (term[i] == '\\' && i + 1 < tlen && (term[i + 1] == 'r' || term[i + 1] == 'n')) {
            tbuf[tl++] = term[i + 1] == 'r' ? '\r' : '\n';
            i++;
        } else {
            tbuf[tl++] = term[i];
        }
    }
    term = tbuf;
    tlen = tl;

    FILE *f = fopen(argv[2], "rb");
    if (!f)
        die("open request file");
    fseek(f, 0, SEEK_END);
    long fsize = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *blob = malloc(fsize > 0 ? (size_t)fsize : 1);
    if (!blob || fread(blob, 1, (size_t)fsize, f) != (size_t)fsize)
        die("read request file");
    fclose(f);
    size_t nreq = 0, cap = 1024;
    struct req *reqs = malloc(cap * sizeof *reqs);
    for (long off = 0; off + 4 <= fsize;) {
        uint32_t len;
        memcpy(&len, blob + off, 4);
        off += 4;
        if (off + (long)len > fsize)
            break;
        if (nreq == cap) {
            cap *= 2;
            reqs = realloc(reqs, cap * sizeof *reqs);
        }
        reqs[nreq].data = blob + off;
        reqs[nreq].len = len;
        nreq++;
        off += len;
    }
    if (nreq == 0) {
        fprintf(stderr, "no requests\n");
        return 2;
    }
    /* pipelined batches of `depth` consecutive requests, built once */
    struct req *batches = reqs;
    size_t nbatch = nreq;
    if (depth > 1) {
        nbatch = (nreq + depth - 1) / depth;
        batches = malloc(nbatch * sizeof *batches);
        for (size_t b = 0; b < nbatch; b++) {
            size_t total = 0;
            for (int j = 0; j < depth; j++)
                total += reqs[(b * depth + j) % nreq].len;
            char *p = malloc(total);
            batches[b].data = p;
            batches[b].len = total;
            for (int j = 0; j < depth; j++) {
                struct req *r = &reqs[(b * depth + j) % nreq];
                memcpy(p, r->data, r->len);
                p += r->len;
            }
        }
    }

    int ep = epoll_create1(0);
    if (ep < 0)
        die("epoll_create1");
    struct conn *conns = calloc((size_t)nconns, sizeof *conns);
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK); /* 127.0.0.1, always */
    for (int c = 0; c < nconns; c++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
            die("socket");
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0)
            die("connect");
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
            die("fcntl");
        conns[c].fd = fd;
        conns[c].next = ((size_t)c * 7919) % nbatch;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &conns[c]};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
            die("epoll_ctl");
    }

    char *buf = malloc(RECV_SIZE + 16);
    struct epoll_event *events = malloc((size_t)nconns * sizeof *events);
    struct conn **ready = malloc((size_t)nconns * sizeof *ready);
    size_t keep = (tlen > 6 ? tlen : 6) - 1; /* "VALUE " is 6 bytes */
    unsigned long long ops = 0, hits = 0, wakeups = 0;
    double t0 = now(), cpu0 = cpu_seconds(), stop = t0 + seconds;
    for (int c = 0; c < nconns; c++) {
        struct req *b = &batches[conns[c].next];
        send_all(conns[c].fd, b->data, b->len);
        conns[c].outstanding = depth;
        conns[c].next = (conns[c].next + 1) % nbatch;
    }
    int running = 1, idle = 0;
    while (running) {
        int n = epoll_wait(ep, events, nconns, 500);
        running = now() < stop;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        if (n == 0) {
            if (++idle > 4) { /* 2.5 s in a row with no reply */
                fprintf(stderr, "server stopped answering\n");
                return 3;
            }
            continue;
        }
        idle = 0;
        size_t nready = 0;
        for (int i = 0; i < n; i++) {
            struct conn *cn = events[i].data.ptr;
            memcpy(buf, cn->tail, cn->ntail);
            ssize_t got = recv(cn->fd, buf + cn->ntail, RECV_SIZE, 0);
            if (got < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (got <= 0) {
                fprintf(stderr, "server closed a connection\n");
                return 3;
            }
            size_t total = cn->ntail + (size_t)got;
            long done = (long)count(buf, total, term, tlen) - (long)count(buf, cn->ntail, term, tlen);
            hits += count(buf, total, "VALUE ", 6) - count(buf, cn->ntail, "VALUE ", 6);
            if (total >= tlen && memcmp(buf + total - tlen, term, tlen) == 0) {
                cn->ntail = 0;
            } else {
                size_t k = total < keep ? total : keep;
                memcpy(cn->tail, buf + total - k, k);
                cn->ntail = k;
            }
            if (done > 0) {
                ops += (unsigned long long)done;
                cn->outstanding -= (int)done;
                if (cn->outstanding <= 0 && running && !cn->ready) {
                    cn->ready = 1;
                    ready[nready++] = cn;
                }
            }
        }
        wakeups++;
        for (size_t i = 0; i < nready; i++) {
            struct conn *cn = ready[i];
            struct req *b = &batches[cn->next];
            send_all(cn->fd, b->data, b->len);
            cn->outstanding = depth;
            cn->ready = 0;
            cn->next = cn->next + 1 < nbatch ? cn->next + 1 : 0;
        }
    }
    double elapsed = now() - t0, cpu = cpu_seconds() - cpu0;
    printf("%llu %llu %.6f %.6f %llu\n", ops, hits, elapsed, cpu, wakeups);
    return 0;
}
