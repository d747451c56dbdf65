#include "http/msg.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

enum scan_state {
    SC_START = 0, /* before the first line; blank lines are skipped by llhttp */
    SC_START_CR,
    SC_LINE,
    SC_CR,
    SC_LINE_START,
    SC_END_CR,
    /* must stay last */
    SC_COUNT
};

enum chunk_state {
    CS_SIZE = 0, /* hex digits of a chunk size */
    CS_SIZE_WS,  /* whitespace after the size: only before a ';' (BWS) */
    CS_EXT,      /* after the size: extensions up to CR */
    CS_SIZE_LF,
    CS_DATA,
    CS_DATA_CR,
    CS_DATA_LF,
    CS_TRAILER_START, /* start of a trailer line, or CR of the final CRLF */
    CS_TRAILER_NAME,
    CS_TRAILER_VALUE,
    CS_TRAILER_LF,
    CS_END_LF,
    /* must stay last */
    CS_COUNT
};

static int is_ctl(unsigned char c)
{
    return (c < 0x20 && c != '\t') || c == 0x7f;
}

#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

/*
 * Bit i set when p[i] is a control byte (TAB included) or DEL: the only bytes
 * that can end or break a head line. Sixteen at once with SSE2 (every x86-64
 * has it).
 */
static inline unsigned ctl_mask16(const char *p)
{
#ifdef __SSE2__
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i ctl = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);

    return (unsigned)_mm_movemask_epi8(_mm_or_si128(ctl, _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7f))));
#else
    unsigned m = 0;

    for (unsigned i = 0; i < 16; i++)
        m |= (unsigned)((unsigned char)p[i] < 0x20 || p[i] == 0x7f) << i;
    return m;
#endif
}

/*
 * The common case, inside a line: take plain bytes and line ends (CRLF and a
 * token byte, the first of the next field line) from the lim bytes at p
 * (lim >= 16), sixteen bytes a step; a TAB is plain. A line end followed by
 * CRLF ends the head: *ret_done is set, and what is returned includes it.
 * Stops before any other control byte, CR or DEL, and before a CRLF followed
 * by anything else, for the byte-wise machine to judge. *line_len (the
 * current line's bytes so far) and *lines follow what was taken. Returns the
 * bytes taken, or -414 / -431 when a line or the line count breaks its limit.
 */
static long scan_lines(const char *p, size_t lim, const struct http_limits *l, uint32_t *line_len,
                       uint32_t *lines, int *ret_done)
{
    ptrdiff_t start = -(ptrdiff_t)*line_len; /* where the current line began */
    uint32_t nl = *lines;
    const uint64_t max_lines = (uint64_t)l->max_lines + 1;
    const size_t max_line = l->max_line;
    size_t cap = nl ? max_line : l->max_first_line;
    size_t i = 0, stop = lim;
    int end = 0;

    while (i < lim) {
        /* The last step looks at the final 16 bytes, those before i masked off. */
        size_t at = lim - i >= 16 ? i : lim - 16;
        unsigned m = ctl_mask16(p + at) & (~0u << (i - at));

        i = at + 16;
        while (m) {
            size_t k = at + (size_t)__builtin_ctz(m);

            m &= m - 1;
            if (p[k] == '\t')
                continue;
            stop = k;
            if (lim - k < 3 || memcmp(p + k, "\r\n", 2) != 0)
                goto out;
            if (!http_tchar[(unsigned char)p[k + 2]]) {
                if (lim - k < 4 || memcmp(p + k + 2, "\r\n", 2) != 0)
                    goto out;
                end = 1;
            }
            if ((size_t)((ptrdiff_t)k - start) > cap)
                return nl ? -431 : -414;
            if (++nl > max_lines)
                return -431;
            if (end) {
                *line_len = (uint32_t)((ptrdiff_t)k - start);
                *lines = nl;
                *ret_done = 1;
                return (long)k + 4;
            }
            cap = max_line;
            start = (ptrdiff_t)k + 2;
            if (k + 3 >= at + 16) {
                /* The line end reaches past this step: go on after it. */
                i = k + 3;
                break;
            }
            m &= ~0u << (k + 3 - at); /* the LF and the token byte */
        }
        stop = lim;
    }
out:
    if ((size_t)((ptrdiff_t)stop - start) > cap)
        return nl ? -431 : -414;
    *line_len = (uint32_t)((ptrdiff_t)stop - start);
    *lines = nl;
    return (long)stop;
}

