// methods/hf_round.h — one fp16 rounding of a float32 result, as torch does
// after every op on an fp16 tensor (hf_quanto.c, hf_hqq.c run thousands a
// vector). Normal halves round in place (nearest even on the 13 dropped
// bits); zeros, subnormals, overflow and NaN take f16.c's exact path.
#ifndef KVQ_HF_ROUND_H
#define KVQ_HF_ROUND_H
#include <stdint.h>
#include <string.h>
#include "f16.h"

static inline float hf_f16_round(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    uint32_t a = u & 0x7fffffffu;
    if (a < 0x38800000u || a >= 0x477ff000u) return kvq_f16_to_f32(kvq_f32_to_f16(x));   // not a normal half
    u += 0xfffu + (u >> 13 & 1u);
    u &= ~0x1fffu;
    memcpy(&x, &u, 4);
    return x;
}
#endif
