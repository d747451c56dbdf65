/*
 * Views into bytes someone else owns: (pointer, length) pairs. A view is only
 * valid while its owner keeps the bytes (see the owner's comment).
 */
#ifndef RINGPROXY_CORE_STR_H
#define RINGPROXY_CORE_STR_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

struct core_str {
    const char *p; /* NULL means absent */
    size_t len;
};

struct core_hdr {
    struct core_str name;
    struct core_str value;
    uint16_t kind; /* what the parser classed the name as (http/msg.h: enum http_hk) */
    uint8_t hop;   /* named by a Connection field: hop-by-hop, never forwarded */
};

static inline int core_str_ieq(struct core_str s, const char *lit, size_t litlen)
{
    return s.len == litlen && strncasecmp(s.p, lit, litlen) == 0;
}

#define CORE_STR_IEQ(s, lit) core_str_ieq((s), (lit), sizeof(lit) - 1)

#endif
