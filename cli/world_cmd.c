/* world_cmd.c: `sfctl world …` runs sf-world (cli/world/main.c) from the
 * folder sfctl itself is in, with the same arguments.  sfctl stays free of
 * the renderer and of libpng; what the user types and sees is unchanged. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/sfctl.h"

int sfctl_world(int argc, char **argv) {
    (void)argc;
    char dir[PATH_MAX], exe[PATH_MAX + 16];
    sfctl_bin_dir(dir, sizeof dir);
    snprintf(exe, sizeof exe, "%s/sf-world", dir);
    execv(exe, argv);
    fprintf(stderr, "sfctl world: cannot run %s: %s (it is built beside sfctl by make)\n", exe, strerror(errno));
    return SFCTL_EXIT_FAIL;
}
