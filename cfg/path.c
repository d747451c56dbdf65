/*
 * cfg_path_normalise(): the one form in which request paths, rule paths and
 * redirect-map keys are compared (cfg/rules.h, docs/rules.md). It runs for
 * every request that meets edge rules, so it is a single pass over the
 * input that decodes and resolves segments at once, writing only to out.
 */
#include <string.h>

#include "cfg/rules.h"

static inline int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/*
 * The segment out[seg..w) has just ended (at a '/' or at the end): resolve
 * "." and ".." (RFC 3986 5.2.4) and empty segments ("//"). Returns the new
 * write position (which is also where the next segment starts, after the
 * caller writes its '/'), or -1 for a ".." above the root. *ret_keep tells
 * whether the caller writes a '/' for the segment that follows.
 */
static inline long end_segment(char *out, size_t seg, size_t w, int *ret_keep, int request)
{
    size_t len = w - seg;

    *ret_keep = 0;
    if (request && len && out[seg] == '.') {
        /* "." or "..", also before a ';' parameter ("/..;/": Tomcat's "/../") */
        const char *semi = memchr(out + seg, ';', len);
        size_t name = semi ? (size_t)(semi - (out + seg)) : len;

        if (name == 1 || (name == 2 && out[seg + 1] == '.'))
            return -1;
    }
    if (len == 0) /* "//": merged into one */
        return (long)w;
    if (len == 1 && out[seg] == '.') /* "/./": gone, the '/' before it stays */
        return (long)seg;
    if (len == 2 && out[seg] == '.' && out[seg + 1] == '.') {
        /* "/a/../": back to after the '/' before "a"; the root has no parent */
        if (seg == 1)
            return -1;
        w = seg - 1; /* the '/' before ".." */
        while (out[w - 1] != '/')
            w--;
        return (long)w;
    }
    *ret_keep = 1;
    return (long)w;
}

static inline long normalise(const char *p, size_t n, char *out, size_t cap, int request)
{
    const unsigned char *s = (const unsigned char *)p;
    size_t i = 1, w = 1, seg = 1;
    int keep;
    long r;

    if (!n || s[0] != '/' || !cap)
        return -1;
    out[0] = '/';
    while (i < n) {
        unsigned char c = s[i++];

        if (c == '%') {
            int hi, lo;

            /* one decoding only: "%252e" is "%2e", which stays as it is */
            if (i + 2 > n || (hi = hexval(s[i])) < 0 || (lo = hexval(s[i + 1])) < 0)
                return -1;
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        }
        if (c == '\0') /* an encoded NUL (or a raw one, which the parser never lets through) */
            return -1;
        if (c == '\\' && request) /* "%5c": a separator to IIS and Windows file serving */
            return -1;
        if (c == '/') {
            /* an encoded '/' separates segments like any other: "/admin%2fx" is "/admin/x" */
            if ((r = end_segment(out, seg, w, &keep, request)) < 0)
                return -1;
            w = (size_t)r;
            if (keep) {
                if (w >= cap)
                    return -1;
                out[w++] = '/';
            }
            seg = w;
            continue;
        }
        if (w >= cap)
            return -1;
        out[w++] = (char)c;
    }
    /* the last segment: "/a/." is "/a/", "/a/.." is "/", a trailing '/' stays */
    if ((r = end_segment(out, seg, w, &keep, request)) < 0)
        return -1;
    return r;
}

long cfg_path_normalise(const char *p, size_t n, char *out, size_t cap)
{
    return normalise(p, n, out, cap, 0);
}

long cfg_path_normalise_request(const char *p, size_t n, char *out, size_t cap)
{
    return normalise(p, n, out, cap, 1);
}