long http_scan(struct http_scan *s, const struct http_limits *l, const char *p, size_t n,
               int *ret_done)
{
    /*
     * The state lives in locals while scanning: p is a char pointer, so every
     * store through s could alias it and would force reloads. An error ends
     * the head, so only the ways out without one store it back.
     */
    uint32_t len = s->len, line_len = s->line_len, lines = s->lines;
    unsigned state = s->state;
    long ret = (long)n;
    size_t i;

    *ret_done = 0;
    for (i = 0; i < n; i++) {
        unsigned char c;

        if (state == SC_LINE) {
            /* len <= max_head here: take at most what the head limit leaves. */
            size_t lim = n - i < l->max_head - len ? n - i : l->max_head - len;

            if (lim >= 16) {
                long r = scan_lines(p + i, lim, l, &line_len, &lines, ret_done);

                if (r < 0)
                    return r;
                i += (size_t)r;
                len += (uint32_t)r;
                if (*ret_done) {
                    state = SC_END_CR;
                    ret = (long)i;
                    goto out;
                }
                if (i == n)
                    break;
            }
        }
        c = (unsigned char)p[i];
        if (++len > l->max_head)
            return lines == 0 && state == SC_LINE ? -414 : -431;
        switch (state) {
        case SC_START:
            if (c == '\r') {
                state = SC_START_CR;
                break;
            }
            if (c == '\n' || c == ' ' || c == '\t' || is_ctl(c))
                return -400;
            state = SC_LINE;
            line_len = 1;
            break;
        case SC_START_CR:
            /* At most a few empty lines before a message (RFC 9112 2.2). */
            if (c != '\n' || len > 8)
                return -400;
            state = SC_START;
            break;
        case SC_LINE:
            if (c == '\r') {
                state = SC_CR;
                break;
            }
            if (c == '\n' || is_ctl(c))
                return -400;
            if (++line_len > (lines ? l->max_line : l->max_first_line))
                return lines ? -431 : -414;
            break;
        case SC_CR:
            /* A CR must end a line: CVE-2023-30589 in llhttp 8.1.0. */
            if (c != '\n')
                return -400;
            if (++lines > l->max_lines + 1)
                return -431;
            state = SC_LINE_START;
            break;
        case SC_LINE_START:
            if (c == '\r') {
                state = SC_END_CR;
                break;
            }
            /* Leading whitespace is obs-fold (or a space before a field name). */
            if (c == ' ' || c == '\t' || c == '\n' || is_ctl(c))
                return -400;
            state = SC_LINE;
            line_len = 1;
            break;
        case SC_END_CR:
            if (c != '\n')
                return -400;
            *ret_done = 1;
            ret = (long)i + 1;
            goto out;
        default:
            return -400;
        }
    }
out:
    s->len = len;
    s->line_len = line_len;
    s->lines = (uint16_t)lines;
    s->state = (uint8_t)state;
    return ret;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    struct http_msg *m = p->data;

    m->target = (struct core_str){at, len};
    return 0;
}

static int on_method(llhttp_t *p, const char *at, size_t len)
{
    struct http_msg *m = p->data;

    m->method = (struct core_str){at, len};
    return 0;
}

