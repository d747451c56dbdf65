#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cfg/schema.h"
#include "tests/cfg/docgen.h"

int docgen_section(const char *doc, const char *name, const char **ret_start, const char **ret_end)
{
    char begin[128], end[128];
    const char *b, *e;

    (void)snprintf(begin, sizeof(begin), "<!-- BEGIN GENERATED %s", name);
    (void)snprintf(end, sizeof(end), "<!-- END GENERATED %s -->", name);
    /* The name ends at ':', ' ' or the end of the comment ("keys" is not "keys2"). */
    for (b = strstr(doc, begin); b && !strchr(": -", b[strlen(begin)]);)
        b = strstr(b + 1, begin);
    if (!b || !(b = strchr(b, '\n')))
        return -ENOENT;
    e = strstr(++b, end);
    if (!e)
        return -ENOENT;
    *ret_start = b;
    *ret_end = e;
    return 0;
}

char *docgen_example_block(void)
{
    char *ex = cfg_schema_example(), *out = NULL;

    if (ex && asprintf(&out, "```json\n%s```\n", ex) < 0)
        out = NULL;
    free(ex);
    return out;
}

char *docgen_schema_text(const json_t *schema)
{
    char *s = json_dumps(schema, JSON_INDENT(2)), *out = NULL;

    if (s && asprintf(&out, "%s\n", s) < 0)
        out = NULL;
    free(s);
    return out;
}
