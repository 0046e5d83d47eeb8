// pack.c — LSB-first bit packing of 1..8-bit codes (layout in pack.h).
#include <string.h>
#include "pack.h"

void kvq_pack(const uint8_t *codes, size_t n, int bits, uint8_t *out)
{
    if (bits == 8) {
        memcpy(out, codes, n);
        return;
    }
    // A 32-bit accumulator never holds more than 7 + 8 pending bits.
    const uint32_t mask = (1u << bits) - 1u;
    uint32_t acc = 0;
    int nacc = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        acc |= ((uint32_t)codes[i] & mask) << nacc;
        nacc += bits;
        while (nacc >= 8) {
            out[o++] = (uint8_t)acc;
            acc >>= 8;
            nacc -= 8;
        }
    }
    if (nacc > 0) out[o] = (uint8_t)acc;   // zero-padded tail byte
}

// Widths that divide 8 are the hot ones in scoring: whole bytes at a time.
static void unpack_div8(const uint8_t *in, size_t n, int bits, uint8_t *codes)
{
    const int per = 8 / bits;
    const uint8_t mask = (uint8_t)((1u << bits) - 1u);
    size_t full = n / (size_t)per, i = 0;
    for (size_t b = 0; b < full; b++) {
        uint8_t v = in[b];
        for (int k = 0; k < per; k++, i++) codes[i] = (uint8_t)(v >> (k * bits)) & mask;
    }
    if (i < n) {
        uint8_t v = in[full];
        for (int k = 0; i < n; k++, i++) codes[i] = (uint8_t)(v >> (k * bits)) & mask;
    }
}

void kvq_unpack(const uint8_t *in, size_t n, int bits, uint8_t *codes)
{
    if (bits == 8) {
        memcpy(codes, in, n);
        return;
    }
    if (bits == 1 || bits == 2 || bits == 4) {
        unpack_div8(in, n, bits, codes);
        return;
    }
    const uint32_t mask = (1u << bits) - 1u;
    uint32_t acc = 0;
    int nacc = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (nacc < bits) {   // never reads past kvq_pack_bytes(n, bits)
            acc |= (uint32_t)in[o++] << nacc;
            nacc += 8;
        }
        codes[i] = (uint8_t)(acc & mask);
        acc >>= bits;
        nacc -= bits;
    }
}
