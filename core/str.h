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

/*
 * A field name's byte as origins that build variable names from field
 * names read it (CGI's HTTP_X_FORWARDED_FOR; PHP, lighttpd, older Puma and
 * gunicorn): letters in one case, digits as they are, and every other byte
 * ('-', '_', '.', '~', ...) one and the same separator, '-'.
 */
static inline char core_name_fold1(unsigned char c)
{
    /* clang-format off */
    static const char fold[256] = {
        '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', /* 0x00 */
        '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', /* 0x10 */
        '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', /* 0x20 */
        '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '-', '-', '-', '-', '-', '-', /* 0x30 */
        '-', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', /* 0x40 */
        'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', '-', '-', '-', '-', '-', /* 0x50 */
        '-', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', /* 0x60 */
        'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', '-', '-', '-', '-', '-', /* 0x70 */
        [0x80 ... 0xff] = '-',
    };
    /* clang-format on */

    return fold[c];
}

/* n bytes of name folded into dst (core_name_fold1). */
static inline void core_name_fold(char *dst, const char *name, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = core_name_fold1((unsigned char)name[i]);
}

/* Do two field names read as one at such an origin? */
static inline int core_name_fold_eq(struct core_str a, const char *b, size_t blen)
{
    if (a.len != blen)
        return 0;
    for (size_t i = 0; i < blen; i++)
        if (core_name_fold1((unsigned char)a.p[i]) != core_name_fold1((unsigned char)b[i]))
            return 0;
    return 1;
}

#endif
