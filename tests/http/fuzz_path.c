/*
 * libFuzzer harness for cfg_path_normalise() (cfg/path.c), which every
 * request meeting edge rules goes through and which decides what a path
 * rule sees: a bypass is a path the rules and the origin read differently.
 * The input is a path as a client could send it (with a '/' put in front
 * when it has none). Invariants beyond "no crash, no UB":
 *   - it agrees with a plain two-pass reference (decode everything, then
 *     RFC 3986 5.2.4 over a stack of segments): same failure, same bytes;
 *   - a result starts with '/', is at most n bytes, has no empty, "." or
 *     ".." segment (so no "//"), and no NUL;
 *   - less room than the result needs fails without writing past it (each
 *     output is its own exact-size heap block);
 *   - a result without '%' is its own normal form.
 * tests/http/meson.build runs it over corpus-path/ with any compiler too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cfg/rules.h"

static int hexv(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The reference: slow and obvious. Returns the length, or -1. */
static long reference(const unsigned char *p, size_t n, char *out)
{
    char *dec = malloc(n + 1);
    size_t dn = 0, w = 0;
    size_t *starts = malloc((n + 1) * sizeof(size_t)), depth = 0;

    if (!dec || !starts)
        abort();
    if (!n || p[0] != '/')
        goto fail;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];

        if (c == '%') {
            if (i + 2 >= n || hexv(p[i + 1]) < 0 || hexv(p[i + 2]) < 0)
                goto fail;
            c = (unsigned char)(hexv(p[i + 1]) * 16 + hexv(p[i + 2]));
            i += 2;
        }
        if (!c)
            goto fail;
        dec[dn++] = (char)c;
    }
    /* segments between '/'; the output is '/' + the kept ones joined by '/' */
    out[w++] = '/';
    for (size_t i = 1; i <= dn;) {
        size_t j = i;

        while (j < dn && dec[j] != '/')
            j++;
        size_t len = j - i;
        int last = j >= dn;

        if (len == 2 && dec[i] == '.' && dec[i + 1] == '.') {
            if (!depth)
                goto fail;
            w = starts[--depth];
        } else if (len && !(len == 1 && dec[i] == '.')) {
            starts[depth++] = w;
            memcpy(out + w, dec + i, len);
            w += len;
            if (!last)
                out[w++] = '/';
        }
        i = j + 1;
    }
    free(dec);
    free(starts);
    return (long)w;
fail:
    free(dec);
    free(starts);
    return -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t n = size + 1;
    char *in = malloc(n), *out = malloc(n), *ref = malloc(n), *again;
    long r, rr;

    if (!in || !out || !ref)
        abort();
    /* most inputs should be paths: a '/' first unless the input starts with one */
    if (size && data[0] == '/') {
        n = size;
        memcpy(in, data, size);
    } else {
        in[0] = '/';
        memcpy(in + 1, data, size);
    }
    r = cfg_path_normalise(in, n, out, n);
    rr = reference((const unsigned char *)in, n, ref);
    if (r != rr || (r > 0 && memcmp(out, ref, (size_t)r)))
        abort();
    if (r >= 0) {
        if (r < 1 || (size_t)r > n || out[0] != '/' || memchr(out, 0, (size_t)r))
            abort();
        for (long i = 0; i < r; i++) {
            if (out[i] != '/')
                continue;
            /* the segment after this '/' */
            long j = i + 1;
            while (j < r && out[j] != '/')
                j++;
            long len = j - i - 1;
            if ((len == 0 && j < r) || (len == 1 && out[i + 1] == '.') ||
                (len == 2 && out[i + 1] == '.' && out[i + 2] == '.'))
                abort();
        }
        /* one byte less room than the result: fails, writes nothing past it */
        if (r > 1) {
            char *small = malloc((size_t)r - 1);

            if (!small || cfg_path_normalise(in, n, small, (size_t)r - 1) != -1)
                abort();
            free(small);
        }
        if (!memchr(out, '%', (size_t)r)) {
            again = malloc((size_t)r);
            if (!again || cfg_path_normalise(out, (size_t)r, again, (size_t)r) != r ||
                memcmp(again, out, (size_t)r))
                abort();
            free(again);
        }
    }
    /*
     * The request form (cfg_path_normalise_request) refuses more, never
     * less, and where it takes a path it gives the same result; a path
     * without '.', '\\', "%2e", "%5c" takes the same answer in both forms.
     */
    {
        char *out2 = malloc(n);
        long rq;
        int dots = 0;

        if (!out2)
            abort();
        rq = cfg_path_normalise_request(in, n, out2, n);
        if (rq >= 0 && (r != rq || memcmp(out2, out, (size_t)rq)))
            abort();
        for (size_t i = 0; i < n; i++)
            dots |= in[i] == '.' || in[i] == '\\' ||
                    (in[i] == '%' && i + 2 < n &&
                     ((in[i + 1] == '2' && (in[i + 2] | 0x20) == 'e') ||
                      (in[i + 1] == '5' && (in[i + 2] | 0x20) == 'c')));
        if (!dots && rq != r)
            abort();
        free(out2);
    }
    free(in);
    free(out);
    free(ref);
    return 0;
}
