// tests/peers/fp8_peer.cu — kvstudio's vLLM fp8 conversions (engine/f16.c)
// against CUDA's own, on an NVIDIA GPU: every one of the 2^32 float bit
// patterns through __nv_cvt_float_to_fp8(x, __NV_SATFINITE, E4M3 / E5M2),
// the call vLLM's fp8 KV cache makes (csrc/quantization/fp8/nvidia/
// quant_utils.cuh, scaled_vec_conversion: fp8 = cvt(x / scale)), and every
// one of the 256 codes back through __nv_cvt_fp8_to_halfraw -> float, its
// read path. Not part of `make peers` (needs nvcc and a GPU). Run on an
// H200 (sm_90, CUDA 13.0): 0 mismatches of 2^32 for either format; decode
// equal but for the payload of the NaN codes. Build:
//   nvcc -O2 -arch=sm_90 -Iengine -o fp8_peer tests/peers/fp8_peer.cu engine/f16.c -Xcompiler -fopenmp
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
extern "C" {
#include "f16.h"
}

__global__ void encode(uint32_t base, uint8_t *e4, uint8_t *e5, uint32_t n)
{
    const uint32_t i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float f = __uint_as_float(base + i) / 1.0f;   // vLLM divides by the scale
    e4[i] = (uint8_t)__nv_cvt_float_to_fp8(f, __NV_SATFINITE, __NV_E4M3);
    e5[i] = (uint8_t)__nv_cvt_float_to_fp8(f, __NV_SATFINITE, __NV_E5M2);
}

__global__ void decode(float *d4, float *d5)
{
    const int i = threadIdx.x;
    __half_raw h4 = __nv_cvt_fp8_to_halfraw((__nv_fp8_storage_t)i, __NV_E4M3);
    __half_raw h5 = __nv_cvt_fp8_to_halfraw((__nv_fp8_storage_t)i, __NV_E5M2);
    d4[i] = __half2float(__half(h4));
    d5[i] = __half2float(__half(h5));
}

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

int main(void)
{
    const uint32_t chunk = 1u << 28;
    uint8_t *g4, *g5, *h4 = (uint8_t *)malloc(chunk), *h5 = (uint8_t *)malloc(chunk);
    cudaMalloc(&g4, chunk);
    cudaMalloc(&g5, chunk);
    long bad4 = 0, bad5 = 0;
    for (uint64_t base = 0; base < (1ull << 32); base += chunk) {
        encode<<<chunk / 256, 256>>>((uint32_t)base, g4, g5, chunk);
        cudaMemcpy(h4, g4, chunk, cudaMemcpyDeviceToHost);
        cudaMemcpy(h5, g5, chunk, cudaMemcpyDeviceToHost);
        long b4 = 0, b5 = 0;
#pragma omp parallel for reduction(+ : b4, b5)
        for (int64_t i = 0; i < (int64_t)chunk; i++) {
            const uint32_t u = (uint32_t)base + (uint32_t)i;
            float f;
            memcpy(&f, &u, 4);
            const uint8_t k4 = kvq_f32_to_f8e4m3_sat(f), k5 = kvq_f32_to_f8e5m2_sat(f);
            if (k4 != h4[i]) {
                if (b4 < 5)
#pragma omp critical
                    printf("e4m3 0x%08x (%g): cuda 0x%02x, kvstudio 0x%02x\n", u, f, h4[i], k4);
                b4++;
            }
            if (k5 != h5[i]) {
                if (b5 < 5)
#pragma omp critical
                    printf("e5m2 0x%08x (%g): cuda 0x%02x, kvstudio 0x%02x\n", u, f, h5[i], k5);
                b5++;
            }
        }
        bad4 += b4;
        bad5 += b5;
    }
    float *d4, *d5, c4[256], c5[256];
    cudaMalloc(&d4, sizeof c4);
    cudaMalloc(&d5, sizeof c5);
    decode<<<1, 256>>>(d4, d5);
    cudaMemcpy(c4, d4, sizeof c4, cudaMemcpyDeviceToHost);
    cudaMemcpy(c5, d5, sizeof c5, cudaMemcpyDeviceToHost);
    int dbad4 = 0, dbad5 = 0, dnan4 = 0, dnan5 = 0;
    for (int i = 0; i < 256; i++) {
        const float k4 = kvq_f8e4m3_to_f32((uint8_t)i), k5 = kvq_f8e5m2_to_f32((uint8_t)i);
        // NaN codes: both NaN is agreement; the payload bits are reported apart
        if (bits(k4) != bits(c4[i])) {
            if (k4 != k4 && c4[i] != c4[i]) dnan4++;
            else { dbad4++; printf("decode e4m3 0x%02x: cuda %g, kvstudio %g\n", i, c4[i], k4); }
        }
        if (bits(k5) != bits(c5[i])) {
            if (k5 != k5 && c5[i] != c5[i]) dnan5++;
            else { dbad5++; printf("decode e5m2 0x%02x: cuda %g, kvstudio %g\n", i, c5[i], k5); }
        }
    }
    printf("vllm:fp8_e4m3 encode: 4294967296 floats, %ld mismatches; decode: 256 codes, %d mismatches (%d NaN codes differ in payload only)\n", bad4, dbad4, dnan4);
    printf("vllm:fp8_e5m2 encode: 4294967296 floats, %ld mismatches; decode: 256 codes, %d mismatches (%d NaN codes differ in payload only)\n", bad5, dbad5, dnan5);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) { printf("cuda: %s\n", cudaGetErrorString(err)); return 2; }
    return bad4 || bad5 || dbad4 || dbad5;
}
