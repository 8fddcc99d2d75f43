/* libxor: repeating-key XOR, the first plugin of the chat_cipher.h ABI. */
#include "chat_cipher.h"

static int check_args(const uint8_t *in, size_t n, const uint8_t *key, size_t key_len,
                      const uint8_t *out) {
    if (key == NULL) return CHAT_CIPHER_ENULL;
    if (key_len == 0) return CHAT_CIPHER_EKEY;
    if (n > 0 && (in == NULL || out == NULL)) return CHAT_CIPHER_ENULL;
    return CHAT_CIPHER_OK;
}

static int xor_apply(const uint8_t *in, size_t n, const uint8_t *key, size_t key_len,
                     uint8_t *out) {
    int rc = check_args(in, n, key, key_len, out);
    if (rc != CHAT_CIPHER_OK) return rc;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        out[i] = in[i] ^ key[k];
        if (++k == key_len) k = 0;
    }
    return CHAT_CIPHER_OK;
}

const char *cipher_name(void) { return "xor"; }

int cipher_encrypt(const uint8_t *in, size_t n, const uint8_t *key, size_t key_len,
                   uint8_t *out) {
    return xor_apply(in, n, key, key_len, out);
}

/* XOR is its own inverse. */
int cipher_decrypt(const uint8_t *in, size_t n, const uint8_t *key, size_t key_len,
                   uint8_t *out) {
    return xor_apply(in, n, key, key_len, out);
}
