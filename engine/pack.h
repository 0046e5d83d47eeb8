// pack.h — bit packing of b-bit codes (1..8) into contiguous bytes, LSB first.
// Code i occupies bits [i*b, (i+1)*b) of the byte stream; the last byte is
// zero-padded. kvq_pack_bytes(n, b) = ceil(n*b/8).
#ifndef KVQ_PACK_H
#define KVQ_PACK_H
#include <stddef.h>
#include <stdint.h>

static inline size_t kvq_pack_bytes(size_t n, int bits) { return (n * (size_t)bits + 7) / 8; }
// codes: n values each < 2^bits -> out: kvq_pack_bytes(n, bits) bytes
void kvq_pack(const uint8_t *codes, size_t n, int bits, uint8_t *out);
void kvq_unpack(const uint8_t *in, size_t n, int bits, uint8_t *codes);
#endif