static int on_status(llhttp_t *p, const char *at, size_t len)
{
    struct http_msg *m = p->data;

    m->reason = (struct core_str){at, len};
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct http_msg *m = p->data;
    struct core_hdr *h;
    enum http_hk k;

    if (m->nhdrs == m->max_hdrs) {
        m->too_many = 1;
        return -1;
    }
    h = &m->hdrs[m->nhdrs];
    h->name = (struct core_str){at, len};
    h->value = (struct core_str){at + len, 0};
    /* The head is one contiguous buffer, so this is the whole name. */
    k = http_hk_of(h->name);
    h->kind = (uint16_t)k;
    h->hop = 0;
    if (m->first[k] < 0)
        m->first[k] = (int16_t)m->nhdrs;
    if (m->count[k] < 255)
        m->count[k]++;
    m->nhdrs++;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct http_msg *m = p->data;

    m->hdrs[m->nhdrs - 1].value = (struct core_str){at, len};
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    struct http_msg *m = p->data;

    /*
     * llhttp 8.1.0 reads a body after 204/304 when Content-Length is present
     * and cannot know the request was HEAD: these responses have no body.
     */
    if (p->type == HTTP_RESPONSE &&
        (m->no_body || p->status_code < 200 || p->status_code == 204 || p->status_code == 304))
        return 1;
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct http_msg *m = p->data;

    m->complete = 1;
    /* Stop here so the caller learns where the message ends. */
    return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_url = on_url,
    .on_method = on_method,
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_message_complete = on_message_complete,
};

#define T1(c) [c] = 1
#define TRANGE10(c)                                                                                \
    T1(c), T1(c + 1), T1(c + 2), T1(c + 3), T1(c + 4), T1(c + 5), T1(c + 6), T1(c + 7), T1(c + 8), \
        T1(c + 9)
#define TLETTERS(c)                                                                                \
    TRANGE10(c), TRANGE10(c + 10), T1(c + 20), T1(c + 21), T1(c + 22), T1(c + 23), T1(c + 24),     \
        T1(c + 25)

const uint8_t http_tchar[256] = {
    TRANGE10('0'), TLETTERS('a'), TLETTERS('A'), T1('!'), T1('#'), T1('$'),
    T1('%'),       T1('&'),       T1('\''),      T1('*'), T1('+'), T1('-'),
    T1('.'),       T1('^'),       T1('_'),       T1('`'), T1('|'), T1('~'),
};

#undef TLETTERS
#undef TRANGE10
#undef T1

/*
 * A name against a literal of lower-case letters and '-', case-insensitively,
 * a word at a time: OR-ing 0x20 into a byte lowers A-Z and keeps '-'; the only
 * other byte it could map onto the literal's is CR (onto '-'), which never
 * reaches a field name or a Connection token.
 */
static inline int name_is(struct core_str n, const char *lit, size_t len)
{
    uint64_t a, b;
    size_t i;

    if (n.len != len)
        return 0;
    if (len < 8) {
        for (i = 0; i < len; i++)
            if (((unsigned char)n.p[i] | 0x20) != (unsigned char)lit[i])
                return 0;
        return 1;
    }
    for (i = 0; i + 8 < len; i += 8) {
        memcpy(&a, n.p + i, 8);
        memcpy(&b, lit + i, 8);
        if ((a | ONES * 0x20) != b)
            return 0;
    }
    memcpy(&a, n.p + len - 8, 8);
    memcpy(&b, lit + len - 8, 8);
    return (a | ONES * 0x20) == b;
}

/*
 * Is there a SP among the n bytes at p? A word at a time (Hacker's Delight
 * 6-1: a zero byte of v ^ SPs), the last word overlapping the one before.
 * Field names are the only use: llhttp 8.1.0 checks every other byte of
 * them against the token set, but lets SP through.
 */
static inline int has_space(const char *p, size_t n)
{
    uint64_t v;
    size_t i;

    if (n < 8) {
        for (i = 0; i < n; i++)
            if (p[i] == ' ')
                return 1;
        return 0;
    }
    for (i = 0;; i += 8) {
        if (i + 8 > n)
            i = n - 8;
        memcpy(&v, p + i, 8);
        v ^= ONES * ' ';
        if ((v - ONES) & ~v & HIGHS)
            return 1;
        if (i + 8 == n)
            return 0;
    }
}

