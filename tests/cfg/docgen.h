/*
 * Shared by the documentation generator (docgen.c) and the cfg test: where
 * the generated sections of docs/config.md are, and what they hold.
 */
#ifndef RINGPROXY_TESTS_CFG_DOCGEN_H
#define RINGPROXY_TESTS_CFG_DOCGEN_H

#include <jansson.h>

/*
 * Finds the text between "<!-- BEGIN GENERATED name: ... -->\n" and
 * "<!-- END GENERATED name -->" in doc. Returns 0 with *ret_start at the
 * first byte after the BEGIN line and *ret_end at the END marker, or -ENOENT.
 */
int docgen_section(const char *doc, const char *name, const char **ret_start, const char **ret_end);

/* The example section: the defaults as a fenced json block. NULL on OOM; free() it. */
char *docgen_example_block(void);

/* cfg/proxy.schema.json's text for schema, ending in a newline. NULL on OOM; free() it. */
char *docgen_schema_text(const json_t *schema);

#endif
