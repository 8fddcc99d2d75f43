/*
 * chat_cipher.h - the ABI every cipher plugin of chat-server implements.
 *
 * A plugin is a shared library exporting exactly these three symbols.
 * The server loads it with dlopen (cffi ABI mode), so any library with the
 * same symbols and semantics can replace libxor without rebuilding anything.
 *
 * Return codes: 0 on success, a negative CHAT_CIPHER_E* value on bad
 * arguments. `out` must have room for `n` bytes; `out == in` (in-place) is
 * allowed. `n == 0` is valid and writes nothing (`in`/`out` may then be NULL).
 */
#ifndef CHAT_CIPHER_H
#define CHAT_CIPHER_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define CHAT_CIPHER_API __attribute__((visibility("default")))
#else
#define CHAT_CIPHER_API
#endif

#define CHAT_CIPHER_OK 0
#define CHAT_CIPHER_ENULL (-1)   /* a required pointer is NULL */
#define CHAT_CIPHER_EKEY (-2)    /* key_len is 0 */

#ifdef __cplusplus
extern "C" {
#endif

/* Short stable name of the algorithm, stored in the users-file header. */
CHAT_CIPHER_API const char *cipher_name(void);

CHAT_CIPHER_API int cipher_encrypt(const uint8_t *in, size_t n, const uint8_t *key,
                                   size_t key_len, uint8_t *out);

CHAT_CIPHER_API int cipher_decrypt(const uint8_t *in, size_t n, const uint8_t *key,
                                   size_t key_len, uint8_t *out);

#ifdef __cplusplus
}
#endif

#endif /* CHAT_CIPHER_H */
