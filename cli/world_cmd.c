/* world_cmd.c: `sfctl world …` is the embedded world's own command line. */
#include "cli/sfctl.h"
#include "world/world.h"

int sfctl_world(int argc, char **argv) { return sf_world_cli_main(argc, argv); }
