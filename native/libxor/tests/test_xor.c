/* Unit tests of libxor through its public ABI only (chat_cipher.h). */
#include "chat_cipher.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;

#define CHECK(cond, ...)                                                  \
    do {                                                                  \
        if (!(cond)) {                                                    \
            failures++;                                                   \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__,       \
                    __LINE__, #cond);                                     \
            fprintf(stderr, __VA_ARGS__);                                 \
            fputc('\n', stderr);                                          \
        }                                                                 \
    } while (0)

static void test_name(void) {
    const char *name = cipher_name();
    CHECK(name != NULL, "cipher_name returned NULL");
    if (name) CHECK(strcmp(name, "xor") == 0, "name is '%s'", name);
}

/* Hand-computed vectors: every byte is in[i] ^ key[i % key_len]. */
static void test_known_vectors(void) {
    const uint8_t in1[] = {0x00, 0x01, 0x02, 0x03, 0xff};
    const uint8_t key1[] = {0xaa};
    const uint8_t exp1[] = {0xaa, 0xab, 0xa8, 0xa9, 0x55};
    uint8_t out[16];

    CHECK(cipher_encrypt(in1, sizeof in1, key1, sizeof key1, out) == 0, "rc");
    CHECK(memcmp(out, exp1, sizeof exp1) == 0, "vector 1 mismatch");

    const uint8_t in2[] = "Hello";
    const uint8_t key2[] = {0x01, 0x02};
    const uint8_t exp2[] = {'H' ^ 1, 'e' ^ 2, 'l' ^ 1, 'l' ^ 2, 'o' ^ 1};
    CHECK(cipher_encrypt(in2, 5, key2, 2, out) == 0, "rc");
    CHECK(memcmp(out, exp2, 5) == 0, "vector 2 mismatch");

    /* Key longer than the input: only its prefix is used. */
    const uint8_t key3[] = {0x10, 0x20, 0x30, 0x40, 0x50, 0x60};
    const uint8_t in3[] = {0x01, 0x02, 0x03};
    const uint8_t exp3[] = {0x11, 0x22, 0x33};
    CHECK(cipher_encrypt(in3, 3, key3, sizeof key3, out) == 0, "rc");
    CHECK(memcmp(out, exp3, 3) == 0, "vector 3 mismatch");

    /* Decrypt gives the plaintext back. */
    uint8_t back[16];
    CHECK(cipher_decrypt(exp2, 5, key2, 2, back) == 0, "rc");
    CHECK(memcmp(back, in2, 5) == 0, "decrypt vector 2 mismatch");
}

/* Every key length 1..64 over an input that is not a multiple of the key. */
static void test_key_lengths(void) {
    enum { N = 1000 };
    uint8_t in[N], enc[N], dec[N], key[64];
    for (size_t i = 0; i < N; i++) in[i] = (uint8_t)(i * 31u + 7u);
    for (size_t i = 0; i < sizeof key; i++) key[i] = (uint8_t)(0x5a + i * 13u);

    for (size_t kl = 1; kl <= 64; kl++) {
        CHECK(cipher_encrypt(in, N, key, kl, enc) == 0, "encrypt rc, key_len %zu", kl);
        int ok = 1;
        for (size_t i = 0; i < N; i++) {
            if (enc[i] != (uint8_t)(in[i] ^ key[i % kl])) ok = 0;
        }
        CHECK(ok, "wrong ciphertext with key_len %zu", kl);
        CHECK(cipher_decrypt(enc, N, key, kl, dec) == 0, "decrypt rc, key_len %zu", kl);
        CHECK(memcmp(dec, in, N) == 0, "round trip failed with key_len %zu", kl);
    }
}

static void test_zero_length(void) {
    const uint8_t key[] = {1, 2, 3};
    uint8_t out[4] = {0xee, 0xee, 0xee, 0xee};
    CHECK(cipher_encrypt((const uint8_t *)"x", 0, key, 3, out) == 0, "rc");
    CHECK(out[0] == 0xee, "zero-length input wrote to out");
    CHECK(cipher_decrypt((const uint8_t *)"x", 0, key, 3, out) == 0, "rc");
    /* n == 0 allows NULL buffers. */
    CHECK(cipher_encrypt(NULL, 0, key, 3, NULL) == 0, "NULL buffers with n=0");
    CHECK(cipher_decrypt(NULL, 0, key, 3, NULL) == 0, "NULL buffers with n=0");
}

static void test_in_place(void) {
    uint8_t buf[37], orig[37];
    const uint8_t key[] = {0xde, 0xad, 0xbe, 0xef, 0x01};
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = orig[i] = (uint8_t)i;
    CHECK(cipher_encrypt(buf, sizeof buf, key, sizeof key, buf) == 0, "rc");
    int ok = 1;
    for (size_t i = 0; i < sizeof buf; i++) {
        if (buf[i] != (uint8_t)(orig[i] ^ key[i % sizeof key])) ok = 0;
    }
    CHECK(ok, "in-place encrypt gave the wrong bytes");
    CHECK(cipher_decrypt(buf, sizeof buf, key, sizeof key, buf) == 0, "rc");
    CHECK(memcmp(buf, orig, sizeof buf) == 0, "in-place round trip failed");
}

static void test_bad_arguments(void) {
    const uint8_t in[4] = {1, 2, 3, 4};
    const uint8_t key[2] = {9, 9};
    uint8_t out[4] = {0, 0, 0, 0};
    typedef int (*fn)(const uint8_t *, size_t, const uint8_t *, size_t, uint8_t *);
    fn fns[2] = {cipher_encrypt, cipher_decrypt};
    for (int f = 0; f < 2; f++) {
        CHECK(fns[f](NULL, 4, key, 2, out) == CHAT_CIPHER_ENULL, "NULL in");
        CHECK(fns[f](in, 4, key, 2, NULL) == CHAT_CIPHER_ENULL, "NULL out");
        CHECK(fns[f](in, 4, NULL, 2, out) == CHAT_CIPHER_ENULL, "NULL key");
        CHECK(fns[f](in, 4, NULL, 0, out) < 0, "NULL key and key_len 0");
        CHECK(fns[f](in, 4, key, 0, out) == CHAT_CIPHER_EKEY, "empty key");
        CHECK(fns[f](in, 0, key, 0, out) == CHAT_CIPHER_EKEY, "empty key, n=0");
        CHECK(out[0] == 0 && out[3] == 0, "a failing call wrote to out");
    }
    CHECK(CHAT_CIPHER_ENULL < 0 && CHAT_CIPHER_EKEY < 0, "codes are negative");
}

int main(void) {
    test_name();
    test_known_vectors();
    test_key_lengths();
    test_zero_length();
    test_in_place();
    test_bad_arguments();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return EXIT_FAILURE;
    }
    puts("libxor: all checks passed");
    return EXIT_SUCCESS;
}
