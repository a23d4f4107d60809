/* critest's nonewprivs image: installed setuid root, it prints the
 * effective uid it runs with, which stays the caller's when the container
 * has no_new_privs. Built static by crated-testimages. */
#include <stdio.h>
#include <unistd.h>

int main(void) {
    printf("Effective uid: %d\n", (int)geteuid());
    return 0;
}