#define IS(lit) name_is(n, lit, sizeof(lit) - 1)

/* Dispatch on length and first letter, so a name costs at most one compare. */
enum http_hk http_hk_of(struct core_str n)
{
    unsigned char c0;

    if (!n.len)
        return HK_OTHER;
    c0 = (unsigned char)n.p[0] | 0x20;
    switch (n.len) {
    case 2:
        return IS("te") ? HK_TE : HK_OTHER;
    case 4:
        return IS("host") ? HK_HOST : HK_OTHER;
    case 7:
        return c0 == 'r'   ? (IS("referer") ? HK_REFERER : HK_OTHER)
               : c0 == 'u' ? (IS("upgrade") ? HK_UPGRADE : HK_OTHER)
               : c0 == 't' ? (IS("trailer") ? HK_TRAILER : HK_OTHER)
                           : HK_OTHER;
    case 10:
        return c0 == 'c'   ? (IS("connection") ? HK_CONNECTION : HK_OTHER)
               : c0 == 'u' ? (IS("user-agent") ? HK_USER_AGENT : HK_OTHER)
               : c0 == 'k' ? (IS("keep-alive") ? HK_KEEP_ALIVE : HK_OTHER)
                           : HK_OTHER;
    case 12:
        return IS("content-type") ? HK_CONTENT_TYPE : HK_OTHER;
    case 13:
        return c0 == 's'   ? (IS("section-io-id") ? HK_SECTION_IO_ID : HK_OTHER)
               : c0 == 'a' ? (IS("authorization") ? HK_AUTHORIZATION : HK_OTHER)
                           : HK_OTHER;
    case 14:
        return c0 == 'c'   ? (IS("content-length") ? HK_CONTENT_LENGTH : HK_OTHER)
               : c0 == 's' ? (IS("section-io-tag") ? HK_SECTION_IO_TAG : HK_OTHER)
               : c0 == 't' ? (IS("true-client-ip") ? HK_TRUE_CLIENT_IP : HK_OTHER)
                           : HK_OTHER;
    case 15:
        return c0 == 'x' && IS("x-forwarded-for") ? HK_X_FORWARDED_FOR : HK_OTHER;
    case 16:
        return IS("proxy-connection") ? HK_PROXY_CONNECTION : HK_OTHER;
    case 17:
        return c0 == 't'   ? (IS("transfer-encoding") ? HK_TRANSFER_ENCODING : HK_OTHER)
               : c0 == 'x' ? (IS("x-forwarded-proto") ? HK_X_FORWARDED_PROTO : HK_OTHER)
                           : HK_OTHER;
    default:
        return HK_OTHER;
    }
}

#undef IS

/*
 * Fields that frame the request, are hop-by-hop, or that the platform sets
 * (C10), and that have a separator in their name: a request field of
 * another spelling that an origin reading any separator as '-' takes for
 * one of them (Transfer_Encoding, True.Client.IP, X~Forwarded~For: CGI's
 * HTTP_TRANSFER_ENCODING) could stand in for what the platform set, or
 * tell the application another framing than the one the body came with.
 * Defence in depth: many such servers now drop those spellings or prefer
 * the hyphenated one; not all do. Lengths ALIAS_MIN to ALIAS_MAX.
 */
static const struct core_str alias_targets[] = {
#define T(s)                                                                                       \
    {                                                                                              \
        s, sizeof(s) - 1                                                                           \
    }
    T("keep-alive"),        T("content-length"), T("proxy-connection"),
    T("transfer-encoding"), T("true-client-ip"), T("x-forwarded-for"),
    T("x-forwarded-proto"), T("section-io-id"),  T("section-io-tag"),
#undef T
};
#define ALIAS_MIN (sizeof("keep-alive") - 1)
#define ALIAS_MAX (sizeof("x-forwarded-proto") - 1)

