/*
 * hello.c: a native Cella `libos` function. It reads the input slot `name` and writes
 * "hello, <first line of name>!\n" to the output slot `greeting`; the greeting word can
 * be changed with the task argument `word` (given as `--word=...` on the command line and
 * as the environment variable CELLA_ARG_word).
 *
 * Build it static, so that it runs on the built-in `native` image (no library needed):
 *
 *     gcc -static -O2 -o hello examples/libos/hello.c
 *
 * (a dynamic build needs an image of its libraries: cella image build native --binary hello).
 * Register and run (see docs/writing-functions.md):
 *
 *     cella function register --name hello --executor libos --runtime native \
 *         --payload hello --arg word=hello --input name --output greeting --public
 *     cella task create --function <function-id> --input name=alice --output greeting=alice
 *     cella task assign <task-id> --input name=<file-id> --output greeting=<file-id>
 *     cella task approve <task-id>; cella task invoke <task-id>
 *
 * The input is read from $CELLA_INPUT_DIR/name and the output written to
 * $CELLA_OUTPUT_DIR/greeting, defaulting to /cella/inputs and /cella/outputs. Any failure
 * exits non-zero with a message on stderr: the task then fails with that message.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *dir(const char *var, const char *fallback) {
    const char *v = getenv(var);
    return (v && *v) ? v : fallback;
}

int main(int argc, char **argv) {
    const char *word = "hello";
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--word=", 7) == 0) {
            word = argv[i] + 7;
        }
    }
    char in_path[4096], out_path[4096];
    snprintf(in_path, sizeof in_path, "%s/name", dir("CELLA_INPUT_DIR", "/cella/inputs"));
    snprintf(out_path, sizeof out_path, "%s/greeting",
             dir("CELLA_OUTPUT_DIR", "/cella/outputs"));

    FILE *in = fopen(in_path, "r");
    if (!in) {
        fprintf(stderr, "cannot open input name: %s\n", strerror(errno));
        return 1;
    }
    char name[256];
    if (!fgets(name, sizeof name, in)) {
        name[0] = '\0';
    }
    fclose(in);
    name[strcspn(name, "\r\n")] = '\0';
    if (name[0] == '\0') {
        fprintf(stderr, "input name is empty\n");
        return 1;
    }

    FILE *out = fopen(out_path, "w");
    if (!out) {
        fprintf(stderr, "cannot create output greeting: %s\n", strerror(errno));
        return 1;
    }
    fprintf(out, "%s, %s!\n", word, name);
    if (fclose(out) != 0) {
        fprintf(stderr, "cannot write output greeting: %s\n", strerror(errno));
        return 1;
    }
    printf("greeted one name\n");
    return 0;
}
