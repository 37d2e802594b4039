/* Listening sockets: bound from the configuration while ternd may still be root (ports below
 * 1024), before privileges are dropped; handed to libevent afterwards. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/server.h"

#define LISTEN_BACKLOG 1024

static int open_one(const struct conf_listener *l, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, l->host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)l->port);
        len = sizeof *s4;
    } else if (inet_pton(AF_INET6, l->host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)l->port);
        len = sizeof *s6;
    } else {
        snprintf(err, errlen, "listen address %s is not a numeric IPv4 or IPv6 address", l->host);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket for %s port %d: %s", l->host, l->port, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
        int e = errno;
        close(fd);
        snprintf(err, errlen, "cannot listen on %s port %d: %s%s", l->host, l->port, strerror(e),
                 e == EADDRINUSE ? " (is another mail server or ternd running? change [listen] "
                                   "in the configuration or stop it)"
                 : e == EACCES   ? " (ports below 1024 need ternd to be started as root)"
                                 : "");
        return -1;
    }
    return fd;
}

int listen_open(const struct conf *c, int *fds, char *err, size_t errlen)
{
    for (size_t i = 0; i < c->nlisteners; i++) {
        fds[i] = open_one(&c->listeners[i], err, errlen);
        if (fds[i] < 0) {
            while (i-- > 0)
                close(fds[i]);
            return -1;
        }
    }
    return 0;
}