/* Is n, not a known field itself, another spelling of one of alias_targets? */
static int separator_alias(struct core_str n)
{
    for (size_t k = 0; k < sizeof(alias_targets) / sizeof(alias_targets[0]); k++) {
        const char *t = alias_targets[k].p;
        unsigned other = 0;
        size_t i;

        if (alias_targets[k].len != n.len)
            continue;
        for (i = 0; i < n.len; i++) {
            char f = core_name_fold1((unsigned char)n.p[i]);

            if (f != t[i])
                break;
            other |= f == '-' && n.p[i] != '-';
        }
        if (i == n.len && other)
            return 1;
    }
    return 0;
}

int http_list_next(struct core_str v, size_t *i, struct core_str *ret)
{
    size_t b, e;

    for (;;) {
        while (*i < v.len && (v.p[*i] == ' ' || v.p[*i] == '\t' || v.p[*i] == ','))
            (*i)++;
        if (*i == v.len)
            return 0;
        b = *i;
        while (*i < v.len && v.p[*i] != ',')
            (*i)++;
        e = *i;
        while (e > b && (v.p[e - 1] == ' ' || v.p[e - 1] == '\t'))
            e--;
        if (e > b) {
            *ret = (struct core_str){v.p + b, e - b};
            return 1;
        }
    }
}

/*
 * Mark the fields each Connection option names as hop-by-hop (RFC 9110
 * 7.6.1), parsing every Connection value once: the cost is options x fields,
 * with options bounded, never fields x Connection bytes. Returns 0, or -400
 * when an option names a framing field or there are too many options.
 */
static int conn_options(struct http_msg *m)
{
    unsigned ntok = 0;

    for (uint16_t i = (uint16_t)m->first[HK_CONNECTION]; i < m->nhdrs; i++) {
        struct core_str t;
        size_t at = 0;

        if (m->hdrs[i].kind != HK_CONNECTION)
            continue;
        while (http_list_next(m->hdrs[i].value, &at, &t)) {
            if (++ntok > HTTP_MAX_CONN_TOKENS)
                return -400;
            enum http_hk kind = http_hk_of(t);

            /* a hop-by-hop framing field would let the body be read two ways */
            if (kind == HK_CONTENT_LENGTH || kind == HK_TRANSFER_ENCODING || kind == HK_HOST)
                return -400;
            /* the rules and the log go by the platform's: the origin keeps them */
            if (http_hk_platform(kind) && m->parser.type == HTTP_REQUEST)
                return -400;
            if (http_hk_hop_by_hop(kind) || CORE_STR_IEQ(t, "close"))
                continue; /* hop-by-hop anyway */
            for (uint16_t k = 0; k < m->nhdrs; k++)
                if (m->hdrs[k].name.len == t.len && !strncasecmp(m->hdrs[k].name.p, t.p, t.len))
                    m->hdrs[k].hop = 1;
        }
    }
    return 0;
}

static void msg_reset_fields(struct http_msg *m)
{
    m->method = m->target = m->reason = (struct core_str){0};
    m->nhdrs = 0;
    m->complete = 0;
    m->too_many = 0;
    m->ext_method = 0;
    /* set before llhttp runs: a head that fails half-way is still logged */
    memset(m->count, 0, sizeof(m->count));
    memset(m->first, 0xff, sizeof(m->first));
}

/*
 * Another spelling (case) of a method llhttp knows: "delete", "Connect".
 * Methods are case-sensitive (RFC 9110 9.1), so these would be extension
 * methods here, but frameworks that upper-case the method (Werkzeug,
 * Symfony) run them as DELETE or CONNECT: a rule's method matcher would be
 * bypassed. nginx refuses them too.
 */
