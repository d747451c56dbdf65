/*
 * Addresses and CIDRs of the edge rules' client_ip matchers and lists, as
 * 128-bit numbers: IPv4 is kept as the IPv4-mapped IPv6 address, so one
 * sorted array of ranges serves both families (cfg/rules.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg/rules.h"
#include "cfg/schema.h"

/* Longest text of an address: a full IPv6 address with an embedded IPv4 one. */
#define IP_TEXT_MAX 46

static struct cfg_ip ip_from_bytes(const unsigned char b[16])
{
    struct cfg_ip ip = {0, 0};

    for (int i = 0; i < 8; i++) {
        ip.hi = ip.hi << 8 | b[i];
        ip.lo = ip.lo << 8 | b[8 + i];
    }
    return ip;
}

/* 0 and the family (4 or 6) in *ret_fam, or -EINVAL. */
static int ip_parse_fam(const char *s, size_t n, struct cfg_ip *ret, int *ret_fam)
{
    char buf[IP_TEXT_MAX + 1];
    unsigned char b[16] = {0};

    if (n == 0 || n > IP_TEXT_MAX || memchr(s, '\0', n))
        return -EINVAL;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (inet_pton(AF_INET, buf, b + 12) == 1) {
        b[10] = b[11] = 0xff;
        *ret_fam = 4;
    } else if (inet_pton(AF_INET6, buf, b) == 1) {
        *ret_fam = 6;
    } else {
        return -EINVAL;
    }
    *ret = ip_from_bytes(b);
    return 0;
}

int cfg_ip_parse(const char *s, size_t n, struct cfg_ip *ret)
{
    struct cfg_ip ip;
    int fam;

    if (ip_parse_fam(s, n, &ip, &fam) < 0)
        return -EINVAL;
    *ret = ip;
    return 0;
}

static int ip_cmp(const struct cfg_ip *a, const struct cfg_ip *b)
{
    if (a->hi != b->hi)
        return a->hi < b->hi ? -1 : 1;
    return a->lo < b->lo ? -1 : a->lo > b->lo;
}

int cfg_ipset_has(const struct cfg_ipset *s, const struct cfg_ip *ip)
{
    size_t lo = 0, hi = s ? s->n : 0;

    /* The last range starting at or before ip is the only candidate. */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (ip_cmp(&s->v[mid].first, ip) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo > 0 && ip_cmp(ip, &s->v[lo - 1].last) <= 0;
}

/* The host mask of a prefix of bits (0..128): the bits below the prefix set. */
static struct cfg_ip host_mask(unsigned bits)
{
    struct cfg_ip m;

    m.hi = bits >= 64 ? 0 : bits == 0 ? UINT64_MAX : UINT64_MAX >> bits;
    m.lo = bits >= 128 ? 0 : bits <= 64 ? UINT64_MAX : UINT64_MAX >> (bits - 64);
    return m;
}

static void ip_text(const struct cfg_ip *ip, int fam, char *out, size_t cap)
{
    unsigned char b[16];

    for (int i = 0; i < 8; i++) {
        b[i] = (unsigned char)(ip->hi >> (56 - 8 * i));
        b[8 + i] = (unsigned char)(ip->lo >> (56 - 8 * i));
    }
    if (!inet_ntop(fam == 4 ? AF_INET : AF_INET6, fam == 4 ? b + 12 : b, out, (socklen_t)cap))
        (void)snprintf(out, cap, "?");
}

int cfg_cidr_parse(const char *s, size_t n, struct cfg_iprange *ret, char *why, size_t cap)
{
    const char *slash = memchr(s, '/', n);
    size_t alen = slash ? (size_t)(slash - s) : n;
    unsigned bits = 0, max;
    struct cfg_ip ip, mask;
    int fam;

    if (ip_parse_fam(s, alen, &ip, &fam) < 0)
        goto bad;
    max = fam == 4 ? 32 : 128;
    if (slash) {
        const char *p = slash + 1, *end = s + n;

        /* Decimal, no sign, no leading zero. */
        if (p == end || end - p > 3 || (*p == '0' && end - p > 1))
            goto bad;
        for (; p < end; p++) {
            if (*p < '0' || *p > '9')
                goto bad;
            bits = bits * 10 + (unsigned)(*p - '0');
        }
        if (bits > max)
            goto bad;
    } else {
        bits = max;
    }
    mask = host_mask(fam == 4 ? 96 + bits : bits);
    if ((ip.hi & mask.hi) || (ip.lo & mask.lo)) {
        struct cfg_ip net = {ip.hi & ~mask.hi, ip.lo & ~mask.lo};
        char text[IP_TEXT_MAX + 1];

        ip_text(&net, fam, text, sizeof(text));
        (void)snprintf(why, cap, "%.*s: host bits set; did you mean %s/%u?", (int)n, s, text, bits);
        return -EINVAL;
    }
    ret->first = ip;
    ret->last = (struct cfg_ip){ip.hi | mask.hi, ip.lo | mask.lo};
    return 0;
bad:
    /* The caller shows the value itself, escaped: it may hold any byte. */
    (void)snprintf(why, cap, "is not an address or CIDR");
    return -EINVAL;
}

static int range_cmp(const void *a, const void *b)
{
    const struct cfg_iprange *x = a, *y = b;
    int c = ip_cmp(&x->first, &y->first);

    return c ? c : ip_cmp(&x->last, &y->last);
}

void cfg_ipset_build(struct cfg_ipset *set, struct cfg_iprange *v, size_t n)
{
    size_t out = 0;

    if (n)
        qsort(v, n, sizeof(*v), range_cmp);
    for (size_t i = 0; i < n; i++) {
        struct cfg_iprange *last = out ? &v[out - 1] : NULL;
        struct cfg_ip next = last ? last->last : (struct cfg_ip){0, 0};

        /* next = last->last + 1, so that adjacent ranges merge too. */
        if (last && ++next.lo == 0)
            next.hi++;
        if (last && (ip_cmp(&v[i].first, &next) <= 0 ||
                     (last->last.hi == UINT64_MAX && last->last.lo == UINT64_MAX))) {
            if (ip_cmp(&v[i].last, &last->last) > 0)
                last->last = v[i].last;
        } else {
            v[out++] = v[i];
        }
    }
    set->v = v;
    set->n = out;
}
