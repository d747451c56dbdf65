#include <criterion/criterion.h>
Test(placeholder, empty) {}