static int known_method_respelt(const char *p, size_t n)
{
#define XX(num, name, string)                                                                      \
    if (n == sizeof(#string) - 1 && !strncasecmp(p, #string, n))                                   \
        return memcmp(p, #string, n) != 0;
    HTTP_ALL_METHOD_MAP(XX)
#undef XX
    return 0;
}

/*
 * llhttp 8.1.0 refuses methods it does not know (BREW, BAN, PURGE's
 * cousins), but an intermediary forwards any method token (RFC 9110 9.1).
 * For such a request, take the request line here (token SP target SP
 * HTTP/1.x CRLF) and let llhttp read the fields after a stand-in GET line
 * of the same version: llhttp frames request bodies alike for every method
 * but CONNECT. Returns llhttp's error for the fields, or HPE_USER.
 */
static llhttp_errno_t ext_request(struct http_msg *m, const char *p, size_t n)
{
    static const char line10[] = "GET / HTTP/1.0\r\n", line11[] = "GET / HTTP/1.1\r\n";
    size_t i = 0, ms, me, ts, te;
    const char *line;

    while (i + 1 < n && p[i] == '\r' && p[i + 1] == '\n')
        i += 2;
    ms = i;
    while (i < n && http_tchar[(unsigned char)p[i]])
        i++;
    if (i == ms || i >= n || p[i] != ' ')
        return HPE_USER;
    me = i++;
    if (known_method_respelt(p + ms, me - ms))
        return HPE_USER;
    ts = i;
    while (i < n && p[i] != ' ' && p[i] != '\r')
        i++;
    if (i == ts || i >= n || p[i] != ' ')
        return HPE_USER;
    te = i++;
    if (n - i < 10 || memcmp(p + i, "HTTP/1.", 7) != 0 || (p[i + 7] != '0' && p[i + 7] != '1') ||
        p[i + 8] != '\r' || p[i + 9] != '\n')
        return HPE_USER;
    line = p[i + 7] == '1' ? line11 : line10;
    i += 10;
    llhttp_init(&m->parser, HTTP_REQUEST, &settings);
    m->parser.data = m;
    msg_reset_fields(m);
    if (llhttp_execute(&m->parser, line, sizeof(line11) - 1) != HPE_OK)
        return HPE_USER;
    m->method = (struct core_str){p + ms, me - ms};
    m->target = (struct core_str){p + ts, te - ts};
    m->ext_method = 1;
    return llhttp_execute(&m->parser, p + i, n - i);
}

int http_msg_head(struct http_msg *m, llhttp_type_t type, const char *p, size_t n,
                  struct core_hdr *hdrs, uint16_t max_hdrs)
{
    llhttp_errno_t e;

    llhttp_init(&m->parser, type, &settings);
    m->parser.data = m;
    m->hdrs = hdrs;
    m->max_hdrs = max_hdrs;
    msg_reset_fields(m);
    e = llhttp_execute(&m->parser, p, n);
    if (e == HPE_INVALID_METHOD && type == HTTP_REQUEST)
        e = ext_request(m, p, n);
    if (e == HPE_PAUSED) {
        /* No body: the message ended with the head. */
        if (llhttp_get_error_pos(&m->parser) != p + n)
            return -400;
        llhttp_resume(&m->parser);
    } else if (e != HPE_OK) {
        return m->too_many ? -431 : -400;
    }
    m->remaining = 0;
    m->data_bytes = 0;
    m->cstate = CS_SIZE;
    m->cdigits = m->chex = 0;
    m->trailer_len = m->chunk_extra = 0;
    if (m->complete) {
        m->body = HB_NONE;
    } else if (m->parser.flags & F_CHUNKED) {
        m->body = HB_CHUNKED;
    } else if (m->parser.flags & F_CONTENT_LENGTH) {
        m->body = HB_LENGTH;
        m->remaining = m->parser.content_length;
    } else if (type == HTTP_RESPONSE) {
        m->body = HB_EOF;
    } else {
        return -400; /* llhttp ends a request without framing at its head */
    }
    for (uint16_t i = 0; i < m->nhdrs; i++) {
        const struct core_str *nm = &m->hdrs[i].name;

        /* llhttp 8.1.0 takes "Host : x" and "Ho st: x"; a space in a name is malformed. */
        if (!nm->len || has_space(nm->p, nm->len))
            return -400;
        /* Transfer_Encoding, True.Client.IP: a known field to some origins */
        if (type == HTTP_REQUEST && m->hdrs[i].kind == HK_OTHER &&
            nm->len - ALIAS_MIN <= ALIAS_MAX - ALIAS_MIN && separator_alias(*nm))
            return -400;
        /* llhttp 8.1.0 ignores an empty Transfer-Encoding, even next to a Content-Length */
        if (m->hdrs[i].kind == HK_TRANSFER_ENCODING && !m->hdrs[i].value.len)
            return -400;
    }
    if (m->count[HK_CONNECTION] && conn_options(m) < 0)
        return -400;
    /* llhttp 8.1.0 lets a TAB through in the target: no whitespace or control byte (RFC 9112 3.2)
     */
    for (size_t i = 0; i < m->target.len; i++)
        if ((unsigned char)m->target.p[i] <= ' ' || m->target.p[i] == 0x7f)
            return -400;
    /* One framing only (RFC 9112 6.3): llhttp misses this when the coding list was empty */
    if (m->count[HK_TRANSFER_ENCODING] && m->count[HK_CONTENT_LENGTH])
        return -400;
    return 0;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/*
 * A request trailer field (name folded: any case, any separator) that RFC
 * 9110 6.5.1 keeps out of trailers and that an origin merging trailers into
 * the header section (Apache's MergeTrailers, CVE-2013-5704) would take for
 * the head's: framing, routing, hop-by-hop fields, credentials, and those
 * the platform sets (C10). The head's checks never saw it; the request is refused.
 */
static int trailer_refused(const char *folded, size_t len)
{
    enum http_hk k = http_hk_of((struct core_str){folded, len});

    return http_hk_hop_by_hop(k) || http_hk_platform(k) || k == HK_HOST ||
           k == HK_TRANSFER_ENCODING || k == HK_CONTENT_LENGTH ||
           k == HK_AUTHORIZATION; /* basic_auth went by the head's */
}

/* RFC 9112 7.1, strictly: every line ends in CRLF, no obs-fold, no control bytes. */
static int chunked_walk(struct http_msg *m, const char *p, size_t n, size_t *ret_used)
{
    size_t i = 0;

    while (i < n) {
        unsigned char c = (unsigned char)p[i];
        unsigned st = m->cstate;
        int h;

        switch (st) {
        case CS_SIZE:
            h = hexval(c);
            if (h >= 0) {
                /*
                 * Any number of digits (RFC 9112 7.1); the value is bounded:
                 * 15 significant hex digits are 2^60, far beyond any body.
                 */
                m->chex = 1;
                if ((m->remaining || h) && ++m->cdigits > 15)
                    return -1;
                m->remaining = m->remaining * 16 + (uint64_t)h;
                i++;
                break;
            }
            if (!m->chex)
                return -1;
            if (c == '\r') {
                m->cstate = CS_SIZE_LF;
            } else if (c == ';') {
                m->cstate = CS_EXT;
            } else if (c == ' ' || c == '\t') {
                m->cstate = CS_SIZE_WS;
            } else {
                return -1;
            }
            i++;
            break;
        case CS_SIZE_WS:
            if (c == ';')
                m->cstate = CS_EXT;
            else if (c != ' ' && c != '\t')
                return -1;
            i++;
            break;
        case CS_EXT:
            if (c == '\r')
                m->cstate = CS_SIZE_LF;
            else if (is_ctl(c))
                return -1;
            i++;
            break;
        case CS_SIZE_LF:
            if (c != '\n')
                return -1;
            i++;
            m->cdigits = m->chex = 0;
            m->cstate = m->remaining ? CS_DATA : CS_TRAILER_START;
            break;
        case CS_DATA: {
            size_t k = n - i < m->remaining ? n - i : (size_t)m->remaining;

            if (m->on_body)
                m->on_body(m->ctx, p + i, k);
            m->data_bytes += k;
            m->remaining -= k;
            i += k;
            if (!m->remaining)
                m->cstate = CS_DATA_CR;
            break;
        }
        case CS_DATA_CR:
            if (c != '\r')
                return -1;
            m->cstate = CS_DATA_LF;
            i++;
            break;
        case CS_DATA_LF:
            if (c != '\n')
                return -1;
            m->cstate = CS_SIZE;
            i++;
            break;
        case CS_TRAILER_START:
            if (c == '\r') {
                m->cstate = CS_END_LF;
            } else if (http_is_tchar(c)) {
                m->cstate = CS_TRAILER_NAME;
                m->tname[0] = core_name_fold1(c);
                m->tname_len = 1;
            } else {
                return -1; /* obs-fold, whitespace before a name, bare LF */
            }
            i++;
            break;
        case CS_TRAILER_NAME:
            if (c == ':') {
                if (m->parser.type == HTTP_REQUEST && m->tname_len <= sizeof(m->tname) &&
                    trailer_refused(m->tname, m->tname_len))
                    return -1;
                m->cstate = CS_TRAILER_VALUE;
            } else if (!http_is_tchar(c)) {
                return -1;
            } else if (m->tname_len < sizeof(m->tname)) {
                m->tname[m->tname_len++] = core_name_fold1(c);
            } else {
                m->tname_len = sizeof(m->tname) + 1; /* longer than any name checked */
            }
            i++;
            break;
        case CS_TRAILER_VALUE:
            if (c == '\r')
                m->cstate = CS_TRAILER_LF;
            else if (is_ctl(c))
                return -1;
            i++;
            break;
        case CS_TRAILER_LF:
            if (c != '\n')
                return -1;
            m->cstate = CS_TRAILER_START;
            i++;
            break;
        case CS_END_LF:
            if (c != '\n')
                return -1;
            *ret_used = i + 1;
            m->complete = 1;
            return 1;
        default:
            return -1;
        }
        if (m->cstate >= CS_TRAILER_START && ++m->trailer_len > HTTP_MAX_TRAILER)
            return -1;
        if (st <= CS_EXT && (st != CS_SIZE || (h == 0 && !m->remaining)) &&
            ++m->chunk_extra > HTTP_MAX_CHUNK_EXTRA)
            return -1;
    }
    *ret_used = n;
    return 0;
}

int http_msg_body(struct http_msg *m, const char *p, size_t n, size_t *ret_used)
{
    switch (m->body) {
    case HB_NONE:
        *ret_used = 0;
        return 1;
    case HB_LENGTH:
        if (n < m->remaining) {
            m->data_bytes += n;
            m->remaining -= n;
            *ret_used = n;
            if (m->on_body)
                m->on_body(m->ctx, p, n);
            return 0;
        }
        *ret_used = (size_t)m->remaining;
        m->data_bytes += *ret_used;
        if (m->on_body)
            m->on_body(m->ctx, p, *ret_used);
        m->remaining = 0;
        m->complete = 1;
        return 1;
    case HB_CHUNKED:
        return chunked_walk(m, p, n, ret_used);
    case HB_EOF:
        *ret_used = n;
        m->data_bytes += n;
        if (m->on_body)
            m->on_body(m->ctx, p, n);
        return 0;
    default:
        return -1;
    }
}

int http_msg_eof(struct http_msg *m)
{
    if (m->body != HB_EOF)
        return -1;
    m->complete = 1;
    return 1;
}

struct core_str http_msg_get(const struct http_msg *m, const char *name, size_t len)
{
    for (uint16_t i = 0; i < m->nhdrs; i++)
        if (core_str_ieq(m->hdrs[i].name, name, len))
            return m->hdrs[i].value;
    return (struct core_str){0};
}

unsigned http_msg_count(const struct http_msg *m, const char *name, size_t len)
{
    unsigned c = 0;

    for (uint16_t i = 0; i < m->nhdrs; i++)
        c += core_str_ieq(m->hdrs[i].name, name, len);
    return c;
}

int http_token_in(struct core_str v, const char *tok, size_t len)
{
    struct core_str t;
    size_t i = 0;

    while (http_list_next(v, &i, &t))
        if (t.len == len && strncasecmp(t.p, tok, len) == 0)
            return 1;
    return 0;
}
