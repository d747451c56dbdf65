/*
 * cfg-docgen DOCS.md SCHEMA.json: rewrites the generated sections of
 * docs/config.md and the whole of cfg/proxy.schema.json from the schema
 * table (run by `meson compile -C build cfg-docs`). The cfg test checks that
 * the checked-in files equal what this writes.
 */
#include "tests/cfg/docgen.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cfg/schema.h"

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;

    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        buf = malloc((size_t)n + 1);
        if (buf && fread(buf, 1, (size_t)n, f) == (size_t)n)
            buf[n] = '\0';
        else {
            free(buf);
            buf = NULL;
        }
    }
    (void)fclose(f);
    return buf;
}

static int spit(const char *path, const char *s)
{
    FILE *f = fopen(path, "wb");

    if (!f)
        return -errno;
    if (fputs(s, f) < 0) {
        (void)fclose(f);
        return -EIO;
    }
    return fclose(f) == 0 ? 0 : -errno;
}

/* doc with the section between the markers of name replaced by body. */
static char *splice(const char *doc, const char *name, const char *body)
{
    const char *start, *end;
    char *out = NULL;

    if (docgen_section(doc, name, &start, &end) < 0)
        return NULL;
    if (asprintf(&out, "%.*s%s%s", (int)(start - doc), doc, body, end) < 0)
        return NULL;
    return out;
}

int main(int argc, char **argv)
{
    char *doc = NULL, *keys = NULL, *example = NULL, *t1 = NULL, *t2 = NULL, *schema_txt = NULL;
    json_t *schema = NULL;
    int rc = 1;

    if (argc != 3) {
        fprintf(stderr, "usage: %s DOCS.md SCHEMA.json\n", argv[0]);
        return 2;
    }
    doc = slurp(argv[1]);
    keys = cfg_schema_markdown();
    example = docgen_example_block();
    schema = cfg_schema_json();
    if (!doc || !keys || !example || !schema) {
        fprintf(stderr, "%s: cannot read %s or out of memory\n", argv[0], argv[1]);
        goto fail;
    }
    t1 = splice(doc, "keys", keys);
    t2 = t1 ? splice(t1, "example", example) : NULL;
    schema_txt = docgen_schema_text(schema);
    if (!t2 || !schema_txt) {
        fprintf(stderr, "%s: %s lacks the <!-- BEGIN/END GENERATED keys|example --> markers\n",
                argv[0], argv[1]);
        goto fail;
    }
    if (spit(argv[1], t2) < 0 || spit(argv[2], schema_txt) < 0) {
        fprintf(stderr, "%s: cannot write\n", argv[0]);
        goto fail;
    }
    rc = 0;
fail:
    free(doc);
    free(keys);
    free(example);
    free(t1);
    free(t2);
    free(schema_txt);
    json_decref(schema);
    return rc;
}
