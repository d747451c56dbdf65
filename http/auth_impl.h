/*
 * http/auth.c's internals, for its tests only (tests/http/test_auth.c): the
 * keyed hash behind http_auth_key(), SipHash-2-4 with a 128-bit output
 * (Aumasson and Bernstein's "SipHash-2-4-128": v1 ^= 0xee at the start,
 * 0xee then 0xdd in the finalisation).
 */
#ifndef RINGPROXY_HTTP_AUTH_IMPL_H
#define RINGPROXY_HTTP_AUTH_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/*
 * SipHash-2-4-128 of the n bytes at p under key: out[0] is the first eight
 * output bytes read little-endian, out[1] the last eight.
 */
void http_auth_siphash128(const uint8_t key[16], const void *p, size_t n, uint64_t out[2]);

/* The same over the concatenation of iovcnt pieces, streamed (nothing is copied). */
void http_auth_siphash128v(const uint8_t key[16], const struct iovec *iov, size_t iovcnt,
                           uint64_t out[2]);

#endif
