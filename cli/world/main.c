/* sf-world: the embedded world's own command line (sheets, corpus, parse).
 *
 * It is a program of its own so that sfctl links neither the renderer nor
 * libpng: `sfctl world …` runs this binary from sfctl's own folder. */
#include "world/world.h"

int main(int argc, char **argv) { return sf_world_cli_main(argc, argv); }
