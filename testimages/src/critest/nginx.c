/* A stand-in for nginx in critest's images: a process named "nginx" that
 * titles itself as nginx's master does ("nginx: master process ..." in
 * /proc/<pid>/cmdline), records its pid in /var/run/nginx.pid and answers
 * every HTTP request on $NGINX_PORT (default 80) with 200 and a page, until
 * SIGTERM, SIGINT or SIGQUIT. Built static by crated-testimages. */
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

extern char **environ;

static void stop(int sig) {
    (void)sig;
    unlink("/var/run/nginx.pid");
    _exit(0);
}

/* The kernel reads a process's cmdline from its argv area, and on into the
 * environment area when the last argv byte is not NUL (setproctitle). */
static void retitle(int argc, char **argv, const char *title) {
    char *end = argv[argc - 1] + strlen(argv[argc - 1]);
    for (char **e = environ; *e; e++) {
        if (*e == end + 1) end = *e + strlen(*e);
    }
    size_t room = (size_t)(end - argv[0]);
    static char *empty[] = {NULL};
    environ = empty; /* the old strings are about to be overwritten */
    memset(argv[0], 0, room + 1);
    strncpy(argv[0], title, room);
}

int main(int argc, char **argv) {
    const char *env = getenv("NGINX_PORT");
    int port = env ? atoi(env) : 80;
    retitle(argc, argv, "nginx: master process nginx -g daemon off;");
    signal(SIGTERM, stop);
    signal(SIGINT, stop);
    signal(SIGQUIT, stop);
    signal(SIGPIPE, SIG_IGN);

    int s = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    if (s < 0 || bind(s, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(s, 64) != 0) {
        perror("nginx: listen");
        return 1;
    }
    FILE *pid = fopen("/var/run/nginx.pid", "w");
    if (pid) {
        fprintf(pid, "%d\n", (int)getpid());
        fclose(pid);
    }
    fprintf(stderr, "nginx: serving HTTP on port %d\n", port);
    static const char body[] =
        "<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head>\n"
        "<body><h1>Welcome to nginx!</h1></body></html>\n";
    char head[256];
    int head_len = snprintf(head, sizeof head,
                            "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/html\r\n"
                            "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                            sizeof body - 1);
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0) continue;
        char request[4096];
        ssize_t n = read(c, request, sizeof request); /* the request line is enough */
        (void)n;
        if (write(c, head, (size_t)head_len) == head_len) {
            ssize_t w = write(c, body, sizeof body - 1);
            (void)w;
        }
        close(c);
    }
}
