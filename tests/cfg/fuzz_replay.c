/*
 * Runs the fuzz harness over files without libFuzzer, with any compiler:
 * `fuzz_replay FILE|DIR...`. meson runs it over the seed corpus and the
 * checks/ golden files, so that a sanitizer build (-Db_sanitize=address)
 * checks the harness's invariants and finds leaks in every load, validate
 * and dump path those files take. Exit 0, or abort() from the harness.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0, n;

    if (!f) {
        perror(path);
        return -1;
    }
    do {
        if (len + 65536 > cap) {
            uint8_t *nb = realloc(buf, cap = 2 * cap + 65536);

            if (!nb) {
                free(buf);
                (void)fclose(f);
                return -1;
            }
            buf = nb;
        }
        n = fread(buf + len, 1, 65536, f);
        len += n;
    } while (n > 0);
    (void)fclose(f);
    /* Hand over an exact-size copy so that ASan catches a read past the end. */
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact) {
        free(buf);
        return -1;
    }
    memcpy(exact, buf, len);
    free(buf);
    (void)LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 0;
}

int main(int argc, char **argv)
{
    int files = 0;

    for (int i = 1; i < argc; i++) {
        struct stat st;
        DIR *d;
        struct dirent *e;

        if (stat(argv[i], &st) < 0 || !S_ISDIR(st.st_mode)) {
            if (replay_file(argv[i]) < 0)
                return 1;
            files++;
            continue;
        }
        d = opendir(argv[i]);
        if (!d) {
            perror(argv[i]);
            return 1;
        }
        while ((e = readdir(d)) != NULL) {
            char path[4096];

            if (e->d_name[0] == '.')
                continue;
            (void)snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name);
            if (replay_file(path) < 0) {
                (void)closedir(d);
                return 1;
            }
            files++;
        }
        (void)closedir(d);
    }
    printf("replayed %d inputs\n", files);
    return files > 0 ? 0 : 1;
}
