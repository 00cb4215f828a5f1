/* A TCP proxy on loopback that delays every byte by a fixed time each way: S3 "far away".
 *
 *     delayproxy TARGET_PORT ONE_WAY_MS WINDOW_BYTES
 *
 * Listens on a free loopback port (printed on stdout as its first line) and forwards each
 * connection to 127.0.0.1:TARGET_PORT. What one side sends is handed to the other
 * ONE_WAY_MS later, in both directions, so a request and its answer take 2 × ONE_WAY_MS
 * more (the round trip), and a new connection waits one round trip before its first byte
 * goes (the TCP handshake). At most WINDOW_BYTES per direction and connection are held
 * back at a time, so one connection carries at most about WINDOW_BYTES per round trip, as
 * a TCP window would. Built by bench/delay.py; written in C so the proxy's own CPU stays
 * small beside the clients' (the benchmark reports it on its own).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (256 * 1024)

static int target_port;
static long delay_ns;
static size_t window_bytes;

struct chunk {
    struct chunk *next;
    struct timespec due;
    size_t len; /* 0: the end of the stream */
    char data[];
};

struct pipe_ {
    int from, to;
    int first; /* the client-to-store direction: waits one round trip (the handshake) */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct chunk *head, *tail;
    size_t held;
    int broken;
    struct conn *conn;
};

struct conn {
    struct pipe_ up, down;
    pthread_mutex_t lock;
    int left; /* threads still running */
};

static void add_ns(struct timespec *t, long ns) {
    t->tv_nsec += ns;
    while (t->tv_nsec >= 1000000000L) {
        t->tv_nsec -= 1000000000L;
        t->tv_sec += 1;
    }
}

static void finish(struct conn *c) {
    pthread_mutex_lock(&c->lock);
    int left = --c->left;
    pthread_mutex_unlock(&c->lock);
    if (left == 0) {
        struct pipe_ *pipes[2] = {&c->up, &c->down};
        for (int i = 0; i < 2; i++)
            for (struct chunk *k = pipes[i]->head, *next; k; k = next) {
                next = k->next;
                free(k);
            }
        close(c->up.from);
        close(c->up.to);
        free(c);
    }
}

static void push(struct pipe_ *p, struct chunk *k) {
    pthread_mutex_lock(&p->lock);
    k->next = NULL;
    if (p->tail)
        p->tail->next = k;
    else
        p->head = k;
    p->tail = k;
    p->held += k->len;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

static void *reader(void *arg) {
    struct pipe_ *p = arg;
    if (p->first) {
        struct timespec t = {delay_ns * 2 / 1000000000L, delay_ns * 2 % 1000000000L};
        nanosleep(&t, NULL);
    }
    for (;;) {
        pthread_mutex_lock(&p->lock);
        while (p->held >= window_bytes && !p->broken)
            pthread_cond_wait(&p->cond, &p->lock);
        int broken = p->broken;
        pthread_mutex_unlock(&p->lock);
        struct chunk *k = malloc(sizeof *k + CHUNK);
        ssize_t n = broken ? 0 : recv(p->from, k->data, CHUNK, 0);
        clock_gettime(CLOCK_MONOTONIC, &k->due);
        add_ns(&k->due, delay_ns);
        k->len = n > 0 ? (size_t)n : 0;
        push(p, k);
        if (n <= 0)
            break;
    }
    finish(p->conn);
    return NULL;
}

static void *writer(void *arg) {
    struct pipe_ *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        while (!p->head)
            pthread_cond_wait(&p->cond, &p->lock);
        struct chunk *k = p->head;
        pthread_mutex_unlock(&p->lock);
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &k->due, NULL) == EINTR) {
        }
        size_t sent = 0;
        while (sent < k->len) {
            ssize_t n = send(p->to, k->data + sent, k->len - sent, MSG_NOSIGNAL);
            if (n <= 0)
                break;
            sent += (size_t)n;
        }
        size_t len = k->len;
        pthread_mutex_lock(&p->lock);
        p->head = k->next;
        if (!p->head)
            p->tail = NULL;
        p->held -= len;
        if (sent < len)
            p->broken = 1;
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
        free(k);
        if (len == 0 || sent < len) {
            /* the end (or a failed send): pass the close on, both ways if it failed */
            shutdown(p->to, sent < len ? SHUT_RDWR : SHUT_WR);
            if (sent < len)
                shutdown(p->from, SHUT_RDWR);
            break;
        }
    }
    finish(p->conn);
    return NULL;
}

static void start_pipe(struct conn *c, struct pipe_ *p, int from, int to, int first) {
    p->from = from;
    p->to = to;
    p->first = first;
    p->conn = c;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    pthread_create(&t, &attr, reader, p);
    pthread_create(&t, &attr, writer, p);
    pthread_attr_destroy(&attr);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s TARGET_PORT ONE_WAY_MS WINDOW_BYTES\n", argv[0]);
        return 2;
    }
    target_port = atoi(argv[1]);
    delay_ns = (long)(atof(argv[2]) * 1e6);
    window_bytes = (size_t)atol(argv[3]);
    signal(SIGPIPE, SIG_IGN);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof addr;
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) || listen(lfd, 512) ||
        getsockname(lfd, (struct sockaddr *)&addr, &alen)) {
        perror("delayproxy: listen");
        return 1;
    }
    printf("%d\n", ntohs(addr.sin_port));
    fflush(stdout);
    struct sockaddr_in target = {.sin_family = AF_INET, .sin_port = htons((uint16_t)target_port)};
    target.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (;;) {
        int cfd = accept(lfd, NULL, NULL);
        if (cfd < 0)
            continue;
        int sfd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(sfd, (struct sockaddr *)&target, sizeof target)) {
            close(cfd);
            close(sfd);
            continue;
        }
        setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = calloc(1, sizeof *c);
        pthread_mutex_init(&c->lock, NULL);
        c->left = 4;
        start_pipe(c, &c->up, cfd, sfd, 1);
        start_pipe(c, &c->down, sfd, cfd, 0);
    }
}
