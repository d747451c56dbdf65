/*
 * The rate limiter of the `rate_limit` rule action (docs/rules.md): one
 * table per process, shared by every worker, so that the limit holds per
 * instance whatever the worker count (SO_REUSEPORT spreads a client's
 * connections over the workers; per-worker buckets would multiply it).
 *
 * A token bucket per key, kept as its "theoretical arrival time" (GCRA):
 * the time at which the bucket is full again. A request at time now is
 * allowed when, after it, the bucket would not be over its capacity:
 * max(tat, now) + interval - now <= burst * interval; then tat moves on
 * by one interval. That is a token bucket of capacity burst refilled with
 * one token per interval, held in one number.
 *
 * The table is fixed at start: set-associative buckets of 4 slots (one
 * cache line), each slot a 64-bit key hash and a 64-bit state (a tag of the
 * hash and the tat), updated by compare-and-swap: no lock, no allocation
 * per request. A new key takes the slot of its bucket whose tat is oldest
 * (an empty one first): the key whose bucket has refilled longest ago,
 * which loses nothing when its tat is already past. So a flood of distinct
 * keys costs what it evicts, never memory, and never slows another key.
 */
#ifndef RINGPROXY_HTTP_RATELIMIT_H
#define RINGPROXY_HTTP_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "cfg/rules.h"

struct http_ratelimit;

/* Time in the limiter: 1/16 µs, so that rates up to 1,000,000 per second are exact enough. */
#define HTTP_RL_TICKS_PER_US 16u

/*
 * A table tracking at least keys keys (rounded up to a power of two, at
 * least 4), with times counted from epoch_us (CLOCK_MONOTONIC µs, as
 * core_thread.now_us). NULL when out of memory.
 */
struct http_ratelimit *http_ratelimit_new(size_t keys, uint64_t epoch_us);

/* NULL-safe. */
void http_ratelimit_free(struct http_ratelimit *rl);

/* Keys the table tracks at most (its slots). */
size_t http_ratelimit_slots(const struct http_ratelimit *rl);

/* Bytes of memory the table holds at most. */
size_t http_ratelimit_bytes(const struct http_ratelimit *rl);

/*
 * The key of rule `rule` for an address (an IPv6 address is its /64: one
 * host has all of it), or for bytes (a header's value, an unparsed address).
 */
uint64_t http_ratelimit_key_ip(const struct http_ratelimit *rl, uint32_t rule,
                               const struct cfg_ip *ip);
uint64_t http_ratelimit_key_bytes(const struct http_ratelimit *rl, uint32_t rule, const char *s,
                                  size_t n);

/*
 * The key of rule `rule` for a client address as text (http_rules_req's
 * client_ip): the address when it parses (so "::ffff:192.0.2.1" and
 * "192.0.2.1" are one client), else the text. Dotted IPv4 is read here
 * without libc's parser: that is most requests.
 */
uint64_t http_ratelimit_key_client(const struct http_ratelimit *rl, uint32_t rule, const char *s,
                                   size_t n);

/*
 * Take one token from key's bucket at now_us: 0 when the request is
 * allowed, else the whole seconds until a token is available (at least 1),
 * for Retry-After. interval: ticks per token (cfg_ratelimit.interval);
 * burst: the bucket's capacity.
 */
uint32_t http_ratelimit_take(struct http_ratelimit *rl, uint64_t key, uint64_t now_us,
                             uint64_t interval, uint32_t burst);

#endif
