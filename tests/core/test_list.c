/* core/list.h: the intrusive list. */
#include <criterion/criterion.h>

#include "core/list.h"

struct item {
    int v;
    struct core_list link;
};

/* The values of the list in order, as digits, into buf. */
static const char *values(const struct core_list *head, char *buf)
{
    char *p = buf;

    for (struct core_list *n = core_list_first(head); n; n = core_list_next(head, n))
        *p++ = (char)('0' + core_list_entry(n, struct item, link)->v);
    *p = '\0';
    return buf;
}

Test(core_list, add_del_order)
{
    struct core_list h;
    struct item it[4] = {{1, {0}}, {2, {0}}, {3, {0}}, {4, {0}}};
    char buf[8];

    core_list_init(&h);
    cr_assert(core_list_empty(&h));
    cr_assert_null(core_list_first(&h));
    cr_assert(!core_list_linked(&it[0].link));
    core_list_add_tail(&h, &it[1].link);
    core_list_add_tail(&h, &it[2].link);
    core_list_add_head(&h, &it[0].link);
    core_list_add_tail(&h, &it[3].link);
    cr_assert_str_eq(values(&h, buf), "1234");
    cr_assert(core_list_linked(&it[2].link));
    core_list_del(&it[2].link);
    cr_assert(!core_list_linked(&it[2].link));
    core_list_del(&it[2].link); /* twice: nothing */
    cr_assert_str_eq(values(&h, buf), "124");
    core_list_del(&it[0].link);
    core_list_del(&it[3].link);
    cr_assert_str_eq(values(&h, buf), "2");
    core_list_del(&it[1].link);
    cr_assert(core_list_empty(&h));
    cr_assert_null(core_list_entry((struct core_list *)NULL, struct item, link));
}

Test(core_list, splice_moves_everything_in_order)
{
    struct core_list a, b;
    struct item it[4] = {{1, {0}}, {2, {0}}, {3, {0}}, {4, {0}}};
    char buf[8];

    core_list_init(&a);
    core_list_init(&b);
    core_list_splice_tail(&a, &b); /* empty: nothing */
    cr_assert(core_list_empty(&a));
    core_list_add_tail(&a, &it[0].link);
    core_list_add_tail(&b, &it[1].link);
    core_list_add_tail(&b, &it[2].link);
    core_list_splice_tail(&a, &b);
    cr_assert(core_list_empty(&b));
    cr_assert_str_eq(values(&a, buf), "123");
    core_list_add_tail(&b, &it[3].link);
    core_list_splice_tail(&b, &a);
    cr_assert_str_eq(values(&b, buf), "4123");
    cr_assert(core_list_empty(&a));
}
