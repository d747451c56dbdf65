/*
 * libFuzzer harness for cfg_load_buf(): any bytes must give either a config
 * or at least one problem line, never a crash, a leak or undefined
 * behaviour. Also checks the invariants the validator relies on: one ASCII
 * line per problem, and an accepted config that dumps, reloads and
 * validates to the same thing.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cfg/cfg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_lines(const struct cfg_errs *e)
{
    for (size_t i = 0; i < e->n; i++) {
        const unsigned char *p = (const unsigned char *)e->lines[i];

        if (!*p)
            abort();
        for (; *p; p++) {
            if (*p < 0x20 || *p > 0x7e)
                abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cfg *c = NULL, *c2 = NULL;
    struct cfg_errs e;
    char *dump, *dump2;
    int rc = cfg_load_buf((const char *)data, size, "proxy.json", &c, &e);

    check_lines(&e);
    if (rc == -EINVAL && e.n == 0)
        abort();
    cfg_errs_free(&e);
    if (rc < 0)
        return 0;
    if (cfg_validate(c, &e) != 0)
        abort();
    dump = cfg_dump(c);
    if (!dump || cfg_load_buf(dump, strlen(dump), "dump", &c2, &e) != 0)
        abort();
    dump2 = cfg_dump(c2);
    if (!dump2 || strcmp(dump, dump2) != 0)
        abort();
    free(dump);
    free(dump2);
    cfg_free(c);
    cfg_free(c2);
    return 0;
}
